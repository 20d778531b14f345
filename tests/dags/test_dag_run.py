"""dag.test() end to end on a tiny workspace: success, an idempotent re-run, a failed GE gate."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.dags.airflow_helpers import (
    DOWNSTREAM_OF_GATE,
    TASKS,
    airflow_env,
    aliases,
    make_workspace,
    migrate,
    mlflow_client,
    run_dag_test,
    spike_btc_close,
    sweep_runs,
    tiny_params,
)

pytestmark = [pytest.mark.dags, pytest.mark.slow]

DAY = "2024-11-02T00:00:00+00:00"
CONF = {"data_version": "v0.3", "n_trials": 2, "workers": 2}
MODEL = tiny_params()["registry"]["model_name"]


@dataclass(frozen=True)
class Deployment:
    """One Airflow home (SQLite metadata), one MLflow store, one workspace for the stages."""

    root: Path
    home: Path
    state: Path
    workdir: Path

    def env(self, workdir: Path | None = None) -> dict[str, str]:
        return airflow_env(self.home, workdir or self.workdir, self.state)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    root = tmp_path_factory.mktemp("dagtest")
    home, state = root / "airflow", root / "state"
    home.mkdir()
    state.mkdir()
    dep = Deployment(root, home, state, make_workspace(root / "workspace"))
    migrate(dep.env(), root / "migrate.log")
    return dep


@pytest.fixture(scope="module")
def first_run(deployment: Deployment) -> dict[str, Any]:
    """The DAG for DAY on good data, from an empty MLflow store."""
    result = run_dag_test(deployment.env(), CONF, DAY, deployment.root / "first.log")
    print(f"dag.test first run: {result['state']} in {result['seconds']} s: {result['tasks']}")
    return result


def test_first_run_succeeds_with_every_task(first_run: dict[str, Any]) -> None:
    assert first_run["state"] == "success"
    expected = {t for t in TASKS if t != "run_trials"} | {"run_trials[0]", "run_trials[1]"}
    assert set(first_run["tasks"]) == expected  # workers=2: two mapped worker tasks
    assert set(first_run["tasks"].values()) == {"success"}


def test_first_run_tracks_a_sweep_and_crowns_a_champion(
    first_run: dict[str, Any], deployment: Deployment
) -> None:
    client = mlflow_client(deployment.state)
    parents, trials = sweep_runs(client)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["coinflow.study_name"].endswith("-20241102T000000")
    assert len(trials[parent.info.run_id]) == CONF["n_trials"]
    champion = aliases(client)["champion"]
    version = client.get_model_version(MODEL, str(champion))
    assert version.tags["coinflow.data_version"] == "v0.3"
    workdir = deployment.workdir
    assert (workdir / "reports/validation/v0.3/index.html").is_file()
    assert (workdir / "data/features/meta.json").is_file()


def test_rerun_of_the_same_day_changes_nothing(
    first_run: dict[str, Any], deployment: Deployment
) -> None:
    client = mlflow_client(deployment.state)
    before = {
        "aliases": aliases(client),
        "versions": len(client.search_model_versions(f"name = '{MODEL}'")),
        "trials": {k: len(v) for k, v in sweep_runs(client)[1].items()},
    }
    again = run_dag_test(deployment.env(), CONF, DAY, deployment.root / "rerun.log")
    print(f"dag.test re-run of {DAY}: {again['state']} in {again['seconds']} s")
    assert again["state"] == "success"
    after = {
        "aliases": aliases(client),
        "versions": len(client.search_model_versions(f"name = '{MODEL}'")),
        "trials": {k: len(v) for k, v in sweep_runs(client)[1].items()},
    }
    assert after == before  # same study (no new trials), no new version, no alias moved


def test_failed_gate_stops_the_run_and_spares_the_champion(
    first_run: dict[str, Any], deployment: Deployment
) -> None:
    broken = deployment.root / "broken-workspace"
    shutil.copytree(deployment.workdir / "data" / "raw", broken / "data" / "raw")
    shutil.copy(deployment.workdir / "params.yaml", broken / "params.yaml")
    spike_btc_close(broken / "data" / "raw" / "btc.csv")  # one close 10x: |log move| 2.3 > 0.7
    client = mlflow_client(deployment.state)
    champion = aliases(client)["champion"]
    n_versions = len(client.search_model_versions(f"name = '{MODEL}'"))

    result = run_dag_test(
        deployment.env(broken), CONF, "2024-11-03T00:00:00+00:00", deployment.root / "gate.log"
    )
    print(f"dag.test with a 10x BTC spike: {result['state']}: {result['tasks']}")

    assert result["state"] == "failed"
    tasks = result["tasks"]
    assert tasks["validate"] == "failed"
    assert {tasks[t] for t in ("ingest", "version")} == {"success"}
    # the mapped worker never expanded: it stays one unmapped placeholder
    assert {tasks.get(t, tasks.get(f"{t}[0]")) for t in DOWNSTREAM_OF_GATE} == {"upstream_failed"}
    assert aliases(client)["champion"] == champion
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == n_versions
    assert not (broken / "data" / "features").exists()
    log = (deployment.root / "gate.log").read_text()
    assert "failed the Great Expectations gate" in log and "btc_log_move" in log

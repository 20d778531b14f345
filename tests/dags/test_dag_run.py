"""dag.test() end to end on a tiny workspace: coinflow_fetch cuts and announces a version when new
days arrive and short-circuits when none do; coinflow_train trains a manual data_version Param,
and re-running it on the same data sweeps nothing; a failed GE gate announces nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dags.airflow_helpers import (
    AFTER_SHORT_CIRCUIT,
    FETCH_TASKS,
    NEW_CUTOFF,
    NEW_VERSION,
    TRAIN_TASKS,
    UNTIL,
    airflow_env,
    aliases,
    make_workspace,
    migrate,
    mlflow_client,
    run_dag_test,
    spike_btc_close,
    sweep_runs,
    tiny_params,
    version_md5,
    write_exports,
)

pytestmark = [pytest.mark.dags, pytest.mark.slow]

DAY, NEXT_DAY, LATER = (f"2024-11-0{d}T00:00:00+00:00" for d in (2, 3, 4))
CONF = {"data_version": NEW_VERSION, "n_trials": 2, "workers": 2}
MODEL = tiny_params()["registry"]["model_name"]


@dataclass(frozen=True)
class Deployment:
    """One Airflow home (SQLite metadata), one MLflow store, one workspace, one export source."""

    root: Path
    home: Path
    state: Path
    workdir: Path
    source: Path

    def env(self, workdir: Path | None = None, source: Path | None = None) -> dict[str, str]:
        return airflow_env(
            self.home, workdir or self.workdir, self.state, data_source=source or self.source
        )

    def run(self, dag_id: str, day: str, log: str, **env: Path) -> dict[str, Any]:
        result = run_dag_test(
            self.env(**env), dag_id, CONF if "train" in dag_id else {}, day, self.root / log
        )
        print(
            f"dag.test {dag_id} ({log}): {result['state']} in {result['seconds']} s: "
            f"{result['tasks']}"
        )
        return result


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """A workspace holding the real exports up to UNTIL; a source holding them whole."""
    root = tmp_path_factory.mktemp("dagtest")
    home, state = root / "airflow", root / "state"
    home.mkdir()
    state.mkdir()
    workdir = make_workspace(root / "workspace", until=UNTIL)
    dep = Deployment(root, home, state, workdir, write_exports(root / "source"))
    migrate(dep.env(), root / "migrate.log")
    return dep


@pytest.fixture(scope="module")
def fetched(deployment: Deployment) -> dict[str, Any]:
    """coinflow_fetch with a month of new days at the source."""
    return deployment.run("coinflow_fetch", DAY, "fetch.log")


@pytest.fixture(scope="module")
def refetched(fetched: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
    """coinflow_fetch again, the source unchanged: no new day."""
    params = (deployment.workdir / "params.yaml").read_bytes()
    result = deployment.run("coinflow_fetch", NEXT_DAY, "refetch.log")
    result["params_unchanged"] = (deployment.workdir / "params.yaml").read_bytes() == params
    return result


@pytest.fixture(scope="module")
def trained(refetched: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
    """coinflow_train triggered by hand with the data_version Param, on an empty MLflow store."""
    return deployment.run("coinflow_train", DAY, "train.log")


def test_fetch_with_new_days_cuts_validates_and_announces(
    fetched: dict[str, Any], deployment: Deployment
) -> None:
    assert fetched["state"] == "success"
    assert fetched["tasks"] == dict.fromkeys(FETCH_TASKS, "success")
    assert fetched["returns"]["fetch"] == {"btc": 31, "eth": 31, "gold": 23}  # October 2024
    params = yaml.safe_load((deployment.workdir / "params.yaml").read_text())
    assert params["data"]["version"] == NEW_VERSION  # cut with --use
    assert params["data"]["versions"][NEW_VERSION] == NEW_CUTOFF.isoformat()
    md5 = version_md5(deployment.workdir, NEW_VERSION)
    assert fetched["events"] == [{"task": "announce", "extra": {"version": "v0.4", "md5": md5}}]
    assert (deployment.workdir / f"reports/validation/{NEW_VERSION}/index.html").is_file()


def test_fetch_with_no_new_day_skips_everything_after_the_short_circuit(
    refetched: dict[str, Any],
) -> None:
    assert refetched["state"] == "success"
    tasks = refetched["tasks"]
    assert {tasks["fetch"], tasks["has_new_day"]} == {"success"}
    assert {tasks[t] for t in AFTER_SHORT_CIRCUIT} == {"skipped"}
    assert refetched["returns"]["fetch"] == {"btc": 0, "eth": 0, "gold": 0}
    assert refetched["events"] == []  # no Asset event: coinflow_train would not run
    assert refetched["params_unchanged"]  # no second version


def test_train_on_a_manual_version_param_sweeps_and_crowns_a_champion(
    trained: dict[str, Any], deployment: Deployment
) -> None:
    assert trained["state"] == "success"
    expected = {t for t in TRAIN_TASKS if t != "run_trials"} | {"run_trials[0]", "run_trials[1]"}
    assert set(trained["tasks"]) == expected  # workers=2: two mapped worker tasks
    assert set(trained["tasks"].values()) == {"success"}
    assert trained["returns"]["dataset"] == {"data_version": "v0.4", "md5": None, "by": "param"}
    client = mlflow_client(deployment.state)
    parents, trials = sweep_runs(client)
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["coinflow.data_version"] == NEW_VERSION
    assert parent.data.tags["coinflow.dvc_md5"] == version_md5(deployment.workdir, NEW_VERSION)
    assert len(trials[parent.info.run_id]) == CONF["n_trials"]
    champion = aliases(client)["champion"]
    assert client.get_model_version(MODEL, str(champion)).tags["coinflow.data_version"]
    assert (deployment.workdir / "data/features/meta.json").is_file()


def test_train_rerun_on_the_same_data_sweeps_nothing_and_moves_no_alias(
    trained: dict[str, Any], deployment: Deployment
) -> None:
    client = mlflow_client(deployment.state)

    def snapshot() -> dict[str, Any]:
        parents, trials = sweep_runs(client)
        return {
            "aliases": aliases(client),
            "versions": len(client.search_model_versions(f"name = '{MODEL}'")),
            "trials": {k: len(v) for k, v in trials.items()},
            "parents": {p.info.run_id: (p.info.status, p.info.end_time) for p in parents},
        }

    before = snapshot()
    again = deployment.run("coinflow_train", LATER, "retrain.log")  # another day, same md5
    assert again["state"] == "success"
    assert [job["reused"] for job in again["returns"]["open_sweep"]] == [True]
    assert again["returns"]["close_sweep"]["reused"] is True
    assert again["returns"]["close_sweep"]["parent_run_id"] in before["parents"]
    assert snapshot() == before  # no new parent or trial run, no new version, no alias moved


def test_failed_gate_announces_nothing(trained: dict[str, Any], deployment: Deployment) -> None:
    root = deployment.root / "broken"
    workdir = make_workspace(root / "workspace", until=UNTIL)
    source = write_exports(root / "source")
    for folder in (workdir / "data" / "raw", source):  # the same spike both sides: no conflict
        spike_btc_close(folder / "btc.csv")  # one close 10x: |log move| 2.3 > 0.7
    client = mlflow_client(deployment.state)
    before = (aliases(client), len(client.search_model_versions(f"name = '{MODEL}'")))

    result = deployment.run("coinflow_fetch", LATER, "gate.log", workdir=workdir, source=source)

    assert result["state"] == "failed"
    tasks = result["tasks"]
    assert {tasks[t] for t in ("fetch", "has_new_day", "cut_version")} == {"success"}
    assert tasks["validate"] == "failed"
    assert {tasks["monitor_score"], tasks["announce"]} == {"upstream_failed"}
    assert result["events"] == []
    assert (aliases(client), len(client.search_model_versions(f"name = '{MODEL}'"))) == before
    assert not (workdir / "data" / "features").exists()
    log = (deployment.root / "gate.log").read_text()
    assert "failed the Great Expectations gate" in log and "btc_log_move" in log

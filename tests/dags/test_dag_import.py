"""The DAG files parse cleanly, fast, with no heavy imports, into the two DAGs we expect:
coinflow_fetch emits the dataset Asset that schedules coinflow_train."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.dags.airflow_helpers import DAGS_DIR, FETCH_TASKS, REPO, TRAIN_TASKS, airflow_env

pytestmark = pytest.mark.dags

HEAVY = ("torch", "mlflow", "optuna", "pandas", "great_expectations", "pipelines", "registry")

# Runs in a fresh interpreter: Airflow reads its config (AIRFLOW_HOME) once, at import. A
# BundleDagBag puts the DAG folder on sys.path, as the dag-processor and task runner do.
INSPECT = """
import datetime as dt, json, os, sys, types
from pathlib import Path
from airflow.dag_processing.dagbag import BundleDagBag

bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=Path(sys.argv[1]))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2].split(","))
stats = {s.file: s.duration.total_seconds() for s in bag.dagbag_stats}
info = {"import_errors": {str(k): v for k, v in bag.import_errors.items()}, "heavy": heavy,
        "parse_s": stats, "dag_ids": sorted(bag.dags), "dags": {}}
for dag_id, dag in bag.dags.items():
    info["dags"][dag_id] = dict(
        tasks=sorted(dag.task_ids),
        upstream={t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
        mapped=sorted(t.task_id for t in dag.tasks if getattr(t, "is_mapped", False)),
        retries={t.task_id: t.retries for t in dag.tasks},
        outlets={t.task_id: [o.name for o in t.outlets] for t in dag.tasks if t.outlets},
        retry_delay_s=dag.default_args["retry_delay"].total_seconds(),
        schedule=[a.name for a in dag.schedule] if isinstance(dag.schedule, list)
        else str(dag.schedule),
        catchup=dag.catchup, start=dag.start_date.isoformat(), max_active_runs=dag.max_active_runs,
        params={k: dag.params[k] for k in dag.params},
    )
import coinflow_common as common
import coinflow_train as train

def event(version, minute, md5="m"):
    stamp = dt.datetime(2024, 11, 2, 0, minute, tzinfo=dt.timezone.utc)
    return types.SimpleNamespace(extra={"version": version, "md5": md5 + version},
                                 timestamp=stamp, source_dag_id="coinflow_fetch")

schedules = {}
for value in ("none", "30 6 * * *", ""):
    os.environ["COINFLOW_FETCH_SCHEDULE"] = value
    schedules[value] = common.fetch_schedule()
bad = types.SimpleNamespace(extra={"version": "v0.4"}, timestamp=event("x", 0).timestamp,
                            source_dag_id="coinflow_fetch")
try:
    common.announced([bad])
    refused = ""
except ValueError as exc:
    refused = str(exc)
sources = [common.SOURCE_VARIABLE, common.SOURCE_ENV]
os.environ.pop(common.SOURCE_ENV, None)
try:
    common.data_source(None)
except ValueError as exc:
    sources.append(str(exc))
sources.append(common.data_source("/from/variable"))
os.environ[common.SOURCE_ENV] = "https://from.env/exports"
sources += [common.data_source(None), common.data_source("/from/variable")]
info.update(
    sources=sources,
    workers=[train.sweep_workers(n, w) for n, w in ((5, 2), (1, 4), (3, 3))],
    announced=[common.announced([]),
               common.announced([event("v0.4", 1), event("v0.5", 9), event("v0.3", 5)])],
    refused=refused, schedules=schedules, asset=[common.DATASET.name, common.DATASET.uri],
)
print("INSPECT " + json.dumps(info, default=str))
"""


@pytest.fixture(scope="module")
def inspected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Fill a DagBag from dags/ in a fresh process (Airflow home in tmp) and describe the DAGs."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = airflow_env(home, REPO, home)
    env["COINFLOW_DAG_RETRIES"] = "2"  # the deployed default (tests elsewhere set 0)
    proc = subprocess.run(
        [sys.executable, "-c", INSPECT, str(DAGS_DIR), ",".join(HEAVY)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=home,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("INSPECT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return dict(json.loads(lines[-1].removeprefix("INSPECT ")))


def test_dag_folder_has_no_import_errors(inspected: dict[str, Any]) -> None:
    assert inspected["import_errors"] == {}
    assert inspected["dag_ids"] == ["coinflow_fetch", "coinflow_train"]
    # the shared module is imported, never parsed as a DAG file (.airflowignore)
    assert sorted(inspected["parse_s"]) == ["coinflow_fetch.py", "coinflow_train.py"]


def test_dag_files_parse_in_under_two_seconds(inspected: dict[str, Any]) -> None:
    for name, seconds in inspected["parse_s"].items():
        print(f"{name} parse time: {seconds:.3f} s")
        assert seconds < 2.0, name


def test_parsing_imports_no_heavy_library(inspected: dict[str, Any]) -> None:
    assert inspected["heavy"] == []


def test_fetch_short_circuits_before_the_cut_and_emits_the_asset(
    inspected: dict[str, Any],
) -> None:
    fetch = inspected["dags"]["coinflow_fetch"]
    assert fetch["tasks"] == sorted(FETCH_TASKS)
    for upstream, task in zip(FETCH_TASKS, FETCH_TASKS[1:], strict=False):
        assert fetch["upstream"][task] == [upstream], task
    assert fetch["outlets"] == {"announce": ["coinflow_dataset"]}  # the only producer
    assert fetch["schedule"] == "@daily" and fetch["catchup"] is False
    assert fetch["max_active_runs"] == 1 and fetch["params"] == {}
    assert inspected["asset"] == ["coinflow_dataset", "x-coinflow://dataset/versions"]
    assert inspected["schedules"] == {"none": None, "30 6 * * *": "30 6 * * *", "": None}


def test_train_is_scheduled_on_the_asset_in_the_pipeline_shape(inspected: dict[str, Any]) -> None:
    train = inspected["dags"]["coinflow_train"]
    assert train["schedule"] == ["coinflow_dataset"]
    assert train["tasks"] == sorted(TRAIN_TASKS)
    chain = {
        "features": "dataset",
        "open_sweep": "features",
        "run_trials": "open_sweep",
        "register": "close_sweep",
        "promote": "register",
        "smoke_predict": "promote",
    }
    for task, upstream in chain.items():
        assert train["upstream"][task] == [upstream], task
    assert train["upstream"]["close_sweep"] == ["open_sweep", "run_trials"]
    assert train["mapped"] == ["run_trials"]  # dynamic task mapping: one task per worker
    assert train["outlets"] == {}


def test_retries_start_and_params(inspected: dict[str, Any]) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    fetch, train = inspected["dags"]["coinflow_fetch"], inspected["dags"]["coinflow_train"]
    for dag in (fetch, train):
        assert dag["start"].startswith("2024-11-01") and dag["retry_delay_s"] > 0
    gate = fetch["retries"].pop("validate")
    assert gate == 0  # a data failure is not transient: no retry
    assert set(fetch["retries"].values()) == set(train["retries"].values()) == {2}
    assert train["params"]["data_version"] == params["data"]["version"]
    assert train["params"]["n_trials"] == params["sweep"]["n_trials"]
    assert train["params"]["workers"] >= 2


def test_sweep_workers_and_the_announced_version(inspected: dict[str, Any]) -> None:
    assert inspected["workers"] == [[0, 1], [0], [0, 1, 2]]
    # no event: a manual run; several queued events: the newest announcement wins
    assert inspected["announced"] == [None, {"version": "v0.5", "md5": "mv0.5"}]
    assert "lacks version/md5" in inspected["refused"]


def test_fetch_source_is_the_variable_else_the_env_var_and_a_missing_one_names_both(
    inspected: dict[str, Any],
) -> None:
    from pipelines.data.fetch import SOURCE_ENV

    variable, env, refused, *found = inspected["sources"]
    assert (variable, env) == ("coinflow_data_source", SOURCE_ENV)
    assert "Airflow Variable 'coinflow_data_source'" in refused
    assert "airflow variables set coinflow_data_source DIR|URL" in refused
    assert f"environment variable {SOURCE_ENV}" in refused
    # the Variable wins over the env var; the env var is the fallback
    assert found == ["/from/variable", "https://from.env/exports", "/from/variable"]

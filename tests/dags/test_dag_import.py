"""The DAG file parses cleanly, fast, with no heavy imports, into the pipeline we expect."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.dags.airflow_helpers import DAGS_DIR, REPO, TASKS, airflow_env

pytestmark = pytest.mark.dags

HEAVY = ("torch", "mlflow", "optuna", "pandas", "great_expectations", "pipelines", "registry")

# Runs in a fresh interpreter: Airflow reads its config (AIRFLOW_HOME) once, at import.
INSPECT = """
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2].split(","))
stats = {s.file: s.duration.total_seconds() for s in bag.dagbag_stats}
dag = bag.dags.get("coinflow_daily")
info = {"import_errors": {str(k): v for k, v in bag.import_errors.items()}, "heavy": heavy,
        "parse_s": stats, "dag_ids": sorted(bag.dags)}
if dag is not None:
    mod = next(m for m in list(sys.modules.values()) if getattr(m, "__file__", 0) == dag.fileloc)
    info.update(
        tasks=sorted(dag.task_ids),
        upstream={t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
        mapped=sorted(t.task_id for t in dag.tasks if getattr(t, "is_mapped", False)),
        retries={t.task_id: t.retries for t in dag.tasks},
        retry_delay_s=dag.default_args["retry_delay"].total_seconds(),
        schedule=str(dag.schedule), catchup=dag.catchup, start=dag.start_date.isoformat(),
        params={k: dag.params[k] for k in dag.params},
        workers=[mod.sweep_workers(n, w) for n, w in ((5, 2), (1, 4), (3, 3))],
        key=mod.run_key(None, "manual__2026-11-25T18:08:56.38+00:00"),
    )
print("INSPECT " + json.dumps(info, default=str))
"""


@pytest.fixture(scope="module")
def inspected(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Fill a DagBag from dags/ in a fresh process (Airflow home in tmp) and describe the DAG."""
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
    assert inspected["dag_ids"] == ["coinflow_daily"]


def test_dag_file_parses_in_under_two_seconds(inspected: dict[str, Any]) -> None:
    parse_s = inspected["parse_s"]["coinflow_daily.py"]
    print(f"coinflow_daily.py parse time: {parse_s:.3f} s")
    assert parse_s < 2.0


def test_parsing_imports_no_heavy_library(inspected: dict[str, Any]) -> None:
    assert inspected["heavy"] == []


def test_pipeline_shape(inspected: dict[str, Any]) -> None:
    assert inspected["tasks"] == sorted(TASKS)
    chain = {
        "version": "ingest",
        "validate": "version",
        "features": "validate",
        "open_sweep": "features",
        "run_trials": "open_sweep",
        "register": "close_sweep",
        "promote": "register",
        "smoke_predict": "promote",
    }
    for task, upstream in chain.items():
        assert inspected["upstream"][task] == [upstream], task
    assert inspected["upstream"]["close_sweep"] == ["open_sweep", "run_trials"]
    assert inspected["mapped"] == ["run_trials"]  # dynamic task mapping: one task per worker


def test_schedule_retries_and_params(inspected: dict[str, Any]) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert inspected["schedule"] == "@daily"
    assert inspected["catchup"] is False
    assert inspected["start"].startswith("2024-11-01")
    assert inspected["retry_delay_s"] > 0
    gate = inspected["retries"].pop("validate")
    assert gate == 0  # a data failure is not transient: no retry
    assert set(inspected["retries"].values()) == {2}
    assert inspected["params"]["data_version"] == params["data"]["version"]
    assert inspected["params"]["n_trials"] == params["sweep"]["n_trials"]
    assert inspected["params"]["workers"] >= 2


def test_sweep_workers_and_run_key(inspected: dict[str, Any]) -> None:
    assert inspected["workers"] == [[0, 1], [0], [0, 1, 2]]
    assert inspected["key"] == "manual__2026-11-25T18-08-56.38-00-00"

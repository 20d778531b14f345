"""Run one coinflow DAG once with dag.test() in this (fresh) process; print the outcome as JSON.

Usage: python dagtest_runner.py <dag_id> '<run_conf JSON>' <logical date ISO>. Airflow reads its
config at import, so each run gets its own process with AIRFLOW_HOME etc. set by the caller.
The DAG folder goes on sys.path first, as Airflow's dag-processor and task runner put it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
MARKER = "DAGTEST_RESULT "  # prefix of the result line


def _returns_and_events(run: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """XCom return values of the run's unmapped tasks, and the Asset events the run emitted."""
    from airflow.models.asset import AssetEvent
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == run.dag_id,
                XComModel.run_id == run.run_id,
                XComModel.key == "return_value",
                XComModel.map_index < 0,
            )
        ).all()
        returns = {row.task_id: XComModel.deserialize_value(row) for row in rows}
        events = session.scalars(
            select(AssetEvent).where(
                AssetEvent.source_dag_id == run.dag_id, AssetEvent.source_run_id == run.run_id
            )
        ).all()
        emitted = [{"task": e.source_task_id, "extra": dict(e.extra or {})} for e in events]
    return returns, emitted


def main() -> None:
    """Load the DAG file, run it for one logical date, print states of the run and its tasks."""
    import pendulum

    dag_id, conf, logical_date = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    sys.path.insert(0, str(DAGS_DIR))
    spec = importlib.util.spec_from_file_location(dag_id, DAGS_DIR / f"{dag_id}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = getattr(module, f"{dag_id}_dag")
    started = time.perf_counter()
    run = dag.test(run_conf=conf, logical_date=pendulum.parse(logical_date))
    seconds = time.perf_counter() - started
    tasks = {
        f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id: str(ti.state)
        for ti in run.get_task_instances()
    }
    returns, events = _returns_and_events(run)
    result = {
        "state": str(run.state),
        "run_id": run.run_id,
        "tasks": tasks,
        "returns": returns,
        "events": events,
        "seconds": round(seconds, 1),
    }
    print(MARKER + json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()

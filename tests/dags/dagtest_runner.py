"""Run `coinflow_daily` once with dag.test() in this (fresh) process; print the outcome as JSON.

Usage: python dagtest_runner.py '<run_conf JSON>' <logical date ISO>. Airflow reads its config at
import, so each run gets its own process with AIRFLOW_HOME etc. set by the caller.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
MARKER = "DAGTEST_RESULT "  # prefix of the result line


def main() -> None:
    """Load the DAG file, run it for one logical date, print states of the run and its tasks."""
    import pendulum

    spec = importlib.util.spec_from_file_location("coinflow_daily", DAGS_DIR / "coinflow_daily.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    started = time.perf_counter()
    run = module.coinflow_daily_dag.test(
        run_conf=json.loads(sys.argv[1]), logical_date=pendulum.parse(sys.argv[2])
    )
    seconds = time.perf_counter() - started
    tasks = {
        f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id: str(ti.state)
        for ti in run.get_task_instances()
    }
    print(
        MARKER
        + json.dumps(
            {
                "state": str(run.state),
                "run_id": run.run_id,
                "tasks": tasks,
                "seconds": round(seconds, 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()

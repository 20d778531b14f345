"""coinflow_daily under a real Airflow: api-server + scheduler + dag-processor on Postgres.

LocalExecutor (parallelism 4) runs the mapped sweep workers as separate processes sharing one
Optuna study in a second Postgres database; the run is triggered through the REST API.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dags.airflow_helpers import (
    AIRFLOW,
    TASKS,
    airflow_env,
    aliases,
    make_workspace,
    migrate,
    mlflow_client,
    sweep_runs,
)
from tests.processes import free_port, pg_database, stop_group

pytestmark = [pytest.mark.integration, pytest.mark.dags, pytest.mark.slow]

DAG_ID = "coinflow_daily"
CONF = {"data_version": "v0.3", "n_trials": 4, "workers": 2}
READY_S, RUN_S = 120.0, 420.0


class Airflow:
    """Airflow components as child processes (own process groups), output in files."""

    def __init__(
        self, env: dict[str, str], logs: Path, port: int, password: str, state: Path
    ) -> None:
        self.env, self.logs, self.url = env, logs, f"http://127.0.0.1:{port}"
        self.password, self.state = password, state  # admin login; MLflow store folder
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        with (self.logs / f"{name}.log").open("wb") as out:
            self.procs[name] = subprocess.Popen(
                [str(AIRFLOW), name, *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.logs,
            )

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                pytest.fail(f"airflow {name} exited {proc.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, chars: int = 3000) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            stop_group(proc)


def _wait(what: str, airflow: Airflow, probe: Any, timeout_s: float) -> Any:
    """Poll probe() until it returns something truthy; fail with the components' logs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        airflow.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            value = probe()
            if value:
                return value
        time.sleep(1.0)
    logs = "\n".join(f"--- {n}\n{airflow.tail(n, 1500)}" for n in airflow.procs)
    pytest.fail(f"{what} not within {timeout_s:.0f} s\n{logs}")


@pytest.fixture
def airflow(tmp_path: Path, fresh_pg_db: str, postgres_url: str) -> Iterator[Airflow]:
    """api-server + scheduler + dag-processor on a fresh Postgres metadata DB, stopped after."""
    home, state, logs = tmp_path / "airflow", tmp_path / "state", tmp_path / "logs"
    for folder in (home, state, logs):
        folder.mkdir()
    workdir = make_workspace(tmp_path / "workspace")
    password = secrets.token_urlsafe(16)
    (home / "passwords.json").write_text(json.dumps({"admin": password}))
    port = free_port()
    with pg_database(postgres_url, "optuna") as optuna_url:
        env = airflow_env(home, workdir, state, sql_conn=fresh_pg_db, optuna_storage=optuna_url)
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(48),
                "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple."
                "simple_auth_manager.SimpleAuthManager",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # only the run this test triggers
            }
        )
        migrate(env, logs / "migrate.log")
        af = Airflow(env, logs, port, password, state)
        try:
            af.start("api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1")
            af.start("scheduler", "--skip-serve-logs")
            af.start("dag-processor")
            yield af
        finally:
            af.stop()


def test_scheduler_runs_the_dag_with_parallel_sweep_workers(airflow: Airflow) -> None:
    api = httpx.Client(base_url=airflow.url, timeout=10)
    _wait(
        "api-server health",
        airflow,
        lambda: api.get("/api/v2/monitor/health").status_code == 200,
        READY_S,
    )
    token = api.post("/auth/token", json={"username": "admin", "password": airflow.password}).json()
    api.headers["Authorization"] = f"Bearer {token['access_token']}"
    _wait(
        "the DAG parsed by the dag-processor",
        airflow,
        lambda: api.get(f"/api/v2/dags/{DAG_ID}").status_code == 200,
        READY_S,
    )
    assert api.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": False}).status_code == 200

    started = time.monotonic()
    created = api.post(f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": CONF})
    assert created.status_code == 200, created.text
    run_id = created.json()["dag_run_id"]

    def finished() -> dict[str, Any] | None:
        run = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}").json()
        return run if run["state"] in ("success", "failed") else None

    run = _wait(f"run {run_id} to finish", airflow, finished, RUN_S)
    elapsed = time.monotonic() - started
    tis = api.get(
        f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 100}
    ).json()["task_instances"]
    rows = sorted(tis, key=lambda t: (t["start_date"] or "", t["map_index"]))
    print(f"\nAirflow scheduler run {run_id}: trigger -> {run['state']} in {elapsed:.1f} s")
    for ti in rows:
        name = ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
        print(
            f"  {name:<16} {ti['state']:<8} {ti['start_date']} -> {ti['end_date']} "
            f"({ti['duration'] or 0:.1f} s)"
        )

    assert run["state"] == "success", [(t["task_id"], t["state"]) for t in tis]
    assert {t["task_id"] for t in tis} == set(TASKS)
    assert {t["state"] for t in tis} == {"success"}
    workers = [t for t in tis if t["task_id"] == "run_trials"]
    assert sorted(t["map_index"] for t in workers) == [0, 1]  # two mapped worker tasks ran
    ran = [
        api.get(
            f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/run_trials/"
            f"xcomEntries/return_value",
            params={"map_index": i},
        ).json()["value"]
        for i in (0, 1)
    ]
    print(f"  trials run by worker 0 and 1: {ran}")
    assert sum(int(n) for n in ran) == CONF["n_trials"]  # the workers shared one budget
    client = mlflow_client(airflow.state)
    parents, trials = sweep_runs(client)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(trials[parents[0].info.run_id]) == CONF["n_trials"]  # one study, no overshoot
    assert "champion" in aliases(client)

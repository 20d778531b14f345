"""coinflow_fetch → dataset Asset → coinflow_train under a real Airflow: api-server + scheduler +
dag-processor on Postgres, runs triggered through the REST API.

The workspace holds the real exports up to 2024-09-30; the source holds them whole. Triggering
coinflow_fetch fetches October, cuts v0.4 (used by params.yaml), validates it and emits the Asset
event, and the scheduler then starts exactly one coinflow_train run for it: LocalExecutor
(parallelism 4) runs its mapped sweep workers as separate processes sharing one Optuna study in
a second Postgres database. A second fetch finds no new day: it short-circuits, emits nothing,
changes no params and no train run follows. coinflow_train triggered by hand with the
data_version Param on the same data reuses the finished sweep: no new run, version or alias.
(The failed-gate path runs under dag.test() in tests/dags/test_dag_run.py.)
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
import yaml

from tests.dags.airflow_helpers import (
    AFTER_SHORT_CIRCUIT,
    AIRFLOW,
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
    sweep_runs,
    tiny_params,
    version_md5,
    write_exports,
)
from tests.processes import free_port, pg_database, stop_group

pytestmark = [pytest.mark.integration, pytest.mark.dags, pytest.mark.slow]

FETCH, TRAIN = "coinflow_fetch", "coinflow_train"
N_TRIALS = 4  # the workspace's sweep.n_trials: the Asset-triggered run uses the Param defaults
READY_S, RUN_S, QUIET_S = 120.0, 420.0, 15.0
MODEL = tiny_params()["registry"]["model_name"]


class Airflow:
    """Airflow components as child processes (own process groups), output in files."""

    def __init__(
        self, env: dict[str, str], logs: Path, port: int, password: str, state: Path
    ) -> None:
        self.env, self.logs, self.url = env, logs, f"http://127.0.0.1:{port}"
        self.password, self.state = password, state  # admin login; MLflow store folder
        self.workdir = Path(env["COINFLOW_WORKDIR"])
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
    workdir = make_workspace(tmp_path / "workspace", n_trials=N_TRIALS, until=UNTIL)
    source = write_exports(tmp_path / "source")
    password = secrets.token_urlsafe(16)
    (home / "passwords.json").write_text(json.dumps({"admin": password}))
    port = free_port()
    with pg_database(postgres_url, "optuna") as optuna_url:
        env = airflow_env(
            home,
            workdir,
            state,
            sql_conn=fresh_pg_db,
            optuna_storage=optuna_url,
            data_source=source,
        )
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
                # the scheduler creates Asset-triggered runs; coinflow_fetch runs only when
                # this test triggers it (no @daily run on unpausing)
                "COINFLOW_FETCH_SCHEDULE": "none",
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


class Api:
    """The REST API, logged in as admin."""

    def __init__(self, airflow: Airflow) -> None:
        self.airflow = airflow
        self.http = httpx.Client(base_url=airflow.url, timeout=10)
        _wait(
            "api-server health",
            airflow,
            lambda: self.http.get("/api/v2/monitor/health").status_code == 200,
            READY_S,
        )
        token = self.http.post(
            "/auth/token", json={"username": "admin", "password": airflow.password}
        ).json()
        self.http.headers["Authorization"] = f"Bearer {token['access_token']}"

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(f"/api/v2{path}", params=params)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return response.json()

    def unpause(self, dag_id: str) -> None:
        _wait(
            f"{dag_id} parsed by the dag-processor",
            self.airflow,
            lambda: self.http.get(f"/api/v2/dags/{dag_id}").status_code == 200,
            READY_S,
        )
        done = self.http.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        assert done.status_code == 200, done.text

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        created = self.http.post(
            f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}}
        )
        assert created.status_code == 200, created.text
        return str(created.json()["dag_run_id"])

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/dags/{dag_id}/dagRuns", limit=100)["dag_runs"])

    def finished(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """Wait for a run to end; print its task instances; the run, with `tasks` added."""
        started = time.monotonic()

        def ended() -> dict[str, Any] | None:
            run = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")
            return run if run["state"] in ("success", "failed") else None

        run = dict(_wait(f"{dag_id} run {run_id} to finish", self.airflow, ended, RUN_S))
        tis = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)
        rows = sorted(tis["task_instances"], key=lambda t: (t["start_date"] or "", t["map_index"]))
        print(f"\n{dag_id} {run_id}: {run['state']} after {time.monotonic() - started:.1f} s")
        for ti in rows:
            name = ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
            print(f"  {name:<16} {ti['state']:<9} ({ti['duration'] or 0:.1f} s)")
        run["tasks"] = rows
        return run

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        return self.get(path, map_index=map_index)["value"]

    def dataset_events(self) -> list[dict[str, Any]]:
        return list(self.get("/assets/events", source_dag_id=FETCH, limit=100)["asset_events"])


def _states(run: dict[str, Any]) -> dict[str, str]:
    return {t["task_id"]: t["state"] for t in run["tasks"] if t["map_index"] < 0}


def test_new_days_train_once_and_no_new_day_trains_nothing(airflow: Airflow) -> None:
    api = Api(airflow)
    for dag_id in (FETCH, TRAIN):
        api.unpause(dag_id)

    # 1. new days at the source: fetch → cut v0.4 → gate → Asset event
    fetch = api.finished(FETCH, api.trigger(FETCH))
    assert fetch["state"] == "success", _states(fetch)
    assert _states(fetch) == dict.fromkeys(FETCH_TASKS, "success")
    assert api.xcom(FETCH, fetch["dag_run_id"], "fetch") == {"btc": 31, "eth": 31, "gold": 23}
    params = yaml.safe_load((airflow.workdir / "params.yaml").read_text())
    assert params["data"]["version"] == NEW_VERSION  # cut with --use
    assert params["data"]["versions"][NEW_VERSION] == NEW_CUTOFF.isoformat()
    assert (airflow.workdir / f"reports/validation/{NEW_VERSION}/index.html").is_file()
    md5 = version_md5(airflow.workdir, NEW_VERSION)
    announced = {"version": NEW_VERSION, "md5": md5}
    assert api.xcom(FETCH, fetch["dag_run_id"], "announce") == announced

    # 2. ... and the scheduler starts coinflow_train for that event, once
    first = _wait("a coinflow_train run", airflow, lambda: api.runs(TRAIN), READY_S)[0]
    train = api.finished(TRAIN, first["dag_run_id"])
    assert train["run_type"] == "asset_triggered"
    assert train["state"] == "success", _states(train)
    assert {t["task_id"] for t in train["tasks"]} == set(TRAIN_TASKS)
    assert {t["state"] for t in train["tasks"]} == {"success"}
    events = api.get(f"/dags/{TRAIN}/dagRuns/{train['dag_run_id']}/upstreamAssetEvents")
    assert [e["extra"] for e in events["asset_events"]] == [announced]
    chosen = api.xcom(TRAIN, train["dag_run_id"], "dataset")
    assert chosen == {"data_version": NEW_VERSION, "md5": md5, "by": "asset"}
    workers = sorted(t["map_index"] for t in train["tasks"] if t["task_id"] == "run_trials")
    assert workers == [0, 1]  # two mapped worker tasks ran
    ran = [int(api.xcom(TRAIN, train["dag_run_id"], "run_trials", i)) for i in workers]
    print(f"  trials run by worker 0 and 1: {ran}")
    assert sum(ran) == N_TRIALS  # the workers shared one budget
    client = mlflow_client(airflow.state)
    parents, trials = sweep_runs(client)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["coinflow.data_version"] == NEW_VERSION
    assert parents[0].data.tags["coinflow.dvc_md5"] == md5  # the sweep ran on the new version
    assert len(trials[parents[0].info.run_id]) == N_TRIALS  # one study, no overshoot
    assert "champion" in aliases(client)
    assert (airflow.workdir / "data/features/meta.json").is_file()  # features of v0.4 written

    # 3. no new day: fetch short-circuits, no Asset event, no params change, no train run
    params_before = (airflow.workdir / "params.yaml").read_bytes()
    again = api.finished(FETCH, api.trigger(FETCH))
    assert again["state"] == "success", _states(again)
    states = _states(again)
    assert {states["fetch"], states["has_new_day"]} == {"success"}
    assert {states[t] for t in AFTER_SHORT_CIRCUIT} == {"skipped"}
    assert api.xcom(FETCH, again["dag_run_id"], "fetch") == {"btc": 0, "eth": 0, "gold": 0}
    assert (airflow.workdir / "params.yaml").read_bytes() == params_before  # no second version
    assert len(api.dataset_events()) == 1
    time.sleep(QUIET_S)  # scheduler loops that would have queued a run for a new event
    assert [r["dag_run_id"] for r in api.runs(TRAIN)] == [train["dag_run_id"]]
    assert len(sweep_runs(client)[0]) == 1

    # 4. coinflow_train by hand with the data_version Param, same data: the finished sweep is
    # reused, nothing is swept, registered or moved
    def snapshot() -> dict[str, Any]:
        parents, trials = sweep_runs(client)
        return {
            "aliases": aliases(client),
            "versions": len(client.search_model_versions(f"name = '{MODEL}'")),
            "trials": {k: len(v) for k, v in trials.items()},
            "parents": {p.info.run_id: (p.info.status, p.info.end_time) for p in parents},
        }

    before = snapshot()
    manual = api.finished(TRAIN, api.trigger(TRAIN, {"data_version": NEW_VERSION}))
    assert manual["run_type"] == "manual"
    assert manual["state"] == "success", _states(manual)
    run_id = manual["dag_run_id"]
    chosen = api.xcom(TRAIN, run_id, "dataset")
    assert chosen == {"data_version": NEW_VERSION, "md5": None, "by": "param"}
    assert [job["reused"] for job in api.xcom(TRAIN, run_id, "open_sweep")] == [True]
    closed = api.xcom(TRAIN, run_id, "close_sweep")
    assert closed["reused"] is True and closed["parent_run_id"] in before["parents"]
    assert snapshot() == before  # no new parent or trial run, no new version, no alias moved

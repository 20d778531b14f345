"""A real Airflow for tests: its components as child processes, and its REST API logged in."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dags.airflow_helpers import AIRFLOW
from tests.processes import TAG, leftovers, stop_group


class Airflow:
    """Airflow components as child processes (own process groups, tagged), output in files."""

    def __init__(self, env: dict[str, str], logs: Path, port: int, password: str) -> None:
        self.token = env[TAG]  # every process started here (and below it) carries it
        self.env, self.logs, self.url = env, logs, f"http://127.0.0.1:{port}"
        self.password = password  # the admin's login
        self.workdir = Path(env["COINFLOW_WORKDIR"])
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        """`airflow ARGS...` as component `name` (its log: logs/<name>.log)."""
        with (self.logs / f"{name}.log").open("wb") as out:
            self.procs[name] = subprocess.Popen(
                [str(AIRFLOW), *args],
                env={**self.env, **(env or {})},
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

    def task_log(self, dag_id: str, run_id: str, ti: dict[str, Any], chars: int = 4000) -> str:
        """The end of a task instance's own log (Airflow's file task handler, under
        $AIRFLOW_HOME/logs), its last try; empty when it wrote none."""
        task = Path(self.env["AIRFLOW_HOME"], "logs", f"dag_id={dag_id}", f"run_id={run_id}")
        task /= f"task_id={ti['task_id']}"
        if ti["map_index"] >= 0:
            task /= f"map_index={ti['map_index']}"
        tries = sorted(task.glob("attempt=*.log"), key=lambda f: f.stat().st_mtime)
        return tries[-1].read_text(errors="replace")[-chars:] if tries else ""

    def stop(self) -> dict[int, str]:
        """Stop every component (workers first); the processes still alive after, killed.

        All are told at once, so their shutdowns overlap instead of adding up."""
        procs = list(reversed(self.procs.values()))
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            stop_group(proc)
        return leftovers(self.token)


POLL_S = 0.25  # between probes: a run's end is seen at most this late


def wait_for(what: str, airflow: Airflow, probe: Any, timeout_s: float) -> Any:
    """Poll probe() until it returns something truthy; fail with the components' logs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        airflow.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            value = probe()
            if value:
                return value
        time.sleep(POLL_S)
    logs = "\n".join(f"--- {n}\n{airflow.tail(n, 1500)}" for n in airflow.procs)
    pytest.fail(f"{what} not within {timeout_s:.0f} s\n{logs}")


def _when(stamp: str | None) -> float | None:
    """An API timestamp (ISO 8601) as epoch seconds; None stays None."""
    return dt.datetime.fromisoformat(stamp).timestamp() if stamp else None


class Api:
    """The REST API, logged in as admin."""

    def __init__(self, airflow: Airflow, ready_s: float, run_s: float) -> None:
        self.airflow, self.ready_s, self.run_s = airflow, ready_s, run_s
        self.http = httpx.Client(base_url=airflow.url, timeout=10)
        wait_for(
            "api-server health",
            airflow,
            lambda: self.http.get("/api/v2/monitor/health").status_code == 200,
            ready_s,
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
        wait_for(
            f"{dag_id} parsed by the dag-processor",
            self.airflow,
            lambda: self.http.get(f"/api/v2/dags/{dag_id}").status_code == 200,
            self.ready_s,
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
        """Wait for a run to end; print its task instances (when each was queued, started and
        ended, in seconds after the run started); the run, with `tasks` added."""
        started = time.monotonic()

        def ended() -> dict[str, Any] | None:
            run = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")
            return run if run["state"] in ("success", "failed") else None

        run = dict(wait_for(f"{dag_id} run {run_id} to finish", self.airflow, ended, self.run_s))
        tis = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)
        rows = sorted(tis["task_instances"], key=lambda t: (t["start_date"] or "", t["map_index"]))
        print(f"\n{dag_id} {run_id}: {run['state']} after {time.monotonic() - started:.1f} s")
        print(f"  {'task':<16} {'state':<9} queued  start    end  (seconds after the run began)")
        began = _when(run["start_date"]) or 0.0
        for ti in rows:
            name = ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
            times = (_when(ti[k]) for k in ("queued_when", "start_date", "end_date"))
            steps = " ".join(f"{t - began:6.1f}" if t is not None else "     -" for t in times)
            where = f"{ti['hostname']} pid {ti['pid']}" if ti["hostname"] else ""
            print(f"  {name:<16} {ti['state']:<9} {steps}  {where}")
        for ti in rows:  # why a task failed, in this test's output
            if ti["state"] == "failed":
                print(f"\n--- log of failed {ti['task_id']}[{ti['map_index']}]")
                print(self.airflow.task_log(dag_id, run_id, ti) or "(no log file)")
        run["tasks"] = rows
        return run

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        return self.get(path, map_index=map_index)["value"]

    def asset_events(self, source_dag_id: str) -> list[dict[str, Any]]:
        events = self.get("/assets/events", source_dag_id=source_dag_id, limit=100)
        return list(events["asset_events"])

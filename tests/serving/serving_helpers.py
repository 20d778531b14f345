"""Helpers of the serving tests: the store record, child servers on free ports, load loops."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import free_port, stop_group  # noqa: F401  (free_port re-exported)

REPO = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "serving-test-admin-token-32-chars-long"  # the API wants >= 32 characters
MODEL_NAMES = ["btc-forecaster", "hot-reload", "outage", "interop", "stale-code", "monitoring"]
# Version 2 of "stale-code" says it was built with other model code than the tests run.
FOREIGN_CODE = "0123456789ab"


@dataclass(frozen=True)
class Store:
    """The session's MLflow store: SQLite + local artifacts, and what was put in it."""

    root: Path
    uri: str
    manifest: dict[str, Any]

    def reference(self, version: int, horizon: int) -> list[dict[str, Any]]:
        """The pyfunc's own predict() output on its shipped rows, in the API's shape."""
        return api_shape(self.manifest["versions"][str(version)]["forecasts"][str(horizon)])

    def rows(self, version: int) -> list[dict[str, Any]]:
        """The latest raw rows shipped with a version (oldest first)."""
        return list(self.manifest["versions"][str(version)]["recent_rows"])


def copy_store(store: Store, dest: Path) -> Store:
    """A private copy of the session store's database (its artifacts stay shared, read-only): a
    test that moves aliases or writes decision records does it there, never in the shared one."""
    import sqlite3

    dest.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(store.uri.removeprefix("sqlite:///"))
    target = sqlite3.connect(dest / "mlflow.db")
    with target:
        source.backup(target)  # a consistent copy even while other tests read the store
    source.close()
    target.close()
    return Store(dest, f"sqlite:///{dest / 'mlflow.db'}", store.manifest)


def app_settings(store_uri: str, model_name: str, **overrides: Any) -> Any:
    """ServingSettings of an in-process test app: one store for tracking and registry (named
    both ways, so never an MLFLOW_REGISTRY_URI an earlier test left in os.environ), no
    prediction log, no rate limit; `overrides` are further ServingSettings fields."""
    from serving.settings import ServingSettings

    fields = {
        "mlflow_tracking_uri": store_uri,
        "mlflow_registry_uri": store_uri,
        "coinflow_model_name": model_name,
        "coinflow_prediction_log_url": "",
        "coinflow_rate_limit_per_s": 0,
    }
    return ServingSettings(**(fields | overrides))


def api_shape(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """pyfunc predict() records (date, close, q<level> columns) as the API answers them: the
    median close and each central interval, widest first."""
    out = []
    for rec in records:
        levels = sorted(float(k[1:]) for k in rec if k.startswith("q"))
        pairs = [(lo, hi) for lo, hi in zip(levels, levels[::-1], strict=True) if lo < hi]
        bands = [
            {"level": round(hi - lo, 10), "lower": rec[f"q{lo:g}"], "upper": rec[f"q{hi:g}"]}
            for lo, hi in pairs
        ]
        out.append({"date": rec["date"], "close": rec["close"], "intervals": bands})
    return out


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's env without MLflow/coinflow settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "COINFLOW_"))}
    env["PYTHONPATH"] = str(REPO)
    env["COINFLOW_PREDICTION_LOG_URL"] = ""  # off unless a test asks: never the checkout's file
    env["COINFLOW_RATE_LIMIT_PER_S"] = "0"  # load runs from one address: off unless a test asks
    env.update(extra)
    return env


@dataclass
class Server:
    """A child server process on 127.0.0.1:port, its output in a log file."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM the process group; SIGKILL if it lingers."""
        stop_group(self.proc)


def start_server(
    cmd: list[str],
    env: dict[str, str],
    cwd: Path,
    log: Path,
    port: int,
    ready_path: str,
    timeout_s: float = 120.0,
) -> Server:
    """Start a server in its own process group; wait until `ready_path` answers 200."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(proc, port, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[:4]} exited {proc.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + ready_path, timeout=2).status_code == 200:
                return server
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"{cmd[:4]} not ready in {timeout_s:.0f} s:\n{server.log_tail()}")


@contextlib.contextmanager
def running_api(tmp: Path, tracking_uri: str, model_name: str, **settings: str) -> Iterator[Server]:
    """`coinflow serve` on a free port (cwd tmp: no stray .env), stopped afterwards."""
    port = free_port()
    # Every API under test logs its forecasts, to its own SQLite file unless a test says.
    logged = {"COINFLOW_PREDICTION_LOG_URL": f"sqlite:///{tmp / f'predictions-{port}.db'}"}
    env = clean_env(
        MLFLOW_TRACKING_URI=tracking_uri,
        COINFLOW_MODEL_NAME=model_name,
        **(logged | {k.upper(): v for k, v in settings.items()}),
    )
    server = start_server(
        [
            sys.executable,
            "-m",
            "cli.main",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env,
        tmp,
        tmp / f"api-{port}.log",
        port,
        "/health",
    )
    try:
        wait_started(server)
        yield server
    finally:
        server.stop()


def wait_started(server: Server, timeout_s: float = 120.0) -> None:
    """Until the API's background start-up has made its first load attempt (/ready says so)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            if httpx.get(server.url + "/ready", timeout=2).json().get("startup") == "done":
                return
        time.sleep(0.1)
    raise RuntimeError(f"the API never finished starting:\n{server.log_tail()}")


def need_service(config: pytest.Config, available: bool, what: str) -> None:
    """tests/conftest.py's need_service (fail under REQUIRE_SERVICES=1, else skip)."""
    root = config.pluginmanager.get_plugin(str(REPO / "tests" / "conftest.py"))
    assert root is not None, "tests/conftest.py is not loaded"
    root.need_service(available, what)


@dataclass(frozen=True)
class Outcome:
    """One request of a load run: when it started/ended, its status and the version served."""

    started: float
    ended: float
    status: int | None
    version: int | None
    error: str | None


@dataclass
class LoadRun:
    """A load run's outcomes (in completion order) and what its mid-run action returned."""

    outcomes: list[Outcome]
    action_started: float | None = None
    action_ended: float | None = None
    action_result: Any = None

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200 or o.error is not None]


def run_load(
    url: str,
    *,
    total: int = 2000,
    concurrency: int = 8,
    max_s: float = 60.0,
    action_at: int | None = None,
    action: Callable[[], Any] | None = None,
    stop_when: Callable[[list[Outcome]], bool] | None = None,
) -> LoadRun:
    """POST `url` at most `total` times / `max_s` seconds from `concurrency` keep-alive
    connections (127.0.0.1 only); run `action` in a thread once `action_at` have completed."""
    assert url.startswith("http://127.0.0.1:"), "load runs target loopback only"
    run = LoadRun([])
    issued = 0

    async def do_action() -> None:
        assert action is not None
        run.action_started = time.monotonic()
        run.action_result = await asyncio.to_thread(action)
        run.action_ended = time.monotonic()

    async def main() -> None:
        nonlocal issued
        deadline = time.monotonic() + max_s
        tasks: list[asyncio.Task[None]] = []
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:

            async def worker() -> None:
                nonlocal issued
                while issued < total and time.monotonic() < deadline:
                    if stop_when is not None and stop_when(run.outcomes):
                        return
                    issued += 1
                    start = time.monotonic()
                    status = version = error = None
                    try:
                        response = await client.post(url)
                        status = response.status_code
                        if status == 200:
                            version = int(response.json()["lineage"]["version"])
                        else:
                            error = response.text[:300]
                    except httpx.HTTPError as exc:
                        error = repr(exc)
                    run.outcomes.append(Outcome(start, time.monotonic(), status, version, error))
                    if action is not None and len(run.outcomes) == action_at:
                        tasks.append(asyncio.create_task(do_action()))

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            await asyncio.gather(*tasks)

    asyncio.run(main())
    return run

"""Integration fixtures: a real `mlflow server` as deployed (Postgres backend store, proxied
artifacts) on a free port, a Postgres database for it, and the Redis broker's URL."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import need_service, port_open
from tests.processes import TAG, free_port, leftovers, pg_database, stop_group

StartServer = Callable[[str, Path], str]
REPO = Path(__file__).resolve().parents[2]


def _env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blank lines skipped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    pairs = (ln.split("=", 1) for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


@pytest.fixture
def redis_url() -> str:
    """Base URL of the machine's Redis (append /<db number>)."""
    need_service(port_open("127.0.0.1", 6379), "Redis on 127.0.0.1:6379")
    return "redis://127.0.0.1:6379"


@pytest.fixture
def mlflow_db(postgres_url: str) -> Iterator[str]:
    """A fresh Postgres database for an MLflow server's backend store; dropped after the server
    stopped (request it before `mlflow_server`)."""
    with pg_database(postgres_url, "mlflow") as url:
        yield url


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[StartServer]:
    """`mlflow_server(backend_uri, artifacts_dir) -> url`: a tracking server as docker-compose
    runs it (`--serve-artifacts --artifacts-destination DIR`: clients log and load through the
    server, `mlflow-artifacts:` URIs), ready (/health) before it returns; stopped at teardown,
    with every process it started."""
    procs: list[subprocess.Popen[bytes]] = []
    token = secrets.token_hex(6)

    def start(backend_uri: str, artifacts_dir: Path, timeout_s: float = 300.0) -> str:
        port = free_port()
        log_path = tmp_path / f"mlflow-server-{port}.log"
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--serve-artifacts",
            "--artifacts-destination",
            str(artifacts_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        env = {
            **os.environ,
            **_env_file(REPO / "mlflow" / "server.env"),  # allowed hosts, CORS, workers
            "MLFLOW_WORKERS": "1",  # one test's client at a time: half the start-up CPU
            "MLFLOW_BACKEND_STORE_URI": backend_uri,  # as compose passes it: not in argv (`ps`)
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no job runners
            TAG: token,
        }
        with log_path.open("wb") as log:  # a file, never an unread pipe
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(
                    f"mlflow server exited {proc.returncode}:\n"
                    f"{log_path.read_text(errors='replace')[-3000:]}"
                )
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        pytest.fail(
            f"mlflow server not ready after {timeout_s:.0f} s:\n"
            f"{log_path.read_text(errors='replace')[-3000:]}"
        )

    yield start
    for proc in procs:
        stop_group(proc)
    left = leftovers(token)
    assert not left, f"mlflow server processes outlived their stop: {left}"

"""Integration fixtures: a real `mlflow server` started on a free port, stopped afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import free_port, stop_group

StartServer = Callable[[str, Path], str]


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[StartServer]:
    """`mlflow_server(backend_uri, artifacts_dir) -> url`: a tracking server with proxied
    artifacts (`--serve-artifacts`), ready (/health) before it returns; stopped at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(backend_uri: str, artifacts_dir: Path, timeout_s: float = 90.0) -> str:
        port = free_port()
        log_path = tmp_path / f"mlflow-server-{port}.log"
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend_uri,
            "--artifacts-destination",
            str(artifacts_dir),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runners
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

"""A prediction-log database that accepts connections and never answers: answers go on, /ready
says degraded and why, and SIGTERM stops the API within 5 s, logging what it dropped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serving_helpers import Store, clean_env, run_load, start_server, wait_started

from tests.processes import free_port

pytestmark = [pytest.mark.serving, pytest.mark.slow]


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte (a hung
    database); its port."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    server.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()


def test_a_hung_log_database_is_degraded_and_shutdown_is_bounded(
    tmp_path: Path, store: Store
) -> None:
    with silent_listener() as db_port:
        port = free_port()
        env = clean_env(
            MLFLOW_TRACKING_URI=store.uri,
            COINFLOW_MODEL_NAME="btc-forecaster",
            COINFLOW_PREDICTION_LOG_URL=f"postgresql+psycopg2://postgres@127.0.0.1:{db_port}/log",
            COINFLOW_RATE_LIMIT_PER_S="0",  # one client sends them all
        )
        cmd = [sys.executable, "-m", "cli.main", "serve", "--port", str(port)]
        api = start_server(cmd, env, tmp_path, tmp_path / "api.log", port, "/health")
        try:
            wait_started(api)
            run = run_load(f"{api.url}/predict", total=300, concurrency=8, max_s=60)
            assert not run.failures and len(run.outcomes) == 300, run.failures[:3]
            deadline = time.monotonic() + 30
            while (ready := httpx.get(f"{api.url}/ready").json())["status"] != "degraded":
                assert time.monotonic() < deadline, ready
                time.sleep(0.2)
            assert ready["serving_version"] == 1 and not ready["prediction_log"]["healthy"]
            assert ready["prediction_log"]["written"] == 0
            why = [r for r in ready["reasons"] if r.startswith("prediction log")]
            assert why and any(("stalled" in r or "timeout" in r) for r in why), why
            queued = ready["prediction_log"]["depth"] + ready["prediction_log"]["dropped"]
            assert queued > 0

            started = time.monotonic()
            os.killpg(api.proc.pid, signal.SIGTERM)
            api.proc.wait(timeout=30)
            took = time.monotonic() - started
        finally:
            api.stop()
    said = api.log_tail(20_000)
    print(f"shutdown with a hung prediction-log database: {took:.2f} s")  # the report's figure
    assert took <= 5.0, said
    assert "prediction log closed in" in said and "queued record(s) dropped" in said, said

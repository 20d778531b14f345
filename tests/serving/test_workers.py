"""`coinflow serve --workers 2`: both workers answer, every answer is logged exactly once,
/metrics sums the workers' files, /admin/reload reaches every worker, the shared folder goes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from prometheus_client.multiprocess import MultiProcessCollector
from serving_helpers import (
    ADMIN_TOKEN,
    Server,
    Store,
    clean_env,
    copy_store,
    start_server,
    wait_started,
)

from serving import log_database, prediction_log
from tests.processes import free_port, stop_group

pytestmark = [pytest.mark.serving, pytest.mark.slow]
NAME = "hot-reload"  # a copy of the store: the alias moves stay in it


@dataclass
class Workers:
    """The API with two workers, its prediction log and its shared folder."""

    server: Server
    log_url: str
    folder: Path
    store: Store


def shared_folder_of(server: Server) -> Path:
    """The serve's shared folder, as its workers' env names it (set after the parent started:
    only the workers' initial env holds it)."""
    worker = min(worker_pids(server))
    return Path(psutil.Process(worker).environ()["COINFLOW_WORKERS_DIR"])


@pytest.fixture(scope="module")
def workers(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    tmp = tmp_path_factory.mktemp("workers")
    copy = copy_store(store, tmp / "store")
    port = free_port()
    log_url = f"sqlite:///{tmp / 'predictions.db'}"
    env = clean_env(
        MLFLOW_TRACKING_URI=copy.uri,
        COINFLOW_MODEL_NAME=NAME,
        COINFLOW_PREDICTION_LOG_URL=log_url,
        COINFLOW_ADMIN_TOKEN=ADMIN_TOKEN,
        COINFLOW_REFRESH_S="0",  # only /admin/reload moves an alias here
        COINFLOW_RATE_LIMIT_PER_S="0",  # one client sends every request
    )
    cmd = [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--workers", "2"]
    server = start_server(
        [*cmd, "--log-level", "warning"], env, tmp, tmp / "api.log", port, "/health", 240
    )
    folder = None
    try:
        wait_started(server, 240)
        every_worker_started(server, 240)
        folder = shared_folder_of(server)
        yield Workers(server, log_url, folder, copy)
    finally:
        stop_group(server.proc, grace_s=90)  # workers flush their logs: slow on a busy box
    assert folder is not None and not folder.exists(), "the serve's folder outlived it"


def every_worker_started(server: Server, timeout_s: float) -> None:
    """Until 40 answers in a row on fresh connections (any worker may take each) say started:
    one worker done is not all of them, and a still-loading worker answers 503 starting."""
    deadline, streak = time.monotonic() + timeout_s, 0
    while streak < 40:
        assert time.monotonic() < deadline, f"a worker never started:\n{server.log_tail()}"
        with httpx.Client(timeout=5) as fresh:
            done = fresh.get(server.url + "/ready").json().get("startup") == "done"
        streak = streak + 1 if done else 0
        if not done:
            time.sleep(0.2)


async def _load(url: str, total: int, concurrency: int = 8) -> list[dict[str, object]]:
    """POST `url` `total` times, a new connection each (the kernel spreads them over workers)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one() -> dict[str, object]:
            async with gate:
                response = await client.post(url)
                assert response.status_code == 200, response.text[:300]
                return dict(response.json())

        return await asyncio.gather(*(one() for _ in range(total)))


def load(url: str, total: int) -> list[dict[str, object]]:
    return asyncio.run(_load(url, total))


def predictions_by_worker(folder: Path) -> dict[int, float]:
    """Forecasts counted in each worker's own Prometheus file."""
    out = {}
    for file in (folder / "metrics").glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(file)]):  # type: ignore[no-untyped-call]
            if metric.name == "coinflow_predictions":
                total = sum(s.value for s in metric.samples if s.name.endswith("_total"))
                out[int(file.stem.split("_")[1])] = total
    return out


def logged_ids(url: str, want: int, timeout_s: float = 60.0) -> list[str]:
    """The logged prediction ids once `want` are written (bounded), then a moment more: a
    duplicate written late would show."""
    engine = log_database.engine_for(url)
    deadline = time.monotonic() + timeout_s
    query = sa.select(prediction_log.predictions.c.id)
    ids: list[str] = []
    while time.monotonic() < deadline:
        try:
            with engine.connect() as connection:
                ids = list(connection.execute(query).scalars())
        except sa.exc.OperationalError:  # the tables are not created yet
            ids = []
        if len(ids) >= want:
            time.sleep(1.0)
            with engine.connect() as connection:
                ids = list(connection.execute(query).scalars())
            break
        time.sleep(0.2)
    engine.dispose()
    return ids


def test_two_workers_log_each_answer_once_and_metrics_add_up(workers: Workers) -> None:
    answers = load(f"{workers.server.url}/predict", 1000)
    answered = [str(a["prediction_id"]) for a in answers]
    assert len(set(answered)) == 1000
    ids = logged_ids(workers.log_url, 1000)
    assert len(ids) == 1000 and set(ids) == set(answered)

    by_worker = predictions_by_worker(workers.folder)
    assert len([n for n in by_worker.values() if n > 0]) == 2, by_worker  # both answered
    text = httpx.get(f"{workers.server.url}/metrics").text
    assert 'coinflow_predictions_total{version="1"} 1000.0' in text  # summed over workers
    shown = set(by_worker)
    assert shown == worker_pids(workers.server), shown
    for pid in shown:  # a per-worker gauge keeps each worker's own value
        assert f'coinflow_model_version{{alias="champion",pid="{pid}"}} 1.0' in text


def test_admin_reload_reaches_every_worker(workers: Workers) -> None:
    client = MlflowClient(tracking_uri=workers.store.uri, registry_uri=workers.store.uri)
    client.set_registered_model_alias(NAME, "champion", "2")
    try:
        response = httpx.post(
            f"{workers.server.url}/admin/reload",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=180,
        )
        assert response.status_code == 200, response.text
        assert response.json()["aliases"] == {"champion": 2}
        # Answered only once every worker refreshed: no request may see the old champion.
        answers = load(f"{workers.server.url}/predict", 200)
        assert {a["lineage"]["version"] for a in answers} == {2}  # type: ignore[index]
        text = httpx.get(f"{workers.server.url}/metrics").text
        for pid in predictions_by_worker(workers.folder):
            if psutil.pid_exists(pid):
                assert f'coinflow_model_version{{alias="champion",pid="{pid}"}} 2.0' in text
    finally:  # the store and every worker back on version 1 for the tests after this one
        client.set_registered_model_alias(NAME, "champion", "1")
        httpx.post(
            f"{workers.server.url}/admin/reload",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=180,
        ).raise_for_status()


def worker_pids(server: Server) -> set[int]:
    """The serve's live worker processes (not multiprocessing's resource tracker)."""
    pids = set()
    for child in psutil.Process(server.proc.pid).children():
        with contextlib.suppress(psutil.ZombieProcess, psutil.NoSuchProcess):
            if "spawn_main" in " ".join(child.cmdline()):
                pids.add(child.pid)
    return pids


def served_by_version(text: str) -> dict[str, str]:
    """The forecast counters of /metrics, summed over workers: {labels: value}."""
    lines = (line for line in text.splitlines() if line.startswith("coinflow_predictions_total{"))
    return dict(line.rsplit(" ", 1) for line in lines)


def test_a_killed_worker_is_replaced_and_its_live_gauges_go(workers: Workers) -> None:
    load(f"{workers.server.url}/predict", 100)  # both workers serve, whatever ran before
    before = served_by_version(httpx.get(f"{workers.server.url}/metrics").text)
    assert before, "no forecast counted"
    before_pids = worker_pids(workers.server)
    served = predictions_by_worker(workers.folder)
    victim = min(pid for pid in before_pids if served.get(pid))  # one whose counts must stay
    os.kill(victim, 9)
    deadline = time.monotonic() + 180
    text = ""
    new: set[int] = set()
    while time.monotonic() < deadline:  # uvicorn's supervisor starts another worker
        pids = worker_pids(workers.server)
        new = pids - before_pids
        if len(pids) == 2 and victim not in pids:
            text = httpx.get(f"{workers.server.url}/metrics").text
            loaded = all(f'coinflow_cached_models{{pid="{pid}"}} 1.0' in text for pid in new)
            if f'pid="{victim}"' not in text and loaded:
                break  # the replacement has loaded the champion (and is done starting)
        time.sleep(0.5)
    assert victim not in worker_pids(workers.server) and len(new) == 1
    assert f'pid="{victim}"' not in text  # its live gauges were swept
    assert served_by_version(text) == before  # its counters stay: what it served was served

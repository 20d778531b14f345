"""Several API worker processes (`coinflow serve --workers N`): one shared folder per serve.

The folder holds Prometheus's multiprocess files (each worker writes its own; any worker's
/metrics sums them all) and the reload stamp: /admin/reload refreshes the worker it lands on,
bumps a generation number in the folder and waits (bounded) until every live worker has
refreshed and acknowledged it. Each worker's watcher polls the stamp (a 1 ms file read every
0.2 s), so a reload reaches every worker without any of them listening on anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads it when first imported
SHARED_ENV = "COINFLOW_WORKERS_DIR"  # the serve's folder: reload stamp, worker acks
POLL_S = 0.2  # how often a worker looks at the reload stamp
SAMPLE_S = 1.0  # how often a worker writes its scrape-time gauges for the others' /metrics


@contextlib.contextmanager
def shared_folder(workers: int) -> Iterator[Path | None]:
    """For N > 1 workers: a fresh folder named in the env the workers inherit, removed (with
    every worker's files) when the serve exits. One worker needs none (None)."""
    if workers <= 1:
        yield None
        return
    sweep_stale_folders()
    root = Path(tempfile.mkdtemp(prefix=f"coinflow-serve-{os.getpid()}-"))
    (root / "metrics").mkdir()
    (root / "acks").mkdir()
    os.environ[METRICS_ENV] = str(root / "metrics")
    os.environ[SHARED_ENV] = str(root)
    try:
        yield root
    finally:
        os.environ.pop(METRICS_ENV, None)
        os.environ.pop(SHARED_ENV, None)
        shutil.rmtree(root, ignore_errors=True)


def sweep_stale_folders() -> None:
    """Remove the folders of serves that were killed before they could (their pid is gone)."""
    for folder in Path(tempfile.gettempdir()).glob("coinflow-serve-*-*"):
        pid = folder.name.split("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def shared_root() -> Path | None:
    """This worker's shared folder (None: the API runs as one process)."""
    root = os.environ.get(SHARED_ENV)
    return Path(root) if root else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write(path: Path, text: str) -> None:
    """Replace a small file atomically: a reader sees the old text or the new, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


class ReloadStamp:
    """The reload generation in the shared folder and each worker's acknowledgement of it."""

    def __init__(self, root: Path) -> None:
        self.path, self.acks, self.lock = root / "reload", root / "acks", root / "reload.lock"

    def generation(self) -> int:
        """The newest reload's number (0: none yet)."""
        try:
            return int(self.path.read_text() or 0)
        except FileNotFoundError:
            return 0

    def bump(self) -> int:
        """A new generation (serialised across workers: two reloads get two numbers)."""
        with self.lock.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            generation = self.generation() + 1
            _write(self.path, str(generation))
        return generation

    def ack(self, generation: int, pid: int | None = None) -> None:
        """This worker serves what the registry said at `generation` or later."""
        _write(self.acks / str(pid or os.getpid()), str(generation))

    def leave(self) -> None:
        """This worker exits: nobody waits for it."""
        (self.acks / str(os.getpid())).unlink(missing_ok=True)

    def behind(self, generation: int) -> list[int]:
        """Live workers that have not acknowledged `generation` yet (dead ones are dropped)."""
        late = []
        for ack in self.acks.iterdir():
            if not ack.name.isdigit():
                continue
            pid = int(ack.name)
            if not _alive(pid):
                ack.unlink(missing_ok=True)
                continue
            with contextlib.suppress(FileNotFoundError, ValueError):
                if int(ack.read_text()) < generation:
                    late.append(pid)
        return late

    def wait(self, generation: int, timeout_s: float) -> list[int]:
        """Until every live worker acknowledged `generation`; the late ones after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while (late := self.behind(generation)) and time.monotonic() < deadline:
            time.sleep(POLL_S / 4)
        return late


def broadcast_reload(app: FastAPI, timeout_s: float = 60.0) -> list[int]:
    """After /admin/reload refreshed this worker: make every other worker refresh too and wait
    for them (the pids still late after `timeout_s`; [] when the API is one process)."""
    root = shared_root()
    if root is None:
        return []
    stamp = ReloadStamp(root)
    generation = stamp.bump()
    app.state.reload_generation = generation  # this worker's watcher need not refresh again
    stamp.ack(generation)
    late = stamp.wait(generation, timeout_s)
    if late:
        log.warning("reload %s: workers %s have not refreshed yet", generation, late)
    return late


async def watch_reloads(app: FastAPI) -> None:
    """One worker's watcher: refresh when another worker's /admin/reload bumped the stamp;
    also write this worker's scrape-time gauges and sweep dead workers' live gauges."""
    from starlette.concurrency import run_in_threadpool

    root = shared_root()
    assert root is not None
    stamp = ReloadStamp(root)
    app.state.reload_generation = stamp.generation()  # what start-up loaded is at least this
    stamp.ack(app.state.reload_generation)
    sampled = 0.0
    while True:
        await asyncio.sleep(POLL_S)
        generation = stamp.generation()
        cache = getattr(app.state, "cache", None)
        if generation > app.state.reload_generation and cache is not None:
            try:
                await run_in_threadpool(cache.refresh)
            except Exception as exc:  # acknowledged all the same: the periodic refresh retries
                log.warning("reload %s failed in worker %s: %s", generation, os.getpid(), exc)
            app.state.reload_generation = max(generation, app.state.reload_generation)
            stamp.ack(app.state.reload_generation)
        if time.monotonic() - sampled >= SAMPLE_S:
            sampled = time.monotonic()
            app.state.metrics.sample(cache, app.state.prediction_log)
            sweep_dead_workers()


def sweep_dead_workers() -> None:
    """Drop the live gauges of workers that died without saying so (killed, crashed)."""
    from prometheus_client import multiprocess

    folder = os.environ.get(METRICS_ENV)
    if not folder:
        return
    pids = {int(f.stem.rsplit("_", 1)[1]) for f in Path(folder).glob("gauge_live*_*.db")}
    for pid in pids:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]


@contextlib.asynccontextmanager
async def worker_duties(app: FastAPI) -> AsyncIterator[None]:
    """In the lifespan of each of N > 1 workers: the reload watcher, and on exit this
    worker's live gauges removed and its acknowledgement withdrawn."""
    root = shared_root()
    if root is None:
        yield
        return
    task = asyncio.create_task(watch_reloads(app))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        from prometheus_client import multiprocess

        ReloadStamp(root).leave()
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

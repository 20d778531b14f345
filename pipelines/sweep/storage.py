"""Where Optuna studies live, how workers claim trials exactly, and how dead workers' trials end.

Storage URLs: a path (no `://`) is a journal file (the single-host default); `sqlite:///...`,
`postgresql+psycopg2://...` (several hosts/processes) and other SQLAlchemy URLs are RDB storages
with Optuna's heartbeat. A worker claims each trial under a lock (a file lock next to a journal or
SQLite file, a Postgres advisory lock), so N workers never create more trials than the budget.
A RUNNING trial is dead when its worker process is gone (same host) or, on an RDB storage, its
heartbeat is older than GRACE_S; it is marked FAIL, its MLflow run ends FAILED, and it is
retried once (a WAITING copy of its params) if the budget allows.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.errors import CoinflowError
from core.liveness import process_alive

log = logging.getLogger(__name__)
HEARTBEAT_S = 5  # RDB storages: a running trial records a heartbeat this often
GRACE_S = 30  # and counts as dead (another host's worker) once it is this stale
WORKER_ATTR = "coinflow_worker"  # trial user attr: {"host", "pid", "started"}


class SweepError(CoinflowError, RuntimeError):
    """A sweep cannot start or finish (bad search space, no complete trial, a worker crashed)."""


def is_journal(url: str) -> bool:
    """A plain path means a journal file; anything with a scheme is an SQLAlchemy URL."""
    return "://" not in url


def storage_kind(url: str) -> str:
    """journal | sqlite | postgresql | mysql ... (never the URL itself: it may hold a password)."""
    return "journal" if is_journal(url) else url.split("://", 1)[0].split("+", 1)[0]


class FlockJournalLock:
    """Journal write lock held with flock(2): the kernel drops it when its process dies.

    Optuna's default symlink lock outlives a SIGKILLed writer (and, with a relative path,
    is never considered stale), which would hang every later worker on that journal.
    """

    def __init__(self, journal: Path) -> None:
        self._path = f"{journal}.flock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        import fcntl

        fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        return True

    def release(self) -> None:
        import fcntl

        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def check_parallel(url: str, workers: int) -> None:
    """Refuse several workers on a storage that cannot serve them (SQLite locks the file)."""
    if workers > 1 and storage_kind(url) == "sqlite":
        raise SweepError(
            "SQLite cannot serve parallel workers: use the journal file (one host) "
            "or a postgresql+psycopg2:// storage (COINFLOW_OPTUNA_STORAGE)"
        )


def route_optuna_logs() -> None:
    """Optuna's messages ("A new study created ...") through `logging`, at their own level, not
    through Optuna's own stderr handler: Airflow's task log shows stderr lines as errors."""
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()


def open_storage(url: str) -> Any:
    """The Optuna storage behind a URL (journal file, or RDB with heartbeats); every study of a
    sweep is opened through it, so Optuna logs through `logging` from here on."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    route_optuna_logs()
    if is_journal(url):
        path = Path(url).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        lock: Any = FlockJournalLock(path)  # duck-types optuna's BaseJournalFileLock
        return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeat_interval is "experimental" since Optuna 2.9
        return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)


def _lock_key(study_name: str) -> int:
    return int.from_bytes(hashlib.sha1(study_name.encode()).digest()[:8], "big", signed=True)


@lru_cache(maxsize=4)
def _engine(url: str) -> Any:
    import sqlalchemy as sa

    return sa.create_engine(url, pool_size=1, max_overflow=0, pool_pre_ping=True)


@contextlib.contextmanager
def claim_lock(url: str, study_name: str) -> Iterator[None]:
    """Serialise 'count trials, then create one' across the processes sharing a study."""
    if url.startswith("postgresql"):
        import sqlalchemy as sa

        with _engine(url).begin() as conn:  # the xact lock is released at commit
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(study_name)})
            yield
        return
    if is_journal(url) or url.startswith("sqlite:///"):
        import fcntl

        path = Path(url if is_journal(url) else url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{path}.claim.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    yield  # other servers (MySQL): no lock, the budget may overshoot by (workers - 1) trials


def fail_dead_trials(study: Any, budget: int) -> list[Any]:
    """Mark the trials of dead workers FAIL, retry each once if the budget allows; call locked."""
    import optuna
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)  # RDB heartbeats; a no-op for journals
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
    storage = study._storage  # Optuna exposes no public per-trial state setter
    for trial in running:
        worker = trial.user_attrs.get(WORKER_ATTR, {})
        if worker and not process_alive(worker):
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    now_failed = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    dead = [t for t in running if t.number in now_failed]
    for trial in dead:
        log.warning(
            "trial %d of %s: worker %s died; marked FAIL",
            trial.number,
            study.study_name,
            trial.user_attrs.get(WORKER_ATTR),
        )
        if len(study.get_trials(deepcopy=False)) < budget:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                retry(study, trial)
    return dead


@contextlib.contextmanager
def heartbeat(storage: Any, trial: Any) -> Iterator[None]:
    """Record the trial's heartbeat while it runs (RDB storages; nothing for journals)."""
    from optuna.storages._heartbeat import get_heartbeat_thread  # what study.optimize uses

    with get_heartbeat_thread(trial._trial_id, storage):
        yield

"""The prediction log's writer process: migrate, then build and write each batch the API sends.

It answers every batch with one status message (serving/log_writer.py folds them into the
log's status): written, dropped, the error or None, and `ready` (send the next). A SQLite file
removed or replaced under it is reopened and migrated; retention runs every `every_s`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.files import file_id
from serving.log_database import engine_for, migrate, short_error, sqlite_path
from serving.prediction_log import finished, write_records
from serving.retention import Retention, prune

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

log = logging.getLogger(__name__)
STOP = None  # sent to the writer: nothing more comes, exit


def _wait_or_stop(conn: Connection, seconds: float) -> bool:
    """Sleep `seconds` unless the API says stop meanwhile (True: stop)."""
    return conn.poll(seconds) and conn.recv() is STOP


def _retry(conn: Connection, attempt: Callable[[], object]) -> bool:
    """Call `attempt` until it succeeds, reporting each failure and backing off (0.5 s doubling
    to 10 s); False when the API said stop meanwhile."""
    delay = 0.5
    while True:
        try:
            attempt()
            return True
        except Exception as exc:  # the database is down or refused: report, wait, try again
            conn.send({"error": short_error(exc), "error_at": time.time(), "ready": False})
            if _wait_or_stop(conn, delay):
                return False
            delay = min(delay * 2, 10.0)


class _Log:
    """The writer process's side of the database: reopened when its SQLite file was removed or
    replaced (migrated again: a removed file comes back empty), pruned every `every_s`."""

    def __init__(self, url: str, retention: Retention) -> None:
        self.engine = engine_for(url)
        self.path = sqlite_path(self.engine)
        self.seen = file_id(self.path) if self.path else None
        self.retention = retention
        self.pruned_at = float("-inf")

    def migrate(self) -> None:
        migrate(self.engine)
        self.seen = file_id(self.path) if self.path else None

    def write(self, pending: list[dict[str, Any]]) -> None:
        if self.path is not None and file_id(self.path) != self.seen:
            log.warning(
                "prediction log %s was removed or replaced: reopened (pooled connections to "
                "the old file are discarded on their next use)",
                self.path.name,
            )
            self.migrate()
        write_records(self.engine, pending)
        if time.monotonic() - self.pruned_at >= self.retention.every_s:
            self.prune()

    def prune(self) -> None:
        """Retention, best effort: a failure is logged and retried next period."""
        self.pruned_at = time.monotonic()
        try:
            done = prune(self.engine, self.retention)
        except Exception as exc:
            log.warning("prediction log retention failed: %s", short_error(exc))
            return
        if done.by_age or done.by_size:
            log.info("prediction log retention: %s", done)


def write_forever(url: str, conn: Connection, retention: Retention | None = None) -> None:
    """The writer process: migrate (retried), then build and write each batch it is sent.

    It answers every batch with one status message (written, dropped, the error or None, and
    `ready`: the batch is accounted for, send the next); a batch that cannot be written is kept
    and retried until it lands or the API stops the log (then it is counted dropped)."""
    conn.send({"started": True})  # from here on, a silence is the database's
    db = _Log(url, retention or Retention())
    if not _retry(conn, db.migrate):
        return
    # What building a record imports (pandas: seconds on a loaded machine), before the first
    # batch; the database has answered (the message restarts the stall clock).
    conn.send({"started": True})
    import forecasting.features  # noqa: F401
    import forecasting.quantiles  # noqa: F401

    conn.send({"error": None, "ready": True})
    while (batch := conn.recv()) is not STOP:
        pending: list[dict[str, Any]] = []
        status: dict[str, Any] = {"ready": True, "dropped": 0}
        for record in batch:
            try:
                pending.append(finished(record))
            except Exception as exc:  # a bug, never a reason to stop logging the others
                log.exception("prediction record not built")
                status.update(
                    dropped=status["dropped"] + 1, error=short_error(exc), error_at=time.time()
                )
        if pending:
            if not _retry(conn, functools.partial(db.write, pending)):
                conn.send({"dropped": status["dropped"] + len(pending), "ready": True})
                return
            status.update(written=len(pending), error=None)  # written: the log is healthy again
        conn.send(status)

"""The prediction log's writer: a bounded queue in the API, the database writes in a process.

A request only enqueues a `Served` (references to arrays it already has). One forwarder thread
in the API takes what queued, at most one batch per `linger_s` while requests keep coming, and
sends it (pickled, ~20 us a record) to a writer process, which builds the stored records (JSON
of rows and forecast, the rows' hash) and inserts them. The process has its own interpreter and
GIL: the ~0.3 ms of CPU a record costs to build and insert never holds up a request thread.

Flow control: the writer asks for each batch (it sends its status, `ready` once the last batch
is committed), so at most one batch is in flight and the queue's depth is the backlog. When the
queue is full, when the database is down or when the writer process died (it is restarted), a
request still answers; the record is dropped and counted, and the log reports itself degraded.
A database that hangs is reported too: records wait and the writer (serving/log_process.py) has
said nothing for `stall_s`. `close` is bounded: what it cannot flush in time is dropped and
logged, and a writer stuck on the database is terminated.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from serving.log_process import STOP, write_forever
from serving.retention import Retention

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    import sqlalchemy as sa

    from serving.prediction_log import Record

log = logging.getLogger(__name__)
RESTART_S = (1.0, 10.0)  # a writer process that died is started again after 1 s, then up to 10 s
# Records wait and the writer has said nothing for this long: the database hangs (reported).
STALL_S = 10.0


@dataclass
class LogStatus:
    """What the writer has done: written, dropped, the last error, the queue's depth."""

    written: int = 0
    dropped: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    depth: int = 0
    healthy: bool = True
    reasons: list[str] = field(default_factory=list)


class PredictionLog:
    """A bounded queue in front of a writer process; `submit` never blocks.

    An idle log sends a record at once; while records keep coming, at most one batch goes per
    `linger_s`, gathering what arrived meanwhile: a transaction per record costs the writer 2-3x
    the CPU per record (measured on SQLite), CPU the 2 cores' request handling then loses."""

    def __init__(
        self,
        engine: sa.Engine,
        capacity: int = 10_000,
        batch: int = 200,
        flush_s: float = 0.2,
        linger_s: float = 0.05,
        retention: Retention | None = None,
        stall_s: float = STALL_S,
    ) -> None:
        self.engine = engine  # for readers in the API (GET /monitoring); the writer has its own
        self.url = engine.url.render_as_string(hide_password=False)
        self.batch, self.flush_s, self.linger_s = batch, flush_s, linger_s
        self.retention, self.stall_s = retention or Retention(), stall_s
        self._waiting_since: float | None = None  # monotonic: the writer owes us an answer since
        self._heard_at = 0.0  # monotonic: the writer's last message
        self._owed = 0  # records sent to the writer and not accounted for yet
        self._end = float("inf")  # monotonic: close() gives up on the writer's last status
        self.queue: queue.Queue[Record] = queue.Queue(maxsize=capacity)
        self.status = LogStatus()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._next_send = 0.0  # monotonic: no batch before this while records keep coming
        self._deadline = float("inf")  # monotonic: when close() gives up on what is queued
        self._spawn = mp.get_context("spawn")  # never fork a process that runs torch threads
        self._process: Any = None  # multiprocessing's SpawnProcess
        self._conn: Connection | None = None  # our end of the pipe to the writer
        self._thread = threading.Thread(target=self._forward, name="prediction-log", daemon=True)

    def start(self) -> PredictionLog:
        self._start_writer()
        self._thread.start()
        return self

    def submit(self, record: Record) -> bool:
        """Enqueue one record; False (and counted as dropped) when the queue is full."""
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self._drop(1)
            return False
        return True

    def _drop(self, n: int) -> None:
        with self._lock:
            self.status.dropped += n

    def _start_writer(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the end of a pipe to a writer that died
        ours, theirs = self._spawn.Pipe()
        self._process = self._spawn.Process(
            target=write_forever,
            args=(self.url, theirs, self.retention),
            name="prediction-log",
            daemon=True,
        )
        self._waiting_since = None  # set when it has started (imports take seconds)
        self._process.start()
        theirs.close()  # the writer holds its end: its exit is EOF here
        self._conn = ours

    def _apply(self, message: dict[str, Any]) -> bool:
        """Fold one status message of the writer into `status`; True when it is ready."""
        self._heard_at = time.monotonic()
        if message.get("started"):
            self._waiting_since = self._heard_at  # its migration: the database owes an answer
        if message.get("ready"):
            self._waiting_since, self._owed = None, 0
        with self._lock:
            self.status.written += message.get("written", 0)
            self.status.dropped += message.get("dropped", 0)
            if "error" in message:
                self.status.last_error = message["error"]
            if message.get("error_at"):
                self.status.last_error_at = message["error_at"]
        return bool(message.get("ready"))

    def _await_ready(self) -> bool:
        """Until the writer asks for a batch (False: it died, or close() gave up waiting)."""
        assert self._conn is not None
        while time.monotonic() < self._deadline:
            try:
                if self._conn.poll(self.flush_s) and self._apply(self._conn.recv()):
                    return True
            except (EOFError, OSError):
                return False
        return False

    def _take(self) -> list[Record]:
        """What queued, up to `batch` (waiting up to flush_s for a first record when idle)."""
        records = []
        try:
            records.append(self.queue.get(timeout=self.flush_s))
            while len(records) < self.batch:
                records.append(self.queue.get_nowait())
        except queue.Empty:
            pass
        return records

    def _restart(self, lost: int, delay: float) -> bool:
        """The writer process died: count the batch it held, start another one after `delay`
        (False: the log is closing, none is started). Until then `snapshot` says degraded: it
        asks the process itself."""
        self._drop(lost)
        log.error(
            "prediction log writer exited (code %s); restarting in %.0f s",
            self._process.exitcode,
            delay,
        )
        if self._stop.wait(delay):
            return False
        self._start_writer()
        return True

    def _forward(self) -> None:
        """The forwarder thread: batches from the queue to the writer, one at a time."""
        assert self._conn is not None
        ready, in_flight, delay = False, 0, RESTART_S[0]
        unsent: list[Record] = []  # taken for a writer that died before it got them
        while not (self._stop.is_set() and self.queue.empty() and not unsent):
            left = self._next_send - time.monotonic()
            if left > 0:  # busy: at most one batch per linger_s, gathering what comes meanwhile
                time.sleep(left)
            if not ready:
                if not self._await_ready():
                    if time.monotonic() >= self._deadline:
                        break
                    restarted = self._restart(in_flight, delay)  # counts the batch it held
                    in_flight, delay = 0, min(delay * 2, RESTART_S[1])
                    if not restarted:
                        break
                    continue
                ready, in_flight, delay = True, 0, RESTART_S[0]
            records, unsent = unsent or self._take(), []
            if not records:
                continue
            self._next_send = time.monotonic() + self.linger_s
            try:
                self._waiting_since = time.monotonic()
                self._conn.send(records)
                in_flight = self._owed = len(records)
            except (OSError, ValueError):  # the writer died while it waited: for the next one
                unsent = records
            ready = False
        self._finish(len(unsent), 0 if ready else in_flight)

    def _finish(self, unsent: int, in_flight: int) -> None:
        """Stop the writer (it drops a batch it cannot write) and count what never left, and
        the batch in flight when the writer exits without accounting for it."""
        left = unsent
        with contextlib.suppress(queue.Empty):
            while True:
                self.queue.get_nowait()
                left += 1
        self._drop(left)
        assert self._conn is not None
        with contextlib.suppress(EOFError, OSError, ValueError):
            self._conn.send(STOP)
            # Its last status, until it exits (EOF) or close() gives up (a hung database).
            while self._conn.poll(max(0.0, self._end - time.monotonic())):
                if self._apply(self._conn.recv()):
                    in_flight = 0  # written or counted by the writer
        self._drop(in_flight)

    def snapshot(self) -> LogStatus:
        """The status now (degraded when writes fail or records were dropped recently)."""
        with self._lock:
            status = LogStatus(**{**self.status.__dict__, "reasons": []})
        status.depth = self.queue.qsize()
        if status.last_error:
            status.reasons.append(f"prediction log not written: {status.last_error}")
        if status.depth >= self.queue.maxsize:
            status.reasons.append("prediction log queue full: new records are dropped")
        if not (self._stop.is_set() or self._process.is_alive()):
            status.reasons.append(f"prediction log writer exited (code {self._process.exitcode})")
        if stalled := self._stalled(status.depth):
            status.reasons.append(stalled)
        status.healthy = not status.reasons
        return status

    def _stalled(self, depth: int) -> str | None:
        """Why the log is stalled: records wait and the writer has said nothing (no write, no
        error) for `stall_s` (a database that accepts and never answers); else None."""
        since = self._waiting_since
        if since is None or self._stop.is_set():
            return None
        silent = time.monotonic() - max(since, self._heard_at)
        if silent < self.stall_s or depth + self._owed == 0:
            return None
        return (
            f"prediction log stalled: the database has not answered for {silent:.0f} s "
            f"while {depth + self._owed} record(s) wait (nothing written meanwhile)"
        )

    def close(self, timeout_s: float = 4.0) -> None:
        """Flush what is queued and stop the writer, all within `timeout_s` (4 s: a server's
        whole shutdown stays within 5 s): past it, what is left is dropped (counted, and
        logged) and a writer stuck on the database is terminated. A log already failing or
        stalled gets 1 s: waiting on a database that does not answer saves nothing."""
        started = time.monotonic()
        now = self.snapshot()
        before = now.dropped
        if now.last_error or any("stalled" in r for r in now.reasons):
            timeout_s = min(timeout_s, 1.0)
        end = started + timeout_s
        self._end = end - min(0.5, timeout_s / 4)  # the writer's last word, if it has one
        self._deadline = self._end - min(0.5, timeout_s / 4)  # no batch is sent after this
        self._stop.set()
        self._thread.join(timeout=max(0.0, end - time.monotonic()))
        if self._process is not None and self._process.is_alive():
            self._process.join(timeout=max(0.0, end - time.monotonic()))
            for stop in (self._process.terminate, self._process.kill):
                if self._process.is_alive():
                    stop()
                    self._process.join(timeout=0.2)
        status = self.snapshot()
        message = "prediction log closed in %.1f s: %d written in all, %d queued record(s) dropped"
        level = logging.WARNING if status.dropped > before else logging.INFO
        log.log(level, message, time.monotonic() - started, status.written, status.dropped - before)

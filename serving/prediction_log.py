"""The prediction log: every served forecast, recorded off the request path.

Tables (created and upgraded by alembic migrations in serving/migrations, never ad-hoc DDL):
- predictions: one row per /predict answer (or shadow forecast): who answered (model, version,
  alias asked for), the origin day, horizon, where the rows came from and their hash, the rows
  themselves when the request sent them (replay needs them), the forecast as returned;
- forecast_days: one row per forecast day (step, day, median, 80% and 95% bounds, all
  quantiles): what scoring joins with the realized closes;
- live_scores: what `coinflow monitor score` computed, per version, alias, horizon, window and
  day (the API's /monitoring and gauges read it).

Writes go through a bounded queue and one batch-writer thread: a request only enqueues a
`Served` (references to the arrays it already has); the writer thread turns it into the stored
record (forecast points, input-row hash, rows as JSON) and writes batches, at most one write per
`linger_s` while requests keep coming. When the queue is full or the database is down, the
request still answers; the record is dropped and counted, and the log reports itself degraded.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")
YIELD_S = 0.0001  # the writer's pause between records: time for a waiting thread to take the GIL
CHUNK = 4  # records per INSERT statement in the writer

metadata = sa.MetaData()
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("alias", sa.String(64)),
    sa.Column("shadow", sa.Boolean, nullable=False, default=False),
    sa.Column("origin", sa.Date, nullable=False, index=True),
    sa.Column("horizon", sa.Integer, nullable=False),
    sa.Column("rows_source", sa.String(16), nullable=False),  # request | dataset
    sa.Column("rows_hash", sa.String(64), nullable=False),
    sa.Column("rows", sa.JSON),  # the request's rows (None: the version's own shipped rows)
    sa.Column("data_md5", sa.String(64)),
    sa.Column("code_fingerprint", sa.String(32)),
    sa.Column("levels", sa.JSON, nullable=False),
    sa.Column("forecast", sa.JSON, nullable=False),  # the answer's forecasts, as returned
)
forecast_days = sa.Table(
    "forecast_days",
    metadata,
    sa.Column("prediction_id", sa.String(32), sa.ForeignKey("predictions.id"), primary_key=True),
    sa.Column("step", sa.Integer, primary_key=True),
    sa.Column("day", sa.Date, nullable=False, index=True),
    sa.Column("median", sa.Float, nullable=False),
    sa.Column("lower_80", sa.Float),
    sa.Column("upper_80", sa.Float),
    sa.Column("lower_95", sa.Float),
    sa.Column("upper_95", sa.Float),
    sa.Column("quantiles", sa.JSON, nullable=False),
)
live_scores = sa.Table(
    "live_scores",
    metadata,
    sa.Column("model_name", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("role", sa.String(64), primary_key=True),  # the alias asked for, or "shadow"
    sa.Column("horizon", sa.Integer, primary_key=True),
    sa.Column("window", sa.String(32), primary_key=True),  # 7d | 30d | 90d | since-promotion
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("mae", sa.Float),
    sa.Column("persistence_mae", sa.Float),
    sa.Column("mase", sa.Float),
    sa.Column("coverage_80", sa.Float),
    sa.Column("coverage_95", sa.Float),
    sa.Column("pinball", sa.Float),
    sa.Column("crps", sa.Float),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
)


def short_error(exc: BaseException) -> str:
    """One line naming a database error, credentials redacted."""
    from pipelines.tracking import redact

    text = (str(exc).splitlines() or [""])[0][:200]
    return redact(f"{type(exc).__name__}: {text}")


def _sqlite_wal(connection: Any, _record: Any) -> None:
    # Write-ahead log, synced at checkpoints: a commit costs ~0.4 ms of the writer's CPU instead
    # of ~0.8-1.4 ms (no journal file made and deleted per transaction), readers never block the
    # writer; a power cut (not a crash of the API) may lose the last few records.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def engine_for(url: str) -> sa.Engine:
    """An engine for the log's URL (SQLite files get their folder, a busy timeout and WAL)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 5})
        sa.event.listen(engine, "connect", _sqlite_wal)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest alembic revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def rows_hash(values: Any) -> str:
    """sha256 of the float64 input rows a forecast read (equal inputs, equal hash)."""
    import hashlib

    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(values, dtype="float64").tobytes()).hexdigest()


def new_id() -> str:
    """A prediction id: 32 hex digits, unique without coordination."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Served:
    """One forecast as the request path hands it to the log: ids and references to arrays it
    already holds (never copied, never mutated). The writer thread builds the stored record."""

    id: str
    created_at: dt.datetime
    model_name: str
    version: int
    alias: str | None  # the alias asked for (None: ?version=N)
    shadow: bool
    levels: tuple[float, ...]
    out_dates: np.ndarray  # forecast days
    quantiles: np.ndarray  # (horizon, levels) closes
    dates: np.ndarray  # the rows the forecast read, exactly (rows_needed of them)
    values: np.ndarray
    from_request: bool  # the rows came in the request (stored), else the version's own rows
    data_md5: str | None
    code_fingerprint: str | None

    def record(self) -> dict[str, Any]:
        """The `predictions` record: the forecast as /predict returns it (every interval) plus
        each day's quantiles, the sha256 of the rows used, and those rows when they were sent."""
        import numpy as np

        from pipelines.features import INPUT_COLUMNS
        from pipelines.quantiles import interval_pairs
        from serving.predictor import forecast_points

        forecast = forecast_points(
            self.out_dates, self.quantiles, self.levels, list(interval_pairs(self.levels))
        )
        for point, quantiles in zip(forecast, self.quantiles.tolist(), strict=True):
            point["quantiles"] = quantiles
        days = np.datetime_as_string(self.dates, unit="D").tolist()
        rows = None
        if self.from_request:  # what pydantic's Row.model_dump(mode="json") gives, ~10x faster
            rows = [{"date": d, **dict(zip(INPUT_COLUMNS, v, strict=True))}
                    for d, v in zip(days, self.values.tolist(), strict=True)]  # fmt: skip
        return {
            "id": self.id,
            "created_at": self.created_at,
            "model_name": self.model_name,
            "version": self.version,
            "alias": self.alias,
            "shadow": self.shadow,
            "origin": dt.date.fromisoformat(days[-1]),
            "horizon": len(forecast),
            "rows_source": "request" if self.from_request else "dataset",
            "rows_hash": rows_hash(self.values),
            "rows": rows,
            "data_md5": self.data_md5,
            "code_fingerprint": self.code_fingerprint,
            "levels": list(self.levels),
            "forecast": forecast,
        }


Record = dict[str, Any] | Served


def _day_rows(prediction_id: str, record: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for step, point in enumerate(record["forecast"], start=1):
        bands = {b["level"]: b for b in point.get("intervals", [])}
        out.append(
            {
                "prediction_id": prediction_id,
                "step": step,
                "day": dt.date.fromisoformat(point["date"]),
                "median": point["close"],
                "lower_80": (bands.get(0.8) or {}).get("lower"),
                "upper_80": (bands.get(0.8) or {}).get("upper"),
                "lower_95": (bands.get(0.95) or {}).get("lower"),
                "upper_95": (bands.get(0.95) or {}).get("upper"),
                "quantiles": point.get("quantiles", [point["close"]]),
            }
        )
    return out


def finished(record: Record) -> dict[str, Any]:
    """A record as stored: a `Served` is built here (in the writer thread), a dict is as is."""
    return record.record() if isinstance(record, Served) else record


def yield_gil() -> None:
    """Let a request thread that waits for the GIL have it now. Without this, a busy writer keeps
    the GIL up to the 5 ms switch interval each time a request thread releases it (every torch
    op, every socket write): measured in-process, p99 request latency 7.5 ms without, 3.9 ms
    with (2.9 ms with the log off)."""
    time.sleep(YIELD_S)


def write_records(engine: sa.Engine, records: list[dict[str, Any]], chunk: int = 0) -> None:
    """Insert prediction records (and their forecast days) in one transaction; with `chunk`,
    `chunk` records per statement, yielding the GIL between statements."""
    step = chunk or len(records) or 1
    with engine.begin() as connection:
        for start in range(0, len(records), step):
            part = records[start : start + step]
            connection.execute(
                predictions.insert(), [{k: v for k, v in r.items() if k in predictions.c}
                                       for r in part]
            )  # fmt: skip
            days = [day for r in part for day in _day_rows(r["id"], r)]
            if days:
                connection.execute(forecast_days.insert(), days)
            if chunk:
                yield_gil()


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
    """A bounded queue in front of one batch-writer thread; `submit` never blocks.

    An idle log writes a record at once; while records keep coming, it writes at most once per
    `linger_s`, gathering what arrived meanwhile: a transaction per record costs the writer 2-3x
    the CPU per record (measured on SQLite), CPU and GIL time the request threads then lose."""

    def __init__(
        self,
        engine: sa.Engine,
        capacity: int = 10_000,
        batch: int = 200,
        flush_s: float = 0.2,
        linger_s: float = 0.05,
    ) -> None:
        self.engine = engine
        self.batch, self.flush_s, self.linger_s = batch, flush_s, linger_s
        self.queue: queue.Queue[Record] = queue.Queue(maxsize=capacity)
        self.status = LogStatus()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._next_write = 0.0  # monotonic: no write before this while records keep coming
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)

    def start(self) -> PredictionLog:
        self._thread.start()
        return self

    def submit(self, record: Record) -> bool:
        """Enqueue one record; False (and counted as dropped) when the queue is full."""
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            with self._lock:
                self.status.dropped += 1
            return False
        return True

    def _take(self) -> list[Record]:
        records = []
        try:
            records.append(self.queue.get(timeout=self.flush_s))
            # Busy: sleep out the rest of `linger_s`, then take what came. Sleeping, not waiting
            # on the queue, so that each request's record does not wake this thread.
            left = self._next_write - time.monotonic()
            if left > 0:
                self._stop.wait(left)
            while len(records) < self.batch:
                records.append(self.queue.get_nowait())
        except queue.Empty:
            pass
        return records

    def _finish(self, taken: list[Record]) -> list[dict[str, Any]]:
        """The stored records of a batch; one that cannot be built is dropped and reported."""
        out = []
        for record in taken:
            yield_gil()
            try:
                out.append(finished(record))
            except Exception as exc:  # a bug, never a reason to stop logging the others
                log.exception("prediction record not built")
                with self._lock:
                    self.status.dropped += 1
                    self.status.last_error = short_error(exc)
                    self.status.last_error_at = time.time()
        return out

    def _migrate(self) -> bool:
        """Bring the schema up before the first write (retried: the database may be down)."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                migrate(self.engine)
                return True
            except Exception as exc:
                with self._lock:
                    self.status.last_error = short_error(exc)
                    self.status.last_error_at = time.time()
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
        return False

    def _run(self) -> None:
        if not self._migrate():
            with self._lock:
                self.status.dropped += self.queue.qsize()
            return
        with self._lock:
            self.status.last_error = None
        delay = 0.5
        pending: list[dict[str, Any]] = []
        while not (self._stop.is_set() and self.queue.empty() and not pending):
            pending = pending or self._finish(self._take())
            if not pending:
                continue
            self._next_write = time.monotonic() + self.linger_s
            try:
                write_records(self.engine, pending, chunk=CHUNK)
            except Exception as exc:  # the database is down or refused: keep the batch, retry
                with self._lock:
                    self.status.last_error = short_error(exc)
                    self.status.last_error_at = time.time()
                if self._stop.is_set():
                    with self._lock:
                        self.status.dropped += len(pending)
                    pending = []
                    break
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            with self._lock:
                self.status.written += len(pending)
                self.status.last_error = None
            pending, delay = [], 0.5

    def snapshot(self) -> LogStatus:
        """The status now (degraded when writes fail or records were dropped recently)."""
        with self._lock:
            status = LogStatus(**{**self.status.__dict__, "reasons": []})
        status.depth = self.queue.qsize()
        if status.last_error:
            status.reasons.append(f"prediction log not written: {status.last_error}")
        if status.depth >= self.queue.maxsize:
            status.reasons.append("prediction log queue full: new records are dropped")
        status.healthy = not status.reasons
        return status

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush what is queued (best effort within `timeout_s`) and stop the writer."""
        self._stop.set()
        self._thread.join(timeout=timeout_s)


def read_predictions(engine: sa.Engine, prediction_id: str) -> dict[str, Any] | None:
    """One logged prediction (None when there is no such id)."""
    with engine.connect() as connection:
        row = (
            connection.execute(predictions.select().where(predictions.c.id == prediction_id))
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None

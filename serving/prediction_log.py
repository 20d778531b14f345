"""The prediction log: every served forecast, recorded off the request path.

Tables (created and upgraded by alembic migrations in serving/migrations, never ad-hoc DDL):
- predictions: one row per /predict answer (or shadow forecast): who answered (model, version,
  alias asked for), the origin day, horizon, where the rows came from and their hash, the rows
  themselves when the request sent them (replay needs them), the forecast as returned;
- forecast_days: one row per forecast day (step, day, median, 80% and 95% bounds, all
  quantiles): what scoring joins with the realized closes;
- live_scores: what `coinflow monitor score` computed, per version, alias, horizon, window and
  day (the API's /monitoring and gauges read it).

Writes go through a bounded queue and one batch-writer thread: a request only enqueues. When
the queue is full or the database is down, the request still answers; the record is dropped
and counted, and the log reports itself degraded.
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
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")

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


def engine_for(url: str) -> sa.Engine:
    """An engine for the log's URL (SQLite files get their folder and a busy timeout)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return sa.create_engine(url, connect_args={"timeout": 5})
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


def _stored(record: dict[str, Any]) -> dict[str, Any]:
    """A record's `predictions` row; request rows arrive as pydantic `Row`s and are dumped to
    JSON here, in the writer thread, not on the request path."""
    row = {k: v for k, v in record.items() if k in predictions.c}
    if row.get("rows") is not None:
        row["rows"] = [r.model_dump(mode="json") for r in row["rows"]]
    return row


def write_records(engine: sa.Engine, records: list[dict[str, Any]]) -> None:
    """Insert prediction records (and their forecast days) in one transaction."""
    rows = [_stored(r) for r in records]
    days = [day for r in records for day in _day_rows(r["id"], r)]
    with engine.begin() as connection:
        connection.execute(predictions.insert(), rows)
        if days:
            connection.execute(forecast_days.insert(), days)


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
    """A bounded queue in front of one batch-writer thread; `submit` never blocks."""

    def __init__(
        self, engine: sa.Engine, capacity: int = 10_000, batch: int = 200, flush_s: float = 0.2
    ) -> None:
        self.engine = engine
        self.batch, self.flush_s = batch, flush_s
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=capacity)
        self.status = LogStatus()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)

    def start(self) -> PredictionLog:
        self._thread.start()
        return self

    def submit(self, record: dict[str, Any]) -> bool:
        """Enqueue one record; False (and counted as dropped) when the queue is full."""
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            with self._lock:
                self.status.dropped += 1
            return False
        return True

    def _take(self) -> list[dict[str, Any]]:
        records = []
        try:
            records.append(self.queue.get(timeout=self.flush_s))
            while len(records) < self.batch:
                records.append(self.queue.get_nowait())
        except queue.Empty:
            pass
        return records

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
            pending = pending or self._take()
            if not pending:
                continue
            try:
                write_records(self.engine, pending)
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

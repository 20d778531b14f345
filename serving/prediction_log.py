"""The prediction log: every served forecast, recorded off the request path.

Tables (created and upgraded by alembic migrations in serving/migrations, never ad-hoc DDL):
- predictions: one row per /predict answer (or shadow forecast): who answered (model, version,
  alias asked for), the origin day, horizon, where the rows came from and their hash, the rows
  themselves when the request sent them (replay needs them), the forecast as returned;
- forecast_days: one row per forecast day (step, day, median, 80% and 95% bounds, all
  quantiles): what scoring joins with the realized closes;
- live_scores: what `coinflow monitor score` computed, per version, alias, horizon, window and
  day (the API's /monitoring and gauges read it);
- calibration_states: each served version's adaptive calibration state as `coinflow monitor
  score` advanced it from the platform's rows (serving.calibration_states reads and writes it;
  the API serves with the newest one of each version and every answer names the one it used).

A request hands its forecast over as a `Served` (references to the arrays it already has);
serving/log_writer.py queues it and writes it from a separate process, off the request path.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    import numpy as np

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
    sa.Column("rows_days", sa.Integer),  # how many rows it read, ending at the origin day
    sa.Column("rows", sa.JSON),  # the request's rows (None: the version's own shipped rows)
    sa.Column("data_md5", sa.String(64)),
    sa.Column("code_fingerprint", sa.String(32)),
    sa.Column("levels", sa.JSON, nullable=False),
    sa.Column("forecast", sa.JSON, nullable=False),  # the answer's forecasts, as returned
    # The calibration the answer used: stored | shipped | fixed (a kernel without adaptive
    # calibration), and the state's day and digest (replay finds it by them).
    sa.Column("calibration_source", sa.String(16)),
    sa.Column("calibration_as_of", sa.Date),
    sa.Column("calibration_digest", sa.String(64)),
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
calibration_states = sa.Table(
    "calibration_states",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("as_of", sa.Date, nullable=False),  # the last realised close folded in
    sa.Column("updates", sa.Integer, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("state", sa.JSON, nullable=False),  # levels, multipliers, step: the kernel's to_dict
    sa.Column("data_md5", sa.String(32), nullable=False),  # the platform rows it learned from
    sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("model_name", "version", "digest", name="uq_calibration_states_digest"),
    sa.Index("ix_calibration_states_version", "model_name", "version", "as_of"),
)


def short_error(exc: BaseException) -> str:
    """One line naming a database error, credentials redacted."""
    from core.tracking import redact

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


def _json(value: Any) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()


def engine_for(url: str) -> sa.Engine:
    """An engine for the log's URL (SQLite files get their folder, a busy timeout and WAL).

    JSON columns go through orjson: the same text as the json module (shortest round-trip
    floats), in a fifth of its CPU: the writer spends most of a record's time encoding rows."""
    import orjson

    codec: dict[str, Any] = {"json_serializer": _json, "json_deserializer": orjson.loads}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 5}, **codec)
        sa.event.listen(engine, "connect", _sqlite_wal)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2, **codec)


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


def forecast_points(
    dates: np.ndarray, quantiles: np.ndarray, levels: tuple[float, ...], shown: list[float]
) -> list[dict[str, object]]:
    """Per forecast day: the median close and the bounds of each shown central interval (USD)."""
    import numpy as np

    from forecasting.quantiles import interval_pairs, median_index

    pairs = interval_pairs(levels)
    med = median_index(levels)
    out = []
    for day, row in zip(np.datetime_as_string(dates, unit="D").tolist(), quantiles, strict=True):
        bands = [
            {"level": lvl, "lower": float(row[pairs[lvl][0]]), "upper": float(row[pairs[lvl][1]])}
            for lvl in shown
        ]
        out.append({"date": day, "close": float(row[med]), "intervals": bands})
    return out


@dataclass(frozen=True)
class CalibrationUsed:
    """The calibration an answer was computed with: `stored` (the newest state `coinflow monitor
    score` wrote), `shipped` (the version's own initial state) or `fixed` (a version whose kernel
    predates adaptive calibration: its fixed offsets); the state's day and digest."""

    source: str
    as_of: str | None
    digest: str | None


@dataclass(frozen=True)
class Served:
    """One forecast as the request path hands it to the log: ids and references to arrays it
    already holds (never copied, never mutated). The writer builds the stored record."""

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
    calibration: CalibrationUsed

    def record(self) -> dict[str, Any]:
        """The `predictions` record: the forecast as /predict returns it (every interval) plus
        each day's quantiles, the sha256 of the rows used, and those rows when they were sent."""
        import numpy as np

        from forecasting.features import INPUT_COLUMNS
        from forecasting.quantiles import interval_pairs

        forecast = forecast_points(
            self.out_dates, self.quantiles, self.levels, list(interval_pairs(self.levels))
        )
        for point, quantiles in zip(forecast, self.quantiles.tolist(), strict=True):
            point["quantiles"] = quantiles
        days = np.datetime_as_string(self.dates, unit="D").tolist()
        rows = None
        if self.from_request:  # what pydantic's Row.model_dump(mode="json") gives, ~10x faster
            rows = [
                {"date": d, **dict(zip(INPUT_COLUMNS, v, strict=True))}
                for d, v in zip(days, self.values.tolist(), strict=True)
            ]
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
            "rows_days": len(self.values),
            "rows": rows,
            "data_md5": self.data_md5,
            "code_fingerprint": self.code_fingerprint,
            "levels": list(self.levels),
            "forecast": forecast,
            "calibration_source": self.calibration.source,
            "calibration_as_of": (
                dt.date.fromisoformat(self.calibration.as_of) if self.calibration.as_of else None
            ),
            "calibration_digest": self.calibration.digest,
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
    """A record as stored: a `Served` is built here (in the writer process), a dict is as is."""
    return record.record() if isinstance(record, Served) else record


def write_records(engine: sa.Engine, records: list[dict[str, Any]]) -> None:
    """Insert prediction records (and their forecast days) in one transaction."""
    with engine.begin() as connection:
        connection.execute(
            predictions.insert(),
            [{k: v for k, v in r.items() if k in predictions.c} for r in records],
        )
        days = [day for r in records for day in _day_rows(r["id"], r)]
        if days:
            connection.execute(forecast_days.insert(), days)


def read_predictions(engine: sa.Engine, prediction_id: str) -> dict[str, Any] | None:
    """One logged prediction (None when there is no such id)."""
    with engine.connect() as connection:
        row = (
            connection.execute(predictions.select().where(predictions.c.id == prediction_id))
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None

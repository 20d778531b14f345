"""The prediction log: every served forecast, recorded off the request path.

Tables: serving/log_schema.py (the stored facts, and how little a repeated answer costs);
engines and migrations: serving/log_database.py.

A request hands its forecast over as a `Served` (references to the arrays it already has);
serving/log_writer.py queues it and writes it from a separate process, off the request path.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from serving import log_schema

# The tables, where readers look for them (defined in serving/log_schema.py).
KEY, metadata, answers = log_schema.KEY, log_schema.metadata, log_schema.answers
predictions, forecasts, inputs = log_schema.predictions, log_schema.forecasts, log_schema.inputs
forecast_days, live_scores = log_schema.forecast_days, log_schema.live_scores
calibration_states = log_schema.calibration_states

if TYPE_CHECKING:
    import numpy as np


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


FORECAST_FIELDS = [str(c.name) for c in forecasts.c if c.name not in ("key", "created_at")]


def _digest(value: Any) -> str:
    import hashlib

    import orjson

    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    return hashlib.sha256(text).hexdigest()[:KEY]


def split(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """A record as stored: its `predictions` row, its `forecasts` row (keyed by a hash of its
    content: equal answers, equal key) and its `inputs` row (None: no rows were sent)."""
    rows = record.get("rows")
    stored_input = None if rows is None else {"key": _digest(rows), "rows": rows}
    content = {f: record.get(f) for f in FORECAST_FIELDS}
    content["input_key"] = None if stored_input is None else stored_input["key"]
    key = _digest(content)
    answer = {
        "id": record["id"],
        "created_at": record["created_at"],
        "alias": record.get("alias"),
        "shadow": bool(record.get("shadow", False)),
        "forecast_key": key,
    }
    return answer, {**content, "key": key, "created_at": record["created_at"]}, stored_input


def _day_rows(key: str, forecast: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for step, point in enumerate(forecast, start=1):
        bands = {b["level"]: b for b in point.get("intervals", [])}
        out.append(
            {
                "forecast_key": key,
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


def insert_new(connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: a row another writer (process) stored meanwhile is
    kept as it is, never an error (content-keyed rows are equal whoever writes them)."""
    if not rows:
        return
    from sqlalchemy.dialects import postgresql, sqlite

    name = connection.dialect.name
    if name == "postgresql":
        connection.execute(postgresql.insert(table).on_conflict_do_nothing(), rows)
    elif name == "sqlite":
        connection.execute(sqlite.insert(table).on_conflict_do_nothing(), rows)
    else:  # pragma: no cover - the log runs on SQLite or Postgres
        connection.execute(table.insert(), rows)


def _unknown(connection: sa.Connection, table: sa.Table, rows: dict[str, Any]) -> list[Any]:
    """The rows (by key) `table` does not hold yet: a repeated answer is never encoded again."""
    if not rows:
        return []
    query = sa.select(table.c.key).where(table.c.key.in_(list(rows)))
    held = set(connection.execute(query).scalars())
    return [row for key, row in rows.items() if key not in held]


def write_records(engine: sa.Engine, records: list[dict[str, Any]]) -> None:
    """Insert prediction records in one transaction: a row per answer, its forecast (and days)
    and its input rows only when that content is not stored yet."""
    answers_rows: list[dict[str, Any]] = []
    new_forecasts: dict[str, dict[str, Any]] = {}
    new_inputs: dict[str, dict[str, Any]] = {}
    for record in records:
        answer, forecast, stored_input = split(record)
        answers_rows.append(answer)
        new_forecasts.setdefault(forecast["key"], forecast)
        if stored_input is not None:
            new_inputs.setdefault(stored_input["key"], stored_input)
    with engine.begin() as connection:
        insert_new(connection, inputs, _unknown(connection, inputs, new_inputs))
        fresh = _unknown(connection, forecasts, new_forecasts)
        insert_new(connection, forecasts, fresh)
        insert_new(
            connection,
            forecast_days,
            [d for f in fresh for d in _day_rows(f["key"], f["forecast"])],
        )
        connection.execute(predictions.insert(), answers_rows)


def read_predictions(engine: sa.Engine, prediction_id: str) -> dict[str, Any] | None:
    """One logged prediction, every field of its record (None when there is no such id)."""
    with engine.connect() as connection:
        row = (
            connection.execute(answers.select().where(answers.c.id == prediction_id))
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None

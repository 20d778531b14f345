"""Retention of the prediction log: answers older than a maximum age go, then the oldest answers
until the log is under a maximum size, then every stored forecast, forecast day and input that
no remaining answer uses. `coinflow monitor prune` runs it once; the writer applies it every
`every_s` seconds (serving/log_writer.py). Scores (`live_scores`) and calibration states are
kept: they are small, and the audit trail of what the API served with.

The size is the log's live bytes: SQLite's pages in use (the file does not shrink, its free
pages are reused: it stops growing); Postgres's row bytes (pg_column_size) of the log's tables.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import sqlalchemy as sa

from serving.log_schema import forecast_days, forecasts, inputs, predictions

log = logging.getLogger(__name__)
MB = 1024 * 1024
TARGET = 0.9  # pruning for size goes 10% under the cap: the next pass is not a batch away
PASSES = 8
LOG_TABLES = (predictions, forecasts, forecast_days, inputs)


@dataclass(frozen=True)
class Retention:
    """How long and how much the log keeps (None: no limit) and how often the writer prunes."""

    max_age_days: float | None = 365.0
    max_bytes: int | None = 1024 * MB
    every_s: float = 300.0

    @classmethod
    def of(cls, max_age_days: float, max_mb: float, every_s: float = 300.0) -> Retention:
        """From settings, where 0 means no limit."""
        return cls(max_age_days or None, int(max_mb * MB) or None, every_s)


@dataclass
class Pruned:
    """What one prune did: answers deleted by age and by size, and the log's bytes around it."""

    by_age: int = 0
    by_size: int = 0
    orphans: int = 0  # forecasts and inputs nothing used any more
    bytes_before: int = 0
    bytes_after: int = 0

    def __str__(self) -> str:
        return (
            f"{self.by_age} answer(s) past the maximum age and {self.by_size} oldest for size "
            f"deleted, {self.orphans} unused forecast(s)/input(s) with them; "
            f"{self.bytes_before / MB:.1f} MB -> {self.bytes_after / MB:.1f} MB"
        )


def live_bytes(engine: sa.Engine) -> int:
    """The bytes the log's data takes (see the module's docstring)."""
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()
            free = connection.exec_driver_sql("PRAGMA freelist_count").scalar_one()
            size = connection.exec_driver_sql("PRAGMA page_size").scalar_one()
            return int((pages - free) * size)
        total = 0
        for table in LOG_TABLES:
            row = sa.func.pg_column_size(sa.literal_column(table.name))
            query = sa.select(sa.func.coalesce(sa.func.sum(row), 0)).select_from(table)
            total += int(connection.execute(query).scalar_one())
        return total


def _delete_orphans(connection: sa.Connection) -> int:
    """Forecasts (and their days) and inputs that no answer uses any more."""
    unused = ~sa.exists().where(predictions.c.forecast_key == forecasts.c.key)
    keys = sa.select(forecasts.c.key).where(unused)
    connection.execute(forecast_days.delete().where(forecast_days.c.forecast_key.in_(keys)))
    gone = connection.execute(forecasts.delete().where(unused)).rowcount
    no_forecast = ~sa.exists().where(forecasts.c.input_key == inputs.c.key)
    return int(gone + connection.execute(inputs.delete().where(no_forecast)).rowcount)


def _delete_oldest(connection: sa.Connection, n: int) -> int:
    oldest = sa.select(predictions.c.id).order_by(predictions.c.created_at).limit(n)
    return int(
        connection.execute(predictions.delete().where(predictions.c.id.in_(oldest))).rowcount
    )


def prune(engine: sa.Engine, retention: Retention, now: dt.datetime | None = None) -> Pruned:
    """Apply `retention` once (each step its own transaction: a writer waits one step at most)."""
    done = Pruned(bytes_before=live_bytes(engine))
    if retention.max_age_days is not None:
        cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=retention.max_age_days)
        with engine.begin() as connection:
            old = predictions.delete().where(predictions.c.created_at < cutoff)
            done.by_age = int(connection.execute(old).rowcount)
            done.orphans += _delete_orphans(connection)
    size = live_bytes(engine) if done.by_age else done.bytes_before
    for _ in range(PASSES):
        if retention.max_bytes is None or size <= retention.max_bytes:
            break
        with engine.begin() as connection:
            count = connection.execute(sa.select(sa.func.count()).select_from(predictions))
            n = int(count.scalar_one())
            if n == 0:
                break
            # Delete the share of answers the excess is of the log (at least one): answers and
            # what only they use are most of it; the next pass corrects an estimate that is off.
            share = 1 - retention.max_bytes * TARGET / size
            done.by_size += _delete_oldest(connection, max(1, int(n * share)))
            done.orphans += _delete_orphans(connection)
        size = live_bytes(engine)
    done.bytes_after = size
    return done

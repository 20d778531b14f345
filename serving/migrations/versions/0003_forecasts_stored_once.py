"""Each distinct answer stored once: `predictions` keeps a small row per answer (id, time, alias,
shadow, forecast key); what was answered moves to `forecasts` (keyed by a hash of its content),
its days to `forecast_days` (keyed by that key) and request rows to `inputs` (keyed by a hash of
the rows). Every logged answer reads back as before (serving.log_schema.answers).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
KEY = 32
CHUNK = 500
# What an answer's content is, as serving.prediction_log.split hashes it (frozen here: a key
# computed otherwise would only store an old answer twice, never mix two answers).
CONTENT = [
    "model_name",
    "version",
    "origin",
    "horizon",
    "rows_source",
    "rows_hash",
    "rows_days",
    "input_key",
    "data_md5",
    "code_fingerprint",
    "levels",
    "forecast",
    "calibration_source",
    "calibration_as_of",
    "calibration_digest",
]
DAY_COLUMNS = ["step", "day", "median", "lower_80", "upper_80", "lower_95", "upper_95", "quantiles"]


def _digest(value: Any) -> str:
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    return hashlib.sha256(text).hexdigest()[:KEY]


def _loaded(value: Any) -> Any:
    """A JSON column's value (some drivers hand older rows back as text)."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _new_tables() -> None:
    op.create_table(
        "inputs",
        sa.Column("key", sa.String(KEY), primary_key=True),
        sa.Column("rows", sa.JSON, nullable=False),
    )
    op.create_table(
        "forecasts",
        sa.Column("key", sa.String(KEY), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("origin", sa.Date, nullable=False),
        sa.Column("horizon", sa.Integer, nullable=False),
        sa.Column("rows_source", sa.String(16), nullable=False),
        sa.Column("rows_hash", sa.String(64), nullable=False),
        sa.Column("rows_days", sa.Integer),
        sa.Column("input_key", sa.String(KEY), sa.ForeignKey("inputs.key")),
        sa.Column("data_md5", sa.String(64)),
        sa.Column("code_fingerprint", sa.String(32)),
        sa.Column("levels", sa.JSON, nullable=False),
        sa.Column("forecast", sa.JSON, nullable=False),
        sa.Column("calibration_source", sa.String(16)),
        sa.Column("calibration_as_of", sa.Date),
        sa.Column("calibration_digest", sa.String(64)),
    )
    op.create_index("ix_forecasts_origin", "forecasts", ["origin"])
    op.create_index("ix_forecasts_input_key", "forecasts", ["input_key"])
    op.create_table(
        "predictions_0003",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("alias", sa.String(64)),
        sa.Column("shadow", sa.Boolean, nullable=False),
        sa.Column("forecast_key", sa.String(KEY), sa.ForeignKey("forecasts.key"), nullable=False),
    )
    op.create_table(
        "forecast_days_0003",
        sa.Column("forecast_key", sa.String(KEY), sa.ForeignKey("forecasts.key"), primary_key=True),
        sa.Column("step", sa.Integer, primary_key=True),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("median", sa.Float, nullable=False),
        sa.Column("lower_80", sa.Float),
        sa.Column("upper_80", sa.Float),
        sa.Column("lower_95", sa.Float),
        sa.Column("upper_95", sa.Float),
        sa.Column("quantiles", sa.JSON, nullable=False),
    )


OLD_PREDICTIONS = sa.table(
    "predictions",
    sa.column("id", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("alias", sa.String),
    sa.column("shadow", sa.Boolean),
    sa.column("rows", sa.JSON),
    *(sa.column(c, sa.String) for c in ("model_name", "rows_source", "rows_hash", "data_md5")),
    *(sa.column(c, sa.String) for c in ("code_fingerprint", "calibration_source")),
    sa.column("calibration_digest", sa.String),
    *(sa.column(c, sa.Integer) for c in ("version", "horizon", "rows_days")),
    sa.column("origin", sa.Date),
    sa.column("calibration_as_of", sa.Date),
    sa.column("levels", sa.JSON),
    sa.column("forecast", sa.JSON),
)
OLD_DAYS = sa.table(
    "forecast_days",
    sa.column("prediction_id", sa.String),
    sa.column("step", sa.Integer),
    sa.column("day", sa.Date),
    *(sa.column(c, sa.Float) for c in ("median", "lower_80", "upper_80", "lower_95", "upper_95")),
    sa.column("quantiles", sa.JSON),
)


def _move_chunk(bind: sa.Connection, records: Sequence[Any], seen: set[str]) -> None:
    """One chunk of old records into the new tables (a content seen before is not stored again)."""
    inputs = sa.table("inputs", sa.column("key", sa.String), sa.column("rows", sa.JSON))
    forecasts = sa.table(
        "forecasts",
        sa.column("key", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
        *(sa.column(c, OLD_PREDICTIONS.c[c].type) for c in CONTENT if c != "input_key"),
        sa.column("input_key", sa.String),
    )
    answers = sa.table(
        "predictions_0003",
        *(sa.column(c, OLD_PREDICTIONS.c[c].type) for c in ("id", "created_at", "alias", "shadow")),
        sa.column("forecast_key", sa.String),
    )
    days = sa.table(
        "forecast_days_0003",
        sa.column("forecast_key", sa.String),
        *(sa.column(c, OLD_DAYS.c[c].type) for c in DAY_COLUMNS),
    )
    new_inputs, new_forecasts, first_of, rows = {}, {}, {}, []
    for r in records:
        sent = _loaded(r.rows)
        input_key = None if sent is None else _digest(sent)
        if input_key is not None and input_key not in seen:
            new_inputs[input_key] = {"key": input_key, "rows": sent}
        content = {c: getattr(r, c) for c in CONTENT if c != "input_key"}
        content["levels"], content["forecast"] = _loaded(r.levels), _loaded(r.forecast)
        content["input_key"] = input_key
        key = _digest(content)
        if key not in seen and key not in new_forecasts:
            new_forecasts[key] = {**content, "key": key, "created_at": r.created_at}
            first_of[r.id] = key
        rows.append(
            {"id": r.id, "created_at": r.created_at, "alias": r.alias, "shadow": bool(r.shadow)}
            | {"forecast_key": key}
        )
    seen.update(new_inputs, new_forecasts)
    if new_inputs:
        bind.execute(inputs.insert(), list(new_inputs.values()))
    if new_forecasts:
        bind.execute(forecasts.insert(), list(new_forecasts.values()))
        old_days = bind.execute(sa.select(OLD_DAYS).where(OLD_DAYS.c.prediction_id.in_(first_of)))
        moved = [
            {"forecast_key": first_of[d.prediction_id]}
            | {c: getattr(d, c) for c in DAY_COLUMNS}
            | {"quantiles": _loaded(d.quantiles)}
            for d in old_days
        ]
        if moved:
            bind.execute(days.insert(), moved)
    bind.execute(answers.insert(), rows)


def upgrade() -> None:
    _new_tables()
    bind = op.get_bind()
    seen: set[str] = set()
    ids = list(
        bind.execute(
            sa.select(OLD_PREDICTIONS.c.id).order_by(
                OLD_PREDICTIONS.c.created_at, OLD_PREDICTIONS.c.id
            )
        ).scalars()
    )
    for start in range(0, len(ids), CHUNK):
        part = ids[start : start + CHUNK]
        records = bind.execute(
            sa.select(OLD_PREDICTIONS)
            .where(OLD_PREDICTIONS.c.id.in_(part))
            .order_by(OLD_PREDICTIONS.c.created_at, OLD_PREDICTIONS.c.id)
        ).all()
        _move_chunk(bind, records, seen)
    op.drop_index("ix_forecast_days_day", "forecast_days")
    op.drop_table("forecast_days")
    op.drop_index("ix_predictions_origin", "predictions")
    op.drop_index("ix_predictions_created_at", "predictions")
    op.drop_table("predictions")
    op.rename_table("predictions_0003", "predictions")
    op.rename_table("forecast_days_0003", "forecast_days")
    op.create_index("ix_predictions_created_at", "predictions", ["created_at"])
    op.create_index("ix_predictions_forecast_key", "predictions", ["forecast_key"])
    op.create_index("ix_forecast_days_day", "forecast_days", ["day"])


def downgrade() -> None:
    """Back to one wide row per answer (and its days), each answer's content copied in."""
    op.create_table(
        "predictions_0002",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("alias", sa.String(64)),
        sa.Column("shadow", sa.Boolean, nullable=False),
        sa.Column("origin", sa.Date, nullable=False),
        sa.Column("horizon", sa.Integer, nullable=False),
        sa.Column("rows_source", sa.String(16), nullable=False),
        sa.Column("rows_hash", sa.String(64), nullable=False),
        sa.Column("rows", sa.JSON),
        sa.Column("data_md5", sa.String(64)),
        sa.Column("code_fingerprint", sa.String(32)),
        sa.Column("levels", sa.JSON, nullable=False),
        sa.Column("forecast", sa.JSON, nullable=False),
        sa.Column("rows_days", sa.Integer),
        sa.Column("calibration_source", sa.String(16)),
        sa.Column("calibration_as_of", sa.Date),
        sa.Column("calibration_digest", sa.String(64)),
    )
    content = ", ".join(f"f.{c}" for c in CONTENT if c != "input_key")
    op.execute(
        f"INSERT INTO predictions_0002 (id, created_at, alias, shadow, rows, "  # noqa: S608
        f"{content.replace('f.', '')}) SELECT p.id, p.created_at, p.alias, p.shadow, i.rows, "
        f"{content} FROM predictions p JOIN forecasts f ON f.key = p.forecast_key "
        "LEFT JOIN inputs i ON i.key = f.input_key"
    )
    op.create_table(
        "forecast_days_0002",
        sa.Column(
            "prediction_id", sa.String(32), sa.ForeignKey("predictions_0002.id"), primary_key=True
        ),
        sa.Column("step", sa.Integer, primary_key=True),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("median", sa.Float, nullable=False),
        sa.Column("lower_80", sa.Float),
        sa.Column("upper_80", sa.Float),
        sa.Column("lower_95", sa.Float),
        sa.Column("upper_95", sa.Float),
        sa.Column("quantiles", sa.JSON, nullable=False),
    )
    columns = ", ".join(DAY_COLUMNS)
    op.execute(
        f"INSERT INTO forecast_days_0002 (prediction_id, {columns}) SELECT p.id, "  # noqa: S608
        f"{', '.join('d.' + c for c in DAY_COLUMNS)} FROM predictions p "
        "JOIN forecast_days d ON d.forecast_key = p.forecast_key"
    )
    for index, table in (
        ("ix_forecast_days_day", "forecast_days"),
        ("ix_predictions_forecast_key", "predictions"),
        ("ix_predictions_created_at", "predictions"),
        ("ix_forecasts_input_key", "forecasts"),
        ("ix_forecasts_origin", "forecasts"),
    ):
        op.drop_index(index, table)
    for table in ("forecast_days", "predictions", "forecasts", "inputs"):
        op.drop_table(table)
    op.rename_table("predictions_0002", "predictions")
    op.rename_table("forecast_days_0002", "forecast_days")
    op.create_index("ix_predictions_created_at", "predictions", ["created_at"])
    op.create_index("ix_predictions_origin", "predictions", ["origin"])
    op.create_index("ix_forecast_days_day", "forecast_days", ["day"])

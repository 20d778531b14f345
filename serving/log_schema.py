"""The prediction log's tables, as the newest alembic revision (serving/migrations) makes them.

Tables (created and upgraded by alembic migrations in serving/migrations, never ad-hoc DDL):
- predictions: one small row per /predict answer (or shadow forecast): its id, when, the alias
  asked for, shadow or not, and the key of what was answered (~0.3 KB with its indexes);
- forecasts: what was answered, once per distinct content (keyed by a hash of it): the model,
  version, origin day, horizon, where the rows came from and their hash, the forecast as
  returned, the calibration used; the same answer served a million times is stored once;
- inputs: the rows a request sent, once per distinct rows (keyed by their hash): replay needs them;
- forecast_days: one row per forecast day of a stored forecast (step, day, median, 80% and 95%
  bounds, all quantiles): what scoring joins with the realized closes;
- live_scores: what `coinflow monitor score` computed, per version, alias, horizon, window and
  day (the API's /monitoring and gauges read it);
- calibration_states: each served version's adaptive calibration state as `coinflow monitor
  score` advanced it from the platform's rows (serving.calibration_states reads and writes it;
  the API serves with the newest one of each version and every answer names the one it used).
`answers` joins the first three back: one row per answer, with every column a record has.
Retention (by age and size, serving/retention.py) deletes old answers, then what nothing uses.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
KEY = 32  # hex digits of a content key: 128 bits of a sha256
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("alias", sa.String(64)),  # the alias asked for (None: ?version=N)
    sa.Column("shadow", sa.Boolean, nullable=False, default=False),
    sa.Column("forecast_key", sa.String(KEY), sa.ForeignKey("forecasts.key"), nullable=False),
    sa.Index("ix_predictions_forecast_key", "forecast_key"),
)
inputs = sa.Table(
    "inputs",
    metadata,
    sa.Column("key", sa.String(KEY), primary_key=True),  # sha256 of the rows' JSON
    sa.Column("rows", sa.JSON, nullable=False),  # the request's rows, as sent (validated)
)
forecasts = sa.Table(
    "forecasts",
    metadata,
    sa.Column("key", sa.String(KEY), primary_key=True),  # sha256 of everything below
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),  # first served
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("origin", sa.Date, nullable=False, index=True),
    sa.Column("horizon", sa.Integer, nullable=False),
    sa.Column("rows_source", sa.String(16), nullable=False),  # request | dataset
    sa.Column("rows_hash", sa.String(64), nullable=False),
    sa.Column("rows_days", sa.Integer),  # how many rows it read, ending at the origin day
    sa.Column("input_key", sa.String(KEY), sa.ForeignKey("inputs.key"), index=True),
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
    sa.Column("forecast_key", sa.String(KEY), sa.ForeignKey("forecasts.key"), primary_key=True),
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
answers = (
    sa.select(
        predictions.c.id,
        predictions.c.created_at,
        forecasts.c.model_name,
        forecasts.c.version,
        predictions.c.alias,
        predictions.c.shadow,
        forecasts.c.origin,
        forecasts.c.horizon,
        forecasts.c.rows_source,
        forecasts.c.rows_hash,
        forecasts.c.rows_days,
        inputs.c.rows,
        forecasts.c.data_md5,
        forecasts.c.code_fingerprint,
        forecasts.c.levels,
        forecasts.c.forecast,
        forecasts.c.calibration_source,
        forecasts.c.calibration_as_of,
        forecasts.c.calibration_digest,
        predictions.c.forecast_key,
    )
    .select_from(
        predictions.join(forecasts, forecasts.c.key == predictions.c.forecast_key).outerjoin(
            inputs, inputs.c.key == forecasts.c.input_key
        )
    )
    .subquery("answers")
)

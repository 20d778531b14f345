"""The prediction log: predictions, forecast_days, live_scores.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "predictions",
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
    )
    op.create_index("ix_predictions_created_at", "predictions", ["created_at"])
    op.create_index("ix_predictions_origin", "predictions", ["origin"])
    op.create_table(
        "forecast_days",
        sa.Column(
            "prediction_id", sa.String(32), sa.ForeignKey("predictions.id"), primary_key=True
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
    op.create_index("ix_forecast_days_day", "forecast_days", ["day"])
    op.create_table(
        "live_scores",
        sa.Column("model_name", sa.String(200), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("role", sa.String(64), primary_key=True),
        sa.Column("horizon", sa.Integer, primary_key=True),
        sa.Column("window", sa.String(32), primary_key=True),
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


def downgrade() -> None:
    op.drop_table("live_scores")
    op.drop_index("ix_forecast_days_day", "forecast_days")
    op.drop_table("forecast_days")
    op.drop_index("ix_predictions_origin", "predictions")
    op.drop_index("ix_predictions_created_at", "predictions")
    op.drop_table("predictions")

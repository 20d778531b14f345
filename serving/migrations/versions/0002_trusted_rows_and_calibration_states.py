"""Trusted rows and calibration states: how many rows each forecast read, which calibration
state it used, and the table of calibration states `coinflow monitor score` writes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-14
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("rows_days", sa.Integer))
        batch.add_column(sa.Column("calibration_source", sa.String(16)))
        batch.add_column(sa.Column("calibration_as_of", sa.Date))
        batch.add_column(sa.Column("calibration_digest", sa.String(64)))
    # Forecasts logged before: the rows a request sent are stored, so their count is known (the
    # monitor compares exactly that many of the platform's rows); older answers from the
    # version's own rows were served with its fixed offsets (no adaptive state existed).
    predictions = sa.table(
        "predictions",
        sa.column("id", sa.String),
        sa.column("rows", sa.JSON),
        sa.column("rows_days", sa.Integer),
        sa.column("calibration_source", sa.String),
    )
    bind = op.get_bind()
    sent = bind.execute(
        sa.select(predictions.c.id, predictions.c.rows).where(predictions.c.rows.is_not(None))
    ).all()
    for pid, rows in sent:
        count = len(json.loads(rows) if isinstance(rows, str) else rows)
        bind.execute(predictions.update().where(predictions.c.id == pid).values(rows_days=count))
    bind.execute(predictions.update().values(calibration_source="fixed"))
    op.create_table(
        "calibration_states",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("updates", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("data_md5", sa.String(32), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("model_name", "version", "digest", name="uq_calibration_states_digest"),
    )
    op.create_index(
        "ix_calibration_states_version", "calibration_states", ["model_name", "version", "as_of"]
    )


def downgrade() -> None:
    op.drop_index("ix_calibration_states_version", "calibration_states")
    op.drop_table("calibration_states")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("calibration_digest")
        batch.drop_column("calibration_as_of")
        batch.drop_column("calibration_source")
        batch.drop_column("rows_days")

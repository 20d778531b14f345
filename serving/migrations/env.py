"""Alembic environment of the prediction log: runs on the connection serving/prediction_log.py
hands over (config.attributes["connection"]); no alembic.ini, no URL of its own."""

from __future__ import annotations

from alembic import context

from serving.prediction_log import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

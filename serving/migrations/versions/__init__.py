"""Alembic revisions of the prediction log."""

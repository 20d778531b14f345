"""Alembic migrations of the prediction log (serving/prediction_log.py)."""

-- Runs once, when the postgres-data volume is empty (/docker-entrypoint-initdb.d), as the
-- role `coinflow` (POSTGRES_USER), which then owns one database per component.
CREATE DATABASE airflow;  -- Airflow metadata + Celery result backend
CREATE DATABASE mlflow;   -- MLflow tracking + model registry
CREATE DATABASE optuna;   -- Optuna study storage (parallel sweep workers)
CREATE DATABASE predictions;  -- the API's prediction log (alembic-migrated at start-up)

"""coinflow model API: FastAPI over the MLflow registry (versions, aliases, hot reload, lineage)."""

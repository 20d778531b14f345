"""UI deployment settings from env vars / .env (never from params.yaml)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class UiSettings(BaseSettings):
    """Where the API lives, how long to wait for it, and where the MLflow UI is (optional)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    coinflow_api_url: str = "http://127.0.0.1:8000"
    coinflow_api_timeout_s: float = Field(default=10.0, gt=0)
    coinflow_mlflow_ui_url: str | None = None

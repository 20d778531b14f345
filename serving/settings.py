"""Deployment settings of the model API, from env vars / `.env` (never from params.yaml)."""

from __future__ import annotations

import os

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    """Where the registry is, which model to serve, and how the API behaves."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    mlflow_tracking_uri: str = "sqlite:///mlruns.db"
    mlflow_registry_uri: str | None = None  # defaults to the tracking URI
    coinflow_model_name: str = Field(default="btc-forecaster", min_length=1)
    coinflow_default_alias: str = Field(default="champion", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # Seconds between re-resolutions of the served aliases; 0 turns the periodic refresh off.
    coinflow_refresh_s: float = Field(default=30.0, ge=0)
    # Bearer token of POST /admin/reload; unset (the default) disables the endpoint.
    coinflow_admin_token: SecretStr | None = None
    coinflow_cache_size: int = Field(default=4, ge=1, le=64)
    coinflow_max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    coinflow_history_days: int = Field(default=60, ge=0, le=1000)
    # /ready re-probes the registry when its last contact is older than this.
    coinflow_ready_probe_s: float = Field(default=5.0, ge=0)
    # MLflow's HTTP client defaults (7 retries, 120 s timeout) would stall requests for minutes
    # while the tracking server is down; the API prefers failing fast and serving from cache.
    coinflow_registry_timeout_s: int = Field(default=5, ge=1)
    coinflow_registry_retries: int = Field(default=1, ge=0, le=10)

    @property
    def registry_uri(self) -> str:
        """Where registered models live: MLFLOW_REGISTRY_URI, else the tracking store."""
        return self.mlflow_registry_uri or self.mlflow_tracking_uri

    @property
    def admin_token(self) -> str | None:
        """The admin bearer token, or None when the admin endpoint is disabled."""
        if self.coinflow_admin_token is None:
            return None
        return self.coinflow_admin_token.get_secret_value() or None

    def apply_mlflow_client_limits(self) -> None:
        """Bound MLflow's HTTP retries and timeouts in this process, unless the env sets them."""
        limits = {
            "MLFLOW_HTTP_REQUEST_TIMEOUT": self.coinflow_registry_timeout_s,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": self.coinflow_registry_retries,
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": 1,
        }
        for name, value in limits.items():
            os.environ.setdefault(name, str(value))

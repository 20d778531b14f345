"""Deployment settings of the model API, from env vars / `.env` (never from params.yaml)."""

from __future__ import annotations

import os

from pydantic import Field, SecretStr

from core.tracking import MlflowSettings
from serving.schemas import ALIAS_PATTERN


def _prediction_log_url() -> str:
    """Embedded default: a SQLite file at the project root (docker-compose sets Postgres)."""
    from core.paths import project

    return f"sqlite:///{project().root / 'predictions.db'}"


def _model_name() -> str:
    """params.yaml's registry.model_name: the model the pipeline registers."""
    from core.params import load_params

    return load_params().registry.model_name


class ServingSettings(MlflowSettings):
    """Where the registry is (MlflowSettings), which model to serve, how the API behaves."""

    coinflow_model_name: str = Field(default_factory=_model_name, min_length=1)
    coinflow_default_alias: str = Field(default="champion", pattern=ALIAS_PATTERN)
    # Seconds between re-resolutions of the served aliases; 0 turns the periodic refresh off.
    coinflow_refresh_s: float = Field(default=30.0, ge=0)
    # Bearer token of POST /admin/reload; unset (the default) disables the endpoint.
    coinflow_admin_token: SecretStr | None = None
    coinflow_cache_size: int = Field(default=4, ge=1, le=64)
    coinflow_max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    coinflow_body_timeout_s: float = Field(default=5.0, gt=0, le=120)
    coinflow_history_days: int = Field(default=60, ge=0, le=1000)
    # /ready re-probes the registry when its last contact is older than this.
    coinflow_ready_probe_s: float = Field(default=5.0, ge=0)
    # MLflow's HTTP client defaults (7 retries, 120 s timeout) would stall requests for minutes
    # while the tracking server is down; the API prefers failing fast and serving from cache.
    coinflow_registry_timeout_s: int = Field(default=5, ge=1)
    coinflow_registry_retries: int = Field(default=1, ge=0, le=10)
    # Registry calls in flight at once; more wait at most a moment, then answer 503.
    coinflow_registry_slots: int = Field(default=4, ge=1, le=64)
    # Where every served forecast is logged (SQLAlchemy URL); "" turns the log off.
    coinflow_prediction_log_url: str = Field(default_factory=_prediction_log_url)
    coinflow_prediction_log_capacity: int = Field(default=10_000, ge=1)
    # Also forecast with this alias after answering, logged as shadow, never returned.
    coinflow_shadow_alias: str | None = Field(default=None, pattern=ALIAS_PATTERN)

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

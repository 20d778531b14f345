"""Deployment settings of the model API, from env vars / `.env` (never from params.yaml)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.tracking import MlflowSettings, env_file
from serving.schemas import ALIAS_PATTERN

if TYPE_CHECKING:
    from serving.retention import Retention

# A bearer token shorter than this is refused at start-up (`openssl rand -hex 32` gives 64).
MIN_ADMIN_TOKEN = 32


def _prediction_log_url() -> str:
    """Embedded default: a SQLite file at the project root (docker-compose sets Postgres)."""
    from core.paths import project

    return f"sqlite:///{project().root / 'predictions.db'}"


def _model_name() -> str:
    """params.yaml's registry.model_name: the model the pipeline registers."""
    from core.params import load_params

    return load_params().registry.model_name


class ConnectionSettings(BaseSettings):
    """What a connection may cost before a request reaches the app (serving.http_protocol):
    read by every server process from the env, so worker processes apply the same limits."""

    model_config = SettingsConfigDict(env_file=env_file(), extra="ignore")

    # The request line and headers together (431 past it); Node.js and h11 use 16 KiB too.
    coinflow_max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    coinflow_max_headers: int = Field(default=100, ge=8, le=1000)  # 431 past it
    # A request's headers must be complete this long after its first byte (or after the
    # connection opened): slow-header clients are answered 408 and disconnected.
    coinflow_header_timeout_s: float = Field(default=5.0, gt=0, le=120)
    # Open connections per server process; more are answered 503 and closed at once.
    coinflow_max_connections: int = Field(default=256, ge=1, le=100_000)


class ServingSettings(MlflowSettings, ConnectionSettings):
    """Where the registry is (MlflowSettings), which model to serve, how the API behaves."""

    coinflow_model_name: str = Field(default_factory=_model_name, min_length=1)
    coinflow_default_alias: str = Field(default="champion", pattern=ALIAS_PATTERN)
    # Seconds between re-resolutions of the served aliases; 0 turns the periodic refresh off.
    coinflow_refresh_s: float = Field(default=30.0, ge=0)
    # Bearer token of POST /admin/reload (at least MIN_ADMIN_TOKEN characters); unset (the
    # default) or empty disables the endpoint.
    coinflow_admin_token: SecretStr | None = None
    coinflow_cache_size: int = Field(default=4, ge=1, le=64)
    coinflow_max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    coinflow_body_timeout_s: float = Field(default=5.0, gt=0, le=120)
    # Requests per second per client address (token bucket; /health, /ready and /metrics are
    # not counted); 0 turns the limit off. Past it: 429 with Retry-After.
    coinflow_rate_limit_per_s: float = Field(default=20.0, ge=0, le=100_000)
    coinflow_rate_limit_burst: int = Field(default=40, ge=1, le=1_000_000)
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
    # Retention (serving/retention.py): answers older than this many days, then the oldest past
    # this many MB, are deleted every COINFLOW_PREDICTION_LOG_PRUNE_S by the writer and by
    # `coinflow monitor prune`; 0 turns a limit off.
    coinflow_prediction_log_max_age_days: float = Field(default=365.0, ge=0)
    coinflow_prediction_log_max_mb: float = Field(default=1024.0, ge=0)
    coinflow_prediction_log_prune_s: float = Field(default=300.0, gt=0)
    # Also forecast with this alias after answering, logged as shadow, never returned.
    coinflow_shadow_alias: str | None = Field(default=None, pattern=ALIAS_PATTERN)

    @field_validator("coinflow_admin_token")
    @classmethod
    def _token_long_enough(cls, token: SecretStr | None) -> SecretStr | None:
        """A guessable admin token is refused, never silently accepted (empty: disabled)."""
        if token is None or not token.get_secret_value():
            return token
        length = len(token.get_secret_value().strip())
        if length < MIN_ADMIN_TOKEN:
            raise ValueError(
                f"COINFLOW_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN} characters (it has "
                f"{length}): generate one with `openssl rand -hex 32`, or leave it unset to "
                "disable POST /admin/reload"
            )
        return token

    def log_retention(self) -> Retention:
        """The prediction log's retention, as configured."""
        from serving.retention import Retention

        return Retention.of(
            self.coinflow_prediction_log_max_age_days,
            self.coinflow_prediction_log_max_mb,
            self.coinflow_prediction_log_prune_s,
        )

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

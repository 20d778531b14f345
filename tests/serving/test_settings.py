"""Serving settings and message hygiene: pure functions, no server."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.tracking import redact
from serving.settings import ServingSettings

pytestmark = pytest.mark.unit


def test_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name, value in {
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "COINFLOW_REFRESH_S": "2.5",
        "COINFLOW_MODEL_NAME": "m",
        "COINFLOW_CACHE_SIZE": "3",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("COINFLOW_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    settings = ServingSettings()
    assert (
        settings.mlflow_tracking_uri,
        settings.coinflow_refresh_s,
        settings.coinflow_model_name,
        settings.coinflow_cache_size,
    ) == ("http://mlflow:5000", 2.5, "m", 3)
    assert settings.registry_uri == "http://mlflow:5000"
    assert settings.admin_token is None  # no default: the admin endpoint is off
    monkeypatch.setenv("COINFLOW_ADMIN_TOKEN", "")
    assert ServingSettings().admin_token is None  # empty counts as unset
    token = "t0k3n" * 7  # 35 characters
    monkeypatch.setenv("COINFLOW_ADMIN_TOKEN", token)
    assert ServingSettings().admin_token == token
    assert token not in repr(ServingSettings())
    monkeypatch.setenv("COINFLOW_CACHE_SIZE", "0")
    with pytest.raises(ValueError, match="coinflow_cache_size"):
        ServingSettings()


def test_redact_hides_url_credentials() -> None:
    text = "postgresql://coinflow:p@ss@db:5432/mlflow failed; see http://mlflow:5000/api"
    assert redact(text) == "postgresql://***@db:5432/mlflow failed; see http://mlflow:5000/api"

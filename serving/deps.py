"""Dependencies: the app's model cache, metrics and settings (async: no threadpool hop)."""

from __future__ import annotations

from fastapi import Request

from serving.cache import ModelCache
from serving.problems import StartingError
from serving.prometheus import Metrics
from serving.settings import ServingSettings


async def get_cache(request: Request) -> ModelCache:
    """The model cache, once the background start-up has built it (else 503 with the reason)."""
    cache: ModelCache | None = request.app.state.cache
    if cache is None:
        error = request.app.state.startup.error
        raise StartingError(
            "the model API is starting: "
            + (f"the registry is not reachable yet ({error})" if error else "loading models")
        )
    return cache


async def get_metrics(request: Request) -> Metrics:
    """The app's Prometheus metrics."""
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_settings(request: Request) -> ServingSettings:
    """The settings the app was created with."""
    settings: ServingSettings = request.app.state.settings
    return settings

"""App factory: settings → registry client, model cache and metrics, loaded in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from serving.metrics import Metrics, MetricsMiddleware
from serving.middleware import BodyLimitMiddleware
from serving.problems import PROBLEM_TYPE, ServingError, install_problem_handlers
from serving.settings import ServingSettings

log = logging.getLogger(__name__)


async def refresh_forever(app: FastAPI, every_s: float) -> None:
    """Re-resolve the served aliases every `every_s` seconds (failures logged, never raised)."""
    failing = False
    while True:
        await asyncio.sleep(every_s)
        try:
            changed = await run_in_threadpool(app.state.cache.refresh)
        except ServingError as exc:  # logged once per outage, not once per period
            if not failing:
                log.warning("alias refresh failing, serving cached versions: %s", exc.detail)
            failing = True
            continue
        except Exception:
            log.exception("alias refresh failed")
            continue
        if failing:
            log.warning("alias refresh recovered")
        failing = False
        if changed:
            log.info("alias refresh: %s", changed)


def build_state(app: FastAPI, settings: ServingSettings) -> None:
    """Registry client and model cache for the app (MLflow is imported here, not at import)."""
    import mlflow
    import torch

    # The model wrappers run on this deploy's code: imported here, before any version loads,
    # so every version uses it rather than whichever version's bundled copy loaded first.
    import registry.pyfunc  # noqa: F401
    from serving.cache import ModelCache
    from serving.registry import Registry

    torch.set_num_threads(1)  # one small forecast per request: threads only contend
    settings.apply_mlflow_client_limits()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    metrics: Metrics = app.state.metrics
    app.state.cache = ModelCache(
        Registry(settings.mlflow_tracking_uri, settings.registry_uri, settings.coinflow_model_name),
        settings.coinflow_cache_size,
        settings.coinflow_default_alias,
        on_change=metrics.alias_moved,
    )


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the default alias's model before serving; keep it fresh in the background."""
    settings: ServingSettings = app.state.settings
    await run_in_threadpool(build_state, app, settings)
    try:
        await run_in_threadpool(app.state.cache.refresh)
    except ServingError as exc:  # start anyway: /health answers, /ready says why not ready
        log.warning("no model at start-up: %s", exc.detail)
    # Start-up objects (modules, the model) are long-lived: keep them out of GC passes.
    gc.collect()
    gc.freeze()
    task = None
    if settings.coinflow_refresh_s > 0:
        task = asyncio.create_task(refresh_forever(app, settings.coinflow_refresh_s))
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def problem_openapi(app: FastAPI) -> dict[str, Any]:
    """OpenAPI schema whose Problem responses are declared as application/problem+json."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                body = content.get("application/json", {})
                if body.get("schema", {}).get("$ref", "").endswith("/Problem"):
                    content[PROBLEM_TYPE] = content.pop("application/json")
    app.openapi_schema = schema
    return schema


def create_app(settings: ServingSettings | None = None) -> FastAPI:
    """The coinflow model API."""
    from serving.routes import models, ops, predict

    settings = settings or ServingSettings()
    app = FastAPI(
        title="coinflow model API",
        version="1.0.0",
        lifespan=lifespan,
        description="BTC close forecasts from the MLflow registry: version or alias "
        "queries, hot alias reload, lineage on every answer.",
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.started_at = time.time()
    install_problem_handlers(app)
    app.include_router(predict.router)
    app.include_router(models.router)
    app.include_router(ops.router)
    app.add_middleware(BodyLimitMiddleware, limit=settings.coinflow_max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost: sees 413s
    app.openapi = lambda: problem_openapi(app)  # type: ignore[method-assign]
    return app

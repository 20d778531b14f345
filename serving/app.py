"""App factory: settings → registry client, model cache and metrics, loaded in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from registry.errors import RegistryError
from serving.middleware import BodyLimitMiddleware
from serving.problems import PROBLEM_TYPE, install_problem_handlers
from serving.prometheus import Metrics, MetricsMiddleware
from serving.settings import ServingSettings
from serving.startup import Startup

log = logging.getLogger(__name__)


async def refresh_forever(app: FastAPI, every_s: float) -> None:
    """Re-resolve the served aliases every `every_s` seconds (failures logged, never raised)."""
    failing = False
    while True:
        await asyncio.sleep(every_s)
        cache = getattr(app.state, "cache", None)
        if cache is None:
            continue
        try:
            changed = await run_in_threadpool(cache.refresh)
        except RegistryError as exc:  # logged once per outage, not once per period
            if not failing:
                log.warning("alias refresh failing, serving cached versions: %s", exc)
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


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start loading in the background at once; keep the aliases fresh while serving."""
    settings: ServingSettings = app.state.settings
    app.state.cache = None
    app.state.prediction_log = None
    if settings.coinflow_prediction_log_url:
        from serving.log_writer import PredictionLog
        from serving.prediction_log import engine_for

        engine = engine_for(settings.coinflow_prediction_log_url)  # connects on first write
        capacity = settings.coinflow_prediction_log_capacity
        app.state.prediction_log = PredictionLog(engine, capacity=capacity).start()
    startup = app.state.startup = Startup(app, settings)
    startup.thread.start()
    task = None
    if settings.coinflow_refresh_s > 0:
        task = asyncio.create_task(refresh_forever(app, settings.coinflow_refresh_s))
    try:
        yield
    finally:
        startup.stop.set()
        if app.state.prediction_log is not None:
            app.state.prediction_log.close()  # flush what is queued (bounded)
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
    from serving.routes import models, monitoring, ops, predict

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
    app.include_router(monitoring.router)
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.coinflow_max_body_bytes,
        timeout=settings.coinflow_body_timeout_s,
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost: sees 413s
    app.openapi = lambda: problem_openapi(app)  # type: ignore[method-assign]
    return app

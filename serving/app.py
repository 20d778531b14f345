"""App factory: settings → registry client, model cache and metrics, loaded in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from registry.errors import RegistryError
from serving.middleware import BodyLimitMiddleware, RateLimitMiddleware
from serving.problems import PROBLEM_TYPE, Problem, install_problem_handlers
from serving.prometheus import Metrics, MetricsMiddleware
from serving.settings import ServingSettings
from serving.startup import Startup
from serving.workers import worker_duties

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
        from serving.log_database import engine_for
        from serving.log_writer import PredictionLog

        engine = engine_for(settings.coinflow_prediction_log_url)  # connects on first write
        capacity = settings.coinflow_prediction_log_capacity
        app.state.prediction_log = PredictionLog(
            engine, capacity=capacity, retention=settings.log_retention()
        ).start()
    startup = app.state.startup = Startup(app, settings)
    startup.thread.start()
    task = None
    if settings.coinflow_refresh_s > 0:
        task = asyncio.create_task(refresh_forever(app, settings.coinflow_refresh_s))
    try:
        async with worker_duties(app):  # --workers N: reloads reach every worker (serving.workers)
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
    """OpenAPI schema whose Problem responses are declared as application/problem+json, FastAPI's
    default 422 (HTTPValidationError) included: every 422 the app sends is a Problem."""
    if app.openapi_schema:
        return app.openapi_schema
    import json

    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    problem = "#/components/schemas/Problem"
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
                if ref == problem or (status == "422" and ref.endswith("/HTTPValidationError")):
                    del content["application/json"]
                    content[PROBLEM_TYPE] = {"schema": {"$ref": problem}}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Problem", Problem.model_json_schema())
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}" not in json.dumps(schema):
            components.pop(unused, None)
    app.openapi_schema = schema
    return schema


def create_app(settings: ServingSettings | None = None) -> FastAPI:
    """The coinflow model API."""
    from serving.routes import decisions, models, monitoring, ops, predict

    settings = settings or ServingSettings()
    # /docs and /redoc from Swagger UI and ReDoc files shipped in a package: no CDN, so they
    # work offline and behind a firewall.
    app = FastAPIOffline(
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
    app.include_router(decisions.router)
    app.include_router(ops.router)
    app.include_router(monitoring.router)
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.coinflow_max_body_bytes,
        timeout=settings.coinflow_body_timeout_s,
    )
    if settings.coinflow_rate_limit_per_s > 0:  # before the body is read: a 429 costs nothing
        app.add_middleware(
            RateLimitMiddleware,
            per_s=settings.coinflow_rate_limit_per_s,
            burst=settings.coinflow_rate_limit_burst,
        )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost: sees 413/429
    app.openapi = lambda: problem_openapi(app)  # type: ignore[method-assign]
    return app

"""App factory: settings → registry client, model cache and metrics, loaded in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from registry.errors import RegistryError
from serving.metrics import Metrics, MetricsMiddleware
from serving.middleware import BodyLimitMiddleware
from serving.problems import PROBLEM_TYPE, install_problem_handlers
from serving.settings import ServingSettings

log = logging.getLogger(__name__)


class Startup:
    """Background start-up: build the model cache and load the default alias, retrying.

    The API answers /health at once and /ready says why it is not ready yet; a registry or
    database that is down only delays readiness (it is retried with back-off), and SIGTERM
    stops the process whatever the loader is waiting on (it runs in a daemon thread).
    """

    def __init__(self, app: FastAPI, settings: ServingSettings) -> None:
        self.app, self.settings = app, settings
        self.done = threading.Event()  # the first load attempt ended (model or not)
        self.stop = threading.Event()
        self.error: str | None = None
        self.thread = threading.Thread(target=self.run, name="model-loader", daemon=True)

    def run(self) -> None:
        delay = 1.0
        while not self.stop.is_set():
            try:
                if getattr(self.app.state, "cache", None) is None:
                    build_state(self.app, self.settings)
                self.app.state.cache.refresh()
                self.error = None
                break
            except RegistryError as exc:  # start anyway: /health answers, /ready says why
                self.error = str(exc)
                if getattr(self.app.state, "cache", None) is not None:
                    break  # the cache exists: the periodic refresh takes over from here
            except Exception as exc:  # a store that cannot even be opened (bad URI, DB down)
                self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            finally:
                self.done.set()
            log.warning("model API not ready, retrying in %.0f s: %s", delay, self.error)
            self.stop.wait(delay)
            delay = min(delay * 2, 30.0)
        # Start-up objects (modules, the model) are long-lived: keep them out of GC passes.
        gc.collect()
        gc.freeze()


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


def build_state(app: FastAPI, settings: ServingSettings) -> None:
    """Registry client and model cache for the app (MLflow is imported here, not at import)."""
    import mlflow
    import torch

    # The model wrappers run on this deploy's code, imported before any version loads; a
    # version built with other model code is refused (registry.store.check_code).
    import registry.pyfunc  # noqa: F401
    from serving.cache import ModelCache
    from serving.registry import RegistryClient

    torch.set_num_threads(1)  # one small forecast per request: threads only contend
    settings.apply_mlflow_client_limits()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    metrics: Metrics = app.state.metrics
    client = RegistryClient.connect(
        settings.coinflow_model_name,
        settings.mlflow_tracking_uri,
        settings.registry_uri,
        settings.coinflow_registry_slots,
    )
    app.state.cache = ModelCache(
        client,
        settings.coinflow_cache_size,
        settings.coinflow_default_alias,
        on_change=metrics.alias_moved,
    )


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start loading in the background at once; keep the aliases fresh while serving."""
    settings: ServingSettings = app.state.settings
    app.state.cache = None
    startup = app.state.startup = Startup(app, settings)
    startup.thread.start()
    task = None
    if settings.coinflow_refresh_s > 0:
        task = asyncio.create_task(refresh_forever(app, settings.coinflow_refresh_s))
    try:
        yield
    finally:
        startup.stop.set()
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

"""Operations: /health (liveness), /ready (readiness), /metrics (Prometheus), /admin/reload."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from forecasting.forecast import MAX_HORIZON
from serving.cache import ModelCache
from serving.deps import get_cache, get_metrics, get_settings
from serving.problems import ForbiddenError, UnauthorizedError, problem_responses, without_paths
from serving.prometheus import Metrics
from serving.schemas import MAX_ROWS, HealthResponse, LimitsResponse, ReadyResponse, ReloadResponse
from serving.settings import ServingSettings
from serving.workers import broadcast_reload

if TYPE_CHECKING:
    from serving.log_writer import PredictionLog
    from serving.startup import Startup

router = APIRouter(tags=["operations"])
bearer = HTTPBearer(auto_error=False, description="COINFLOW_ADMIN_TOKEN")


@router.get("/health", response_model=HealthResponse)
async def health(request: Request) -> dict[str, object]:
    """Liveness: the process is up (says nothing about models or the registry)."""
    return {"status": "ok", "uptime_s": round(time.time() - request.app.state.started_at, 3)}


@router.get("/limits", response_model=LimitsResponse)
def limits(settings: Annotated[ServingSettings, Depends(get_settings)]) -> dict[str, int]:
    """The bounds of a /predict request: horizon, rows, returned history."""
    return {
        "max_horizon": MAX_HORIZON,
        "max_rows": MAX_ROWS,
        "history_days": settings.coinflow_history_days,
    }


def log_state(log: PredictionLog | None) -> dict[str, object] | None:
    """The prediction log writer's state for /ready (None: logging is off)."""
    if log is None:
        return None
    s = log.snapshot()
    return {
        "written": s.written,
        "dropped": s.dropped,
        "depth": s.depth,
        "healthy": s.healthy,
        "last_error": s.last_error,
        "reasons": s.reasons,
    }


def unserved_reason(cache: ModelCache, alias: str, startup: Startup) -> str:
    """Why an alias has no model loaded: the registry is silent, the alias is unset, or the
    version it names failed to load (and why)."""
    if not cache.status.reachable:
        return "the registry has not answered yet"
    target = cache.known_aliases().get(alias)
    if target is None:
        return "the alias is not set in the registry"
    error = cache.load_error(target) or startup.error
    return f"v{target} failed to load: {error}" if error else f"v{target} is loading"


def readiness(
    cache: ModelCache | None,
    startup: Startup,
    settings: ServingSettings,
    log: PredictionLog | None = None,
) -> dict[str, object]:
    """ready | degraded (serving from cache, registry unreachable, or forecasts not logged) |
    not_ready (no model)."""
    phase = "done" if startup.done.is_set() else "loading"
    logged = log_state(log)
    log_reasons = list(logged.pop("reasons")) if logged else []  # type: ignore[call-overload]
    if cache is None:
        why = startup.error or "building the model cache"
        return {
            "status": "not_ready",
            "startup": phase,
            "model_name": settings.coinflow_model_name,
            "default_alias": settings.coinflow_default_alias,
            "serving_version": None,
            "aliases": {},
            "loaded_versions": [],
            "registry": {
                "reachable": False,
                "last_ok": None,
                "last_error": without_paths(startup.error or "") or None,
            },
            "prediction_log": logged,
            "reasons": [
                without_paths(r)
                for r in [f"starting: {why}; retrying in the background", *log_reasons]
            ],
        }
    if time.time() - cache.status.last_check > settings.coinflow_ready_probe_s:
        cache.probe_in_background()  # the next call sees its result
    alias = settings.coinflow_default_alias
    served = cache.served()
    version = served.get(alias)
    reasons: list[str] = []
    if version is None:
        reasons.append(
            f"no model loaded for alias {alias!r} of {cache.registry.name!r}: "
            + unserved_reason(cache, alias, startup)
        )
    if not cache.status.reachable:
        reasons.append(
            f"registry {cache.registry.uri!r} unreachable: {cache.status.last_error}; "
            "serving cached versions, alias moves are not seen until it answers"
        )
    reasons = [without_paths(r) for r in [*reasons, *log_reasons]]  # never the server's disk
    status = "not_ready" if version is None else "ready" if not reasons else "degraded"
    return {
        "status": status,
        "startup": phase,
        "model_name": cache.registry.name,
        "default_alias": alias,
        "serving_version": version,
        "aliases": served,
        "loaded_versions": cache.loaded_versions(),
        "registry": {
            k: without_paths(v) if isinstance(v, str) else v for k, v in cache.state().items()
        },
        "prediction_log": logged,
        "reasons": reasons,
    }


@router.get(
    "/ready",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "no model to serve"}},
)
async def ready(
    request: Request, settings: Annotated[ServingSettings, Depends(get_settings)]
) -> JSONResponse:
    """200 ready/degraded while a model can be served; 503 not_ready otherwise."""
    state = request.app.state
    body = ReadyResponse.model_validate(
        readiness(state.cache, state.startup, settings, state.prediction_log)
    )
    return JSONResponse(body.model_dump(), status_code=503 if body.status == "not_ready" else 200)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format",
        }
    },
)
async def metrics_text(
    request: Request, metrics: Annotated[Metrics, Depends(get_metrics)]
) -> Response:
    """Request counts, latency histogram, served model versions, registry status."""
    metrics.sample(request.app.state.cache, request.app.state.prediction_log)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def check_admin(
    settings: ServingSettings, credentials: HTTPAuthorizationCredentials | None
) -> None:
    """403 when admin is disabled (no token set) or the token is wrong; 401 when none is sent."""
    token = settings.admin_token
    if token is None:
        raise ForbiddenError("the admin API is disabled: set COINFLOW_ADMIN_TOKEN to enable it")
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UnauthorizedError(
            "send 'Authorization: Bearer <COINFLOW_ADMIN_TOKEN>'", {"WWW-Authenticate": "Bearer"}
        )
    if not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
        raise ForbiddenError("the bearer token does not match COINFLOW_ADMIN_TOKEN")


@router.post(
    "/admin/reload", response_model=ReloadResponse, responses=problem_responses(401, 403, 503)
)
def reload_aliases(
    request: Request,
    cache: Annotated[ModelCache, Depends(get_cache)],
    settings: Annotated[ServingSettings, Depends(get_settings)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> dict[str, object]:
    """Re-resolve the served aliases now; moved versions are loaded before they are swapped in
    (in every worker: the answer waits until the others have refreshed too)."""
    check_admin(settings, credentials)
    changed = cache.refresh()
    broadcast_reload(request.app)
    return {"changed": changed, "aliases": cache.served()}

"""Errors as RFC 9457 problem JSON (`application/problem+json`: type, title, status, detail)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry.errors import (
    AliasNotSetError,
    ModelLoadError,
    NotFoundError,
    RegistryBusyError,
    RegistryError,
    RegistryUnavailableError,
    UnknownVersionError,
)

log = logging.getLogger(__name__)
PROBLEM_TYPE = "application/problem+json"
_TYPE_PREFIX = "urn:coinflow:problem:"
# An absolute local path (two folders deep at least, not the path part of a URL or models:/
# URI): what a client never sees of the server's disk. "sqlite:////srv/a/mlruns.db" keeps
# "sqlite:///…/mlruns.db"; "http://host/a/b" and "models:/name/3" are left alone.
_LOCAL_PATH = re.compile(r"(?<![\w.~:-])(?<!:/)/(?:[^\s/'\"(),:;]+/){2,}([^\s/'\"(),:;]*)")


def without_paths(text: str) -> str:
    """`text` with every absolute local path cut to its last component."""
    return _LOCAL_PATH.sub(r"…/\1", text)


def problem_bytes(status: int, slug: str, title: str, detail: str) -> bytes:
    """A problem+json body, for answers sent below FastAPI (middleware, the HTTP protocol)."""
    body = {"type": _TYPE_PREFIX + slug, "title": title, "status": status, "detail": detail}
    return json.dumps(body).encode()


class Problem(BaseModel):
    """An error response: `type` names the kind of problem, `detail` says what to change."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None
    version: int | None = None  # model-load-failed: the version that would not load
    fingerprint: str | None = None  #   and the kernel it shipped


class ServingError(Exception):
    """A request the API cannot serve; subclasses fix the status, slug and title."""

    status = 500
    slug = "internal-error"
    title = "Internal server error"

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class BadInputError(ServingError):
    status, slug, title = 422, "invalid-input", "Invalid input"


class UnauthorizedError(ServingError):
    status, slug, title = 401, "unauthorized", "Missing bearer token"


class ForbiddenError(ServingError):
    status, slug, title = 403, "forbidden", "Forbidden"


class StartingError(ServingError):
    status, slug, title = 503, "starting", "Model API still starting"


class LogOffError(ServingError):
    status, slug, title = 404, "prediction-log-off", "The prediction log is off"


class LogUnavailableError(ServingError):
    status, slug, title = 503, "prediction-log-unavailable", "Prediction log not reachable"


# The registry's error family (registry.errors) → HTTP, most specific class first.
REGISTRY_PROBLEMS: list[tuple[type[RegistryError], int, str, str]] = [
    (AliasNotSetError, 404, "alias-not-set", "Alias not set"),
    (UnknownVersionError, 404, "unknown-version", "Model version not found"),
    (NotFoundError, 404, "not-found", "Not found"),
    # Load shedding: the registry was never asked (it may be healthy); retry in a moment.
    (RegistryBusyError, 503, "registry-busy", "Too many registry calls in flight"),
    (RegistryUnavailableError, 503, "registry-unavailable", "Model registry unreachable"),
    # A version that will not load stays broken: a 500, not a retry-later 503.
    (ModelLoadError, 500, "model-load-failed", "Model could not be loaded"),
    (RegistryError, 500, "registry-error", "Registry request refused"),
]


def registry_problem(exc: RegistryError) -> tuple[int, str, str, dict[str, Any]]:
    """(status, slug, title, extension members) of a registry error."""
    extra: dict[str, Any] = {}
    if isinstance(exc, ModelLoadError):
        extra = {"version": exc.version, "fingerprint": exc.fingerprint}
    for cls, status, slug, title in REGISTRY_PROBLEMS:
        if isinstance(exc, cls):
            return status, slug, title, extra
    raise AssertionError("RegistryError is the last entry")  # pragma: no cover


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """A problem+json response (RFC 9457 extension members in `extra`); local paths in the
    detail are cut to their last component."""
    body: dict[str, Any] = {
        "type": _TYPE_PREFIX + slug,
        "title": title,
        "status": status,
        "detail": without_paths(detail),
        **(extra or {}),
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_TYPE)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only JSON-safe fields: `ctx` may hold exception objects.
    return [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()
    ]


def _summary(errors: list[dict[str, Any]]) -> str:
    parts = [f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5]]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def install_problem_handlers(app: FastAPI) -> None:
    """Every error the app returns, including FastAPI's own 404/405/422, becomes problem JSON."""

    async def serving_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServingError)
        return problem_response(exc.status, exc.slug, exc.title, exc.detail, exc.headers)

    async def registry_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RegistryError)
        status, slug, title, extra = registry_problem(exc)
        headers = {"Retry-After": "1"} if isinstance(exc, RegistryBusyError) else None
        return problem_response(status, slug, title, str(exc), headers, extra=extra)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _validation_errors(exc)
        return problem_response(
            422, "validation-error", "Request validation failed", _summary(errors), errors=errors
        )

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        from http import HTTPStatus

        if exc.status_code == 400:  # FastAPI's "error parsing the body": a malformed body
            return problem_response(
                422,
                "validation-error",
                "Request validation failed",
                f"the request body cannot be parsed: {exc.detail}",
            )
        title = HTTPStatus(exc.status_code).phrase
        return problem_response(
            exc.status_code,
            title.lower().replace(" ", "-"),
            title,
            str(exc.detail),
            dict(exc.headers or {}),
        )

    async def unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500,
            "internal-error",
            "Internal server error",
            f"{type(exc).__name__}: the server failed; see its log",
        )

    app.add_exception_handler(ServingError, serving_error)
    app.add_exception_handler(RegistryError, registry_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unhandled)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for problem statuses (content type fixed in app.openapi)."""
    return {status: {"model": Problem} for status in statuses}

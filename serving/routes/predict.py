"""POST /predict: forecasts from a registry version or alias, with lineage."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from forecasting.features import CLOSE
from forecasting.forecast import InputRowsError
from serving.cache import ModelCache
from serving.deps import get_cache, get_metrics, get_settings
from serving.predictor import Answer, LoadedModel, points
from serving.problems import BadInputError, problem_responses
from serving.prometheus import Metrics
from serving.schemas import (
    ALIAS_PATTERN,
    MAX_LEVELS,
    LevelsQuery,
    PredictRequest,
    PredictResponse,
    VersionQuery,
)
from serving.settings import ServingSettings

if TYPE_CHECKING:
    from serving.log_writer import PredictionLog
    from serving.prediction_log import Served

router = APIRouter(tags=["predict"])
log = logging.getLogger(__name__)


def shown_levels(model: LoadedModel, asked: list[float] | None) -> list[float]:
    """The intervals a request asked for (all the model has by default); unknown ones: 422."""
    have = model.intervals
    if asked is None:
        return have
    unknown = [lvl for lvl in asked if not any(abs(lvl - h) < 1e-9 for h in have)]
    if unknown:
        raise BadInputError(
            f"levels {unknown} are not among version {model.version}'s intervals {have}"
        )
    return [h for h in have if any(abs(lvl - h) < 1e-9 for lvl in asked)]


def log_record(
    model: LoadedModel,
    out: Answer,
    *,
    prediction_id: str,
    alias: str | None,
    shadow: bool,
    inputs: tuple[np.ndarray, np.ndarray] | None,
) -> Served:
    """What the prediction log needs of one forecast: who answered, from which rows (request
    rows, else the version's own), with which calibration state, what. References only: the
    log's writer builds the stored record (forecast points, row hash, rows JSON) off the request
    path."""
    from serving.prediction_log import Served

    dates, values = inputs if inputs is not None else (model.recent_dates, model.recent_values)
    need = model.rows_needed
    return Served(
        prediction_id,
        dt.datetime.now(dt.UTC),
        model.name,
        model.version,
        alias,
        shadow,
        model.levels,
        out.dates,
        out.quantiles,
        dates[-need:],
        values[-need:],
        inputs is not None,
        model.lineage.get("dvc_md5"),
        model.lineage.get("code_fingerprint"),
        out.calibrator.used,
    )


def shadow_forecast(
    cache: ModelCache,
    prediction_log: PredictionLog,
    alias: str,
    served: int,
    horizon: int,
    inputs: tuple[np.ndarray, np.ndarray] | None,
    failures: Any,
) -> None:
    """After the answer is sent: the shadow alias's forecast on the same inputs, logged as
    shadow. Whatever goes wrong here is counted and logged, never seen by the caller."""
    from serving.prediction_log import new_id

    try:
        model = cache.by_alias(alias)
        if model.version == served:
            return  # the shadow alias is the version that answered: nothing to compare
        if inputs is not None and len(inputs[1]) != model.rows_needed:
            dates, values = inputs[0][-model.rows_needed :], inputs[1][-model.rows_needed :]
            if len(values) < model.rows_needed:
                raise ValueError(f"shadow v{model.version} needs {model.rows_needed} rows")
            inputs = (dates, values)
        out = (
            model.predict(None, None, horizon)
            if inputs is None
            else model.predict(inputs[0], inputs[1], horizon)
        )
        prediction_log.submit(
            log_record(model, out, prediction_id=new_id(), alias=alias, shadow=True, inputs=inputs)
        )
    except Exception as exc:
        failures.inc()
        log.warning("shadow forecast with @%s failed: %s", alias, exc)


def given_once(request: Request, *names: str) -> None:
    """422 when a selector is repeated (?version=1&version=2): FastAPI would take the last."""
    for name in names:
        count = len(request.query_params.getlist(name))
        if count > 1:
            raise BadInputError(f"?{name} is given {count} times: give it once")


def _one_selector(version: int | None, alias: str | None) -> None:
    if version is not None and alias is not None:
        raise BadInputError("give either ?version=N or ?alias=NAME, not both")


def resolve(
    cache: ModelCache, version: int | None, alias: str | None, default_alias: str
) -> LoadedModel:
    """The model a request names: ?version=N, ?alias=NAME, or the default alias."""
    _one_selector(version, alias)
    if version is not None:
        return cache.model(version)
    return cache.by_alias(alias or default_alias)


def in_memory(
    cache: ModelCache, version: int | None, alias: str | None, default_alias: str
) -> LoadedModel | None:
    """The model a request names when it is loaded already; None when finding it takes the
    registry (a download: never on the event loop)."""
    _one_selector(version, alias)
    if version is not None:
        return cache.cached(version)
    return cache.served_model(alias or default_alias)


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=problem_responses(404, 408, 413, 422, 429, 500, 503),
)
async def predict(
    http: Request,
    cache: Annotated[ModelCache, Depends(get_cache)],
    metrics: Annotated[Metrics, Depends(get_metrics)],
    settings: Annotated[ServingSettings, Depends(get_settings)],
    body: PredictRequest | None = None,
    version: Annotated[
        VersionQuery,
        Query(description="registry version number, in digits (e.g. 3)"),
    ] = None,
    alias: Annotated[
        str | None, Query(pattern=ALIAS_PATTERN, description="registry alias (default: champion)")
    ] = None,
    levels: Annotated[
        LevelsQuery,
        Query(
            json_schema_extra={"maxItems": MAX_LEVELS},
            description="interval levels to return, each in (0, 1): ?levels=0.8,0.95 or "
            "?levels=0.8&levels=0.95 (default: all the version has)",
        ),
    ] = None,
) -> Response:
    """Forecast BTC closes `horizon` days ahead with a registry version or alias: per day the
    median close and the bounds of each central interval (USD), calibrated by the version's
    adaptive calibration state (its lineage names which one)."""
    request = body or PredictRequest()
    given_once(http, "version", "alias")
    model = in_memory(cache, version, alias, settings.coinflow_default_alias)
    args = (http, cache, metrics, settings, request, version, alias, levels)
    if model is not None and model.answers_at_once(request.horizon, request.rows is not None):
        # Pure CPU and short (a cached answer, or one ~1 ms forecast step): answered here, on
        # the event loop. A threadpool hop would cost more than the work (two thread switches).
        return answer(*args, model)
    # A registry load or a multi-day forecast (tens to hundreds of ms): off the event loop.
    return await run_in_threadpool(answer, *args, model)


def answer(
    http: Request,
    cache: ModelCache,
    metrics: Metrics,
    settings: ServingSettings,
    request: PredictRequest,
    version: int | None,
    alias: str | None,
    levels: list[float] | None,
    model: LoadedModel | None,
) -> Response:
    """The /predict answer from `model` (None: resolved here, loading it if need be)."""
    if model is None:
        model = resolve(cache, version, alias, settings.coinflow_default_alias)
    shown = shown_levels(model, levels)
    days = settings.coinflow_history_days
    inputs = request.inputs()
    try:
        if inputs is None:
            out = model.predict(None, None, request.horizon)
            history = model.recent_history(days)
        else:
            out = model.predict(*inputs, request.horizon)
            history = points(inputs[0][-days:], inputs[1][-days:, CLOSE]) if days else []
    except InputRowsError as exc:
        raise BadInputError(str(exc)) from exc
    metrics.predictions.labels(str(model.version)).inc()
    prediction_log: PredictionLog | None = http.app.state.prediction_log
    prediction_id, background = None, None
    if prediction_log is not None:
        from serving.prediction_log import new_id

        prediction_id = new_id()
        # The alias asked for (the default one when neither ?version nor ?alias was given).
        asked = None if version is not None else alias or settings.coinflow_default_alias
        prediction_log.submit(
            log_record(
                model, out, prediction_id=prediction_id, alias=asked, shadow=False, inputs=inputs
            )
        )
        shadow = settings.coinflow_shadow_alias
        if shadow:
            background = BackgroundTask(
                shadow_forecast,
                cache,
                prediction_log,
                shadow,
                model.version,
                request.horizon,
                inputs,
                metrics.shadow_failures,
            )
    # Built here from checked numbers: FastAPI's response validation would re-check what
    # PredictResponse already describes (and, for a sync route, cost a second threadpool hop).
    # The parts that depend only on the version's state are encoded once (LoadedModel).
    text = model.answer_json(
        out,
        prediction_id=prediction_id,
        shown=shown,
        history=history,
        aliases=cache.aliases_of(model.version),
        history_days=days if inputs is None else None,
    )
    return Response(text, media_type="application/json", background=background)

"""POST /predict: forecasts from a registry version or alias, with lineage."""

from __future__ import annotations

import json
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Query, Response

from pipelines.features import CLOSE, INPUT_COLUMNS
from pipelines.forecast import InputRowsError
from serving.cache import ModelCache
from serving.deps import get_cache, get_metrics, get_settings
from serving.metrics import Metrics
from serving.predictor import LoadedModel, points
from serving.problems import BadInputError, problem_responses
from serving.schemas import ALIAS_PATTERN, PredictRequest, PredictResponse, Row
from serving.settings import ServingSettings

router = APIRouter(tags=["predict"])


def _arrays(rows: list[Row]) -> tuple[np.ndarray, np.ndarray]:
    dates = np.array([r.date for r in rows], dtype="datetime64[D]")
    values = np.array([[getattr(r, c) for c in INPUT_COLUMNS] for r in rows], dtype="float64")
    return dates, values


def resolve(
    cache: ModelCache, version: int | None, alias: str | None, default_alias: str
) -> LoadedModel:
    """The model a request names: ?version=N, ?alias=NAME, or the default alias."""
    if version is not None and alias is not None:
        raise BadInputError("give either ?version=N or ?alias=NAME, not both")
    if version is not None:
        return cache.model(version)
    return cache.by_alias(alias or default_alias)


@router.post(
    "/predict", response_model=PredictResponse, responses=problem_responses(404, 413, 422, 503)
)
def predict(
    cache: Annotated[ModelCache, Depends(get_cache)],
    metrics: Annotated[Metrics, Depends(get_metrics)],
    settings: Annotated[ServingSettings, Depends(get_settings)],
    body: PredictRequest | None = None,
    version: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="registry version number")
    ] = None,
    alias: Annotated[
        str | None, Query(pattern=ALIAS_PATTERN, description="registry alias (default: champion)")
    ] = None,
) -> Response:
    """Forecast BTC closes `horizon` days ahead with a registry version or alias."""
    request = body or PredictRequest()
    model = resolve(cache, version, alias, settings.coinflow_default_alias)
    days = settings.coinflow_history_days
    try:
        if request.rows is None:
            out = model.predict(None, None, request.horizon)
            history = model.recent_history(days)
        else:
            dates, values = _arrays(request.rows)
            out = model.predict(dates, values, request.horizon)
            history = points(dates[-days:], values[-days:, CLOSE]) if days else []
    except InputRowsError as exc:
        raise BadInputError(str(exc)) from exc
    metrics.predictions.labels(str(model.version)).inc()
    answer = {
        "forecasts": points(*out),
        "history": history,
        "lineage": {**model.lineage, "aliases": cache.aliases_of(model.version)},
    }
    # Built here, in the worker thread, from checked numbers: FastAPI's response validation
    # would cost a second threadpool hop and re-check what PredictResponse already describes.
    return Response(
        json.dumps(answer, allow_nan=False, separators=(",", ":")), media_type="application/json"
    )

"""GET /monitoring: the live scores `coinflow monitor score` wrote to the prediction log, and the
champion's moves from the registry's audit trail (so the UI can mark them on the scores)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from serving.deps import get_settings
from serving.monitoring.live_scores import SCORE_COLUMNS
from serving.problems import LogOffError, LogUnavailableError, problem_responses
from serving.schemas import MonitoringResponse
from serving.settings import ServingSettings

if TYPE_CHECKING:
    from serving.cache import ModelCache

router = APIRouter(tags=["monitoring"])
# the table's keys and scores, as live_scores writes them (its pinball column is not served)
FIELDS = ("version", "role", "window", "day", *(c for c in SCORE_COLUMNS if c != "pinball"))


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    import math

    return {
        k: (None if isinstance(row[k], float) and not math.isfinite(row[k]) else row[k])
        for k in FIELDS
    }


def read_moves(cache: ModelCache | None) -> tuple[list[dict[str, Any]], str | None]:
    """(moves, why they are missing): a slow or down registry never fails the scores."""
    from registry.errors import RegistryError

    if cache is None:
        return [], "the model API is starting: the registry has not been read yet"
    try:
        moves = cache.registry.alias_moves()  # the client's slots: a hung store holds no thread
    except RegistryError as exc:
        return [], str(exc)
    return moves, None


@router.get(
    "/monitoring", response_model=MonitoringResponse, responses=problem_responses(404, 422, 503)
)
def monitoring(
    request: Request,
    settings: Annotated[ServingSettings, Depends(get_settings)],
    window: Annotated[
        str, Query(pattern=r"^(7d|30d|90d|since-promotion)$", description="the series' window")
    ] = "30d",
) -> dict[str, Any]:
    """Live next-day MASE, coverage and CRPS per version and role (champion, shadow, ...), and
    every promotion or rollback of @champion."""
    import pandas as pd
    import sqlalchemy as sa

    from serving.log_database import short_error
    from serving.monitoring.monitor import read_scores

    prediction_log = request.app.state.prediction_log
    if prediction_log is None:
        raise LogOffError("set COINFLOW_PREDICTION_LOG_URL: forecasts are not being logged")
    name = settings.coinflow_model_name
    body: dict[str, Any] = {"model_name": name, "computed_at": None, "latest": [], "series": []}
    try:
        frame = read_scores(prediction_log.engine, name)
    except sa.exc.OperationalError as exc:
        if "no such table" not in str(exc):  # else nothing scored yet: the writer has not migrated
            raise LogUnavailableError(f"the prediction log database: {short_error(exc)}") from exc
        frame = pd.DataFrame()
    except sa.exc.SQLAlchemyError as exc:
        raise LogUnavailableError(f"the prediction log database: {short_error(exc)}") from exc
    if not frame.empty:
        newest = frame.sort_values("day").groupby(["version", "role", "window"]).tail(1)
        series = frame[frame["window"] == window].sort_values(["version", "role", "day"])
        computed = pd.Timestamp(frame["computed_at"].max())
        if computed.tzinfo is None:  # SQLite keeps no offset: the writer stored UTC
            computed = computed.tz_localize("UTC")
        body |= {
            "computed_at": computed.to_pydatetime(),
            "latest": [_clean(r) for r in newest.to_dict("records")],
            "series": [_clean(r) for r in series.to_dict("records")],
        }
    body["alias_moves"], body["alias_moves_error"] = read_moves(request.app.state.cache)
    return body

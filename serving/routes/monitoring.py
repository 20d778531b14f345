"""GET /monitoring: the live scores `coinflow monitor score` wrote to the prediction log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from serving.deps import get_settings
from serving.problems import LogOffError, LogUnavailableError, problem_responses
from serving.schemas import MonitoringResponse
from serving.settings import ServingSettings

router = APIRouter(tags=["monitoring"])
FIELDS = ("version", "role", "window", "day", "n", "mae", "persistence_mae", "mase",
          "coverage_80", "coverage_95", "crps")  # fmt: skip


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    import math

    return {k: (None if isinstance(row[k], float) and not math.isfinite(row[k]) else row[k])
            for k in FIELDS}  # fmt: skip


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
    """Live next-day MASE, coverage and CRPS per version and role (champion, shadow, ...)."""
    import pandas as pd
    import sqlalchemy as sa

    from serving.monitor import read_scores
    from serving.prediction_log import short_error

    plog = request.app.state.prediction_log
    if plog is None:
        raise LogOffError("set COINFLOW_PREDICTION_LOG_URL: forecasts are not being logged")
    name = settings.coinflow_model_name
    try:
        frame = read_scores(plog.engine, name)
    except sa.exc.OperationalError as exc:
        if "no such table" in str(exc):  # nothing scored yet: the writer has not migrated
            return {"model_name": name, "computed_at": None, "latest": [], "series": []}
        raise LogUnavailableError(f"the prediction log database: {short_error(exc)}") from exc
    except sa.exc.SQLAlchemyError as exc:
        raise LogUnavailableError(f"the prediction log database: {short_error(exc)}") from exc
    if frame.empty:
        return {"model_name": name, "computed_at": None, "latest": [], "series": []}
    newest = frame.sort_values("day").groupby(["version", "role", "window"]).tail(1)
    series = frame[frame["window"] == window].sort_values(["version", "role", "day"])
    computed = pd.Timestamp(frame["computed_at"].max())
    if computed.tzinfo is None:  # SQLite keeps no offset: the writer stored UTC
        computed = computed.tz_localize("UTC")
    return {
        "model_name": name,
        "computed_at": computed.to_pydatetime(),
        "latest": [_clean(r) for r in newest.to_dict("records")],
        "series": [_clean(r) for r in series.to_dict("records")],
    }

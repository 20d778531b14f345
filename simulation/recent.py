"""`coinflow simulate --recent N`: the newest dataset version's last N days served again by this
project's champion, through the real API into this project's prediction log, so the Live tab,
`coinflow monitor score` and GET /monitoring have real scores to show (`make demo` ends with it).

Each day d of the window, oldest first, as the platform would have lived it: d's close arrives
(every served version's calibration state is advanced through d, as `coinflow monitor score`
does), the API reloads (aliases and states) and answers POST /predict?alias=replay with the
platform's rows <= d, `horizon` days ahead; the prediction log records every answer. Nothing is
retrained and no alias moves.

The answers are labelled: `replay` is an alias set on the champion for the replay's length and
removed after it, so every forecast is logged, scored and shown under the role `replay`, never
as the champion's live record. The monitor rule judges the `champion` role only, so a replay
never raises an alert or rolls back: these are days the champion's promotion re-score already
saw (the version's test window), not live evidence.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from core.paths import Project
from simulation.workspace import SimulationError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from core.params import Params

REPLAY = "replay"  # the alias the replay asks for: the role its forecasts are logged under
MAX_DAYS = 366


@dataclass(frozen=True)
class RecentReplay:
    """What `coinflow simulate --recent` served."""

    model_name: str
    version: int  # the champion that answered
    data_version: str  # the newest dataset version, whose last days were replayed
    first: dt.date
    last: dt.date
    forecasts: int
    horizon: int
    wall_s: float


def recent_days(
    params: Params, assets: dict[str, pd.DataFrame], days: int
) -> tuple[str, list[dt.date]]:
    """(the newest dataset version, its last `days` days); refused, naming why, when the raw
    exports do not reach its cut-off or it holds too few days."""
    from pipelines.data.cut import last_common_day

    if not 1 <= days <= MAX_DAYS:
        raise SimulationError(f"--recent must be 1 .. {MAX_DAYS} days, got {days}")
    newest = max(params.data.versions, key=lambda v: params.data.versions[v])
    cutoff, have = params.data.versions[newest], last_common_day(assets)
    if cutoff > have:
        raise SimulationError(
            f"{newest}'s cut-off {cutoff} is past data/raw's last complete day {have}: "
            "`dvc pull data.dvc` first"
        )
    first = cutoff - dt.timedelta(days=days - 1)
    if first <= params.data.start:
        raise SimulationError(f"{newest} holds fewer than {days} days after data.start")
    return newest, [first + dt.timedelta(days=i) for i in range(days)]


def days_to_replay(
    engine: sa.Engine, model_name: str, version: int, window: list[dt.date]
) -> list[dt.date]:
    """The window's days `version` has not answered under `replay` yet (a second `make demo`
    logs nothing twice); refused when its calibration state is already past the first of them
    (those days would be calibrated with later closes)."""
    from serving.calibration_states import newest
    from serving.monitoring.monitor import logged_days

    logged = logged_days(engine, model_name)
    done = set()
    if not logged.empty:
        mine = logged[(logged["alias"] == REPLAY) & (logged["version"] == version)]
        done = set(mine["origin"])
    todo = [day for day in window if day not in done]
    stored = newest(engine, model_name, [version]).get(version)
    as_of = (stored.state.get("as_of") if stored else None) or None
    if todo and as_of is not None and dt.date.fromisoformat(str(as_of)) >= todo[0]:
        raise SimulationError(
            f"v{version}'s calibration state is already as of {as_of}, not before the replay's "
            f"first day {todo[0]}: its forecasts would be calibrated with later closes"
        )
    return todo


def replay_recent(proj: Project, days: int, horizon: int = 7) -> RecentReplay:
    """Serve the newest version's last `days` days again with the champion (role `replay`),
    into the project's own prediction log and calibration states; days already replayed by
    this champion are not served again."""
    from core.params import load_params
    from forecasting.forecast import MAX_HORIZON
    from pipelines.data.ingest import load_assets
    from registry.store import CHAMPION, aliases, open_registry
    from serving.log_database import engine_for, migrate
    from serving.monitoring.states import advance_states
    from serving.monitoring.trusted import PlatformRows
    from serving.settings import ServingSettings
    from simulation.api import api_on
    from simulation.replay import cut_at, quiet_libraries

    began = time.monotonic()
    if not 1 <= horizon <= MAX_HORIZON:
        raise SimulationError(f"--horizon must be 1 .. {MAX_HORIZON} days, got {horizon}")
    params = load_params(proj.params_file)
    assets = load_assets(proj.raw)
    data_version, window = recent_days(params, assets, days)
    settings = ServingSettings()
    if not settings.coinflow_prediction_log_url:
        raise SimulationError(
            "COINFLOW_PREDICTION_LOG_URL is empty: the prediction log is off, so nothing to replay"
        )
    registry = open_registry(settings.coinflow_model_name)
    champion = aliases(registry).get(CHAMPION)
    if champion is None:
        raise SimulationError(
            f"{registry.name} has no champion yet: run `dvc repro` (or `make demo`) first"
        )
    engine = engine_for(settings.coinflow_prediction_log_url)
    migrate(engine)
    todo = days_to_replay(engine, registry.name, champion, window)
    done = RecentReplay(registry.name, champion, data_version, window[0], window[-1], 0, horizon, 0)
    if not todo:
        return done
    urls = (settings.mlflow_tracking_uri, settings.registry_uri)
    # The platform's rows as they stood at each day's close: the cut at the last day, sliced
    # (cut_at(d) equals cut_at(last).loc[:d]: a cut never reads a later row).
    rows = cut_at(assets, params.data.start, window[-1])
    registry.client.set_registered_model_alias(registry.name, REPLAY, str(champion))
    try:
        with (
            quiet_libraries(),
            api_on(registry, *urls, settings.coinflow_prediction_log_url) as api,
        ):
            for day in todo:
                frame = rows.loc[: pd.Timestamp(day)]
                advance_states(engine, registry, PlatformRows(frame), api.packaged)
                api.reload()  # the state through d's close, as the API's refresh would
                api.forecast(REPLAY, champion, frame, horizon)
            api.wait_logged()
    finally:
        registry.client.delete_registered_model_alias(registry.name, REPLAY)
    return dataclasses.replace(done, forecasts=len(todo), wall_s=round(time.monotonic() - began, 1))

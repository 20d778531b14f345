"""Advancing the calibration state of every served version from the platform's rows.

After `coinflow monitor score` has scored the day, each version an alias points at (the
champion, previous-champion, a challenger, ...) gets its newest state (stored, else the one it
shipped) advanced by every realised close the platform holds after the state's day, through
its kernel's own `PackagedModel.advance` (the same calibrator its backtest, its promotion
re-score, the API and the replay use). A state that moved is written to the state store
(serving.calibration_states) with the md5 of the rows it learned from; the API swaps it in on
its next refresh. Versions with fixed offsets (packaged before adaptive calibration) never move.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from registry.errors import RegistryError
from serving import calibration_states
from serving.predictor import adaptive_state

if TYPE_CHECKING:
    import sqlalchemy as sa

    from forecasting.packaged import PackagedModel
    from registry.store import Registry
    from serving.monitoring.trusted import PlatformRows

log = logging.getLogger(__name__)
Loader = Callable[[int], "PackagedModel"]


def served_versions(registry: Registry) -> list[int]:
    """Every version an alias points at."""
    from registry.store import aliases

    return sorted(set(aliases(registry).values()))


def advance_states(
    engine: sa.Engine, registry: Registry, rows: PlatformRows, load: Loader
) -> dict[int, str | None]:
    """Each served version's state advanced through the platform's last day and stored when it
    moved; version → the day its state is now as of (fixed calibrations are left out)."""
    versions = served_versions(registry)
    stored = calibration_states.newest(engine, registry.name, versions)
    dates, values = rows.arrays()
    through = rows.last_day.isoformat()
    out: dict[int, str | None] = {}
    for version in versions:
        try:
            py = load(version)
        except RegistryError as exc:  # the others still advance; this one is retried next time
            log.warning("%s v%d: calibration state not advanced: %s", registry.name, version, exc)
            continue
        if adaptive_state(py) is None:
            continue
        found = stored.get(version)
        before = py.state if found is None else calibration_states.read_state(py, found)
        state = py.advance(dates, values, through, before)
        if state.as_of is not None and state.digest() != before.digest():
            md5 = rows.md5(dt.date.fromisoformat(state.as_of))
            calibration_states.store(
                engine, registry.name, version, state.to_dict(), state.digest(), md5
            )
        out[version] = state.as_of
    return out

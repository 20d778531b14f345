"""The two baselines over a replay's days, as the platform would have served them.

The replay's first release registers the persistence-empirical and EWMA baselines on the data
before its first day. Each is run over the replayed days through its own kernel's calibrated
path (PackagedModel.advance, then calibrated_run: the calibrator the API, the monitor and the
promotion re-score use): its shipped state advanced through the first day's close, then every
day's forecast calibrated with the state of that moment and its close folded in, as the monitor
advances a served version's state before the API forecasts from the day. The report draws the
champion's CRPS against theirs.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from forecasting.features import CLOSE
from forecasting.forecast import rows_to_arrays

if TYPE_CHECKING:
    from registry.store import Registry

KINDS = ("persistence", "ewma")


def first_versions(registry: Registry) -> dict[str, int]:
    """The first registered version of each baseline kind (the replay's first release's)."""
    from core import tags
    from registry.store import versions

    out: dict[str, int] = {}
    for model_version in reversed(versions(registry)):  # oldest first
        kind = (model_version.tags or {}).get(tags.KIND)
        if kind in KINDS and kind not in out:
            out[kind] = int(model_version.version)
    return out


def baseline_crps(
    registry: Registry, frame: pd.DataFrame, days: list[dt.date]
) -> dict[str, pd.Series]:
    """kind → daily next-day CRPS (USD) of each baseline, indexed by forecast (origin) day, on
    those of `days` whose next close is in `frame` (the platform's rows)."""
    from forecasting.scores import daily_crps
    from registry.store import load_packaged

    dates, values = rows_to_arrays(frame)
    position = {d: i for i, d in enumerate(pd.DatetimeIndex(frame.index).date)}
    origins = [d for d in days if d in position and position[d] + 1 < len(values)]
    ends = np.array([position[d] for d in origins], dtype="int64")
    first = days[0].isoformat()  # the first forecast is made once that day's close is known
    out = {}
    for kind, version in first_versions(registry).items():
        py = load_packaged(registry, version)
        state = py.advance(dates, values, first)
        quantiles, _ = py.calibrated_run(dates, values, ends, state)
        crps = daily_crps(quantiles, values[ends, CLOSE], values[ends + 1, CLOSE], py.levels)
        out[kind] = pd.Series(crps, index=origins)
    return out

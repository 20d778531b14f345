"""How a version's intervals hold up over several days, as served: each origin's multi-day
forecast calibrated with the state its closes so far give, against the closes that followed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from forecasting.features import CLOSE
from forecasting.scores import coverage_by_horizon

if TYPE_CHECKING:
    from forecasting.calibration import CalibrationState
    from forecasting.packaged import PackagedModel

HORIZON = 7  # days ahead of each origin
STRIDE = 5  # an origin every 5th forecast day (a path forecast is 500 sampled paths)


def horizon_coverage(
    py: PackagedModel,
    dates: np.ndarray,
    values: np.ndarray,
    ends: np.ndarray,
    state: CalibrationState | None = None,
    horizon: int = HORIZON,
    stride: int = STRIDE,
) -> dict[str, float]:
    """Coverage per level and horizon day (`coverage_80_d1`, ...) of the `horizon`-day forecasts
    issued at every `stride`-th row index of `ends` (ascending) of raw rows on consecutive days,
    each calibrated with `state` (default: the shipped one) advanced through its origin's close
    from these rows; origins whose horizon runs past the rows are left out."""
    state = py.state if state is None else state
    forecasts, actual = [], []
    for end in np.asarray(ends)[::stride]:
        if end + horizon >= len(values):
            break
        state = py.advance(dates, values, str(dates[end]), state)
        _, closes = py.forecast(dates[: end + 1], values[: end + 1], horizon, state)
        forecasts.append(closes)
        actual.append(values[end + 1 : end + 1 + horizon, CLOSE])
    if not forecasts:
        raise ValueError(f"no forecast day leaves {horizon} days of closes after it")
    return coverage_by_horizon(np.asarray(forecasts), np.asarray(actual), py.levels)

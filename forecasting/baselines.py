"""The honest probabilistic baselines every learned model is judged against.

- EmpiricalQuantiles: persistence with the empirical spread of the trailing `window` daily log
  returns — the naive probabilistic forecast. The quantiles are centred on the trailing median
  so that the median is exactly 0 (the persistence point forecast: MASE 1, the anchor).
- EwmaQuantiles: RiskMetrics-style volatility (σ²_t = λ σ²_t-1 + (1 - λ) r²_t over the trailing
  window) with normal quantiles around persistence (median exactly 0: MASE 1).

Both read raw daily rows like any model and return RAW quantiles, so the same scoring, path
sampling and calibration (forecasting.calibration, owned by forecasting.packaged) apply to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features import CLOSE
from .quantiles import median_index


def trailing_returns(windows: np.ndarray) -> np.ndarray:
    """Daily log returns of each window's closes: (n, rows) → (n, rows - 1)."""
    close = windows[..., CLOSE]
    with np.errstate(invalid="ignore", divide="ignore"):
        returns: np.ndarray = np.log(close[:, 1:] / close[:, :-1])
    return returns


@dataclass(frozen=True)
class EmpiricalQuantiles:
    """Tomorrow's return spread as the last `window` days' returns, centred on persistence."""

    levels: tuple[float, ...]
    window: int

    @property
    def rows_needed(self) -> int:
        return self.window + 1

    def return_quantiles(self, windows: np.ndarray) -> np.ndarray:
        quant = np.quantile(
            trailing_returns(windows[:, -self.rows_needed :]), self.levels, axis=1
        ).T
        centred: np.ndarray = quant - quant[:, [median_index(self.levels)]]
        return centred


@dataclass(frozen=True)
class EwmaQuantiles:
    """RiskMetrics volatility over the last `window` days, normal quantiles around zero."""

    levels: tuple[float, ...]
    window: int
    decay: float = 0.94

    @property
    def rows_needed(self) -> int:
        return self.window + 1

    def volatility(self, windows: np.ndarray) -> np.ndarray:
        """σ of tomorrow's return per window: exponentially weighted mean of squared returns."""
        returns = trailing_returns(windows[:, -self.rows_needed :])
        weights = (1 - self.decay) * self.decay ** np.arange(returns.shape[1] - 1, -1, -1)
        variance = (returns**2) @ (weights / weights.sum())
        sigma: np.ndarray = np.sqrt(variance)
        return sigma

    def return_quantiles(self, windows: np.ndarray) -> np.ndarray:
        from scipy import stats

        z = stats.norm.ppf(self.levels)
        quant: np.ndarray = self.volatility(windows)[:, None] * z[None, :]
        return quant

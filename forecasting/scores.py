"""Forecast scores in USD against the persistence baseline (point and probabilistic)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def score_forecast(
    pred_return: np.ndarray, close: np.ndarray, next_close: np.ndarray
) -> dict[str, float]:
    """MAE, RMSE, MAPE, MASE (vs persistence on the same rows) and directional accuracy."""
    pred = close * np.exp(pred_return)
    err = pred - next_close
    naive_mae = float(np.mean(np.abs(next_close - close)))
    mae = float(np.mean(np.abs(err)))
    actual_move = np.sign(next_close - close)
    return {
        "mae": mae,
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mape": float(np.mean(np.abs(err) / next_close) * 100),
        "mase": mae / naive_mae if naive_mae > 0 else float("nan"),
        "dir_acc": float(np.mean(np.sign(pred_return) == actual_move)),
        "persistence_mae": naive_mae,
    }


def score_quantiles(
    quantiles: np.ndarray, close: np.ndarray, next_close: np.ndarray, levels: Sequence[float]
) -> dict[str, float]:
    """Every score of a quantile forecast of next-day log returns, in USD: the median's point
    scores (score_forecast) plus pinball, CRPS, coverage and width of each central interval."""
    from .quantiles import forecast_scores, median_index

    usd = close[:, None] * np.exp(quantiles)
    point = score_forecast(quantiles[:, median_index(levels)], close, next_close)
    probabilistic = forecast_scores(usd, next_close, np.abs(next_close - close), levels)
    probabilistic.pop("median_mae")
    return point | probabilistic


def calibration_scores(metrics: dict[str, float]) -> dict[str, float]:
    """The figures a served model reports about its intervals: coverage (also per volatility
    tercile and horizon day), width and CRPS on the validation and test days (and the raw
    network's validation coverage)."""
    keep = ("coverage_", "width_", "crps")
    return {
        k: v
        for k, v in metrics.items()
        if k.startswith(("val_", "test_"))
        and k.split("_", 1)[1].startswith(keep)
        or k.startswith("val_raw_")
    }


def daily_crps(
    quantiles: np.ndarray, close: np.ndarray, next_close: np.ndarray, levels: Sequence[float]
) -> np.ndarray:
    """CRPS (USD) of each day's forecast: the loss the Diebold–Mariano test compares."""
    from .quantiles import crps

    return crps(close[:, None] * np.exp(quantiles), next_close, levels)


VOLATILITY_DAYS = 30  # a month of daily returns: the trailing volatility coverage is grouped by
TERCILES = ("calm", "normal", "turbulent")


def trailing_volatility(close: np.ndarray, days: int = VOLATILITY_DAYS) -> np.ndarray:
    """Realised volatility known at each day's close: the standard deviation of the last `days`
    daily log returns up to that day (NaN until `days` returns exist). Consecutive closes."""
    from numpy.lib.stride_tricks import sliding_window_view

    returns = np.diff(np.log(np.asarray(close, dtype="float64")))
    out = np.full(len(returns) + 1, np.nan)
    if len(returns) >= days:
        out[days:] = sliding_window_view(returns, days).std(axis=1, ddof=1)
    return out


def coverage_by_volatility(
    quantiles: np.ndarray, target: np.ndarray, volatility: np.ndarray, levels: Sequence[float]
) -> dict[str, float]:
    """Coverage of each central interval on the calm / normal / turbulent third of the days, by
    the trailing volatility known on each forecast day (`coverage_80_calm`, ...)."""
    from .quantiles import coverage, interval_pairs

    vol = np.asarray(volatility, dtype="float64")
    if not np.isfinite(vol).all():
        raise ValueError("every forecast day needs its trailing volatility")
    groups = np.array_split(np.argsort(vol, kind="stable"), len(TERCILES))
    return {
        f"coverage_{round(nominal * 100):d}_{name}": coverage(quantiles[idx], target[idx], lo, hi)
        for name, idx in zip(TERCILES, groups, strict=True)
        for nominal, (lo, hi) in interval_pairs(levels).items()
    }


def coverage_by_horizon(
    quantiles: np.ndarray, target: np.ndarray, levels: Sequence[float]
) -> dict[str, float]:
    """Coverage of each central interval per horizon day, from (origins, horizon, levels)
    forecasts of (origins, horizon) outcomes (`coverage_80_d1`, ...)."""
    from .quantiles import coverage, interval_pairs

    return {
        f"coverage_{round(nominal * 100):d}_d{h + 1}": coverage(
            quantiles[:, h], target[:, h], lo, hi
        )
        for h in range(quantiles.shape[1])
        for nominal, (lo, hi) in interval_pairs(levels).items()
    }

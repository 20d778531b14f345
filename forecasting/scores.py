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
    """The figures a served model reports about its intervals: coverage, width and CRPS on the
    validation and test days (and the raw network's validation coverage)."""
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

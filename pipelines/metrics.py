"""Forecast scores in USD against the persistence baseline, and the forecast-vs-actual plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


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


def plot_forecast(
    dates: pd.DatetimeIndex,
    close: np.ndarray,
    next_close: np.ndarray,
    pred_return: np.ndarray,
    title: str,
    path: Path,
) -> Path:
    """PNG of actual next-day closes, the model's forecast and persistence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target_dates = dates + pd.Timedelta(days=1)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.plot(target_dates, next_close, label="actual close", color="black", linewidth=1.2)
    ax.plot(target_dates, close * np.exp(pred_return), label="model forecast", linewidth=1)
    ax.plot(
        target_dates,
        close,
        label="persistence (tomorrow = today)",
        linewidth=0.8,
        linestyle="--",
        alpha=0.7,
    )
    ax.set_title(title)
    ax.set_ylabel("BTC close (USD)")
    ax.legend(loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

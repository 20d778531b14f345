"""The forecast-vs-actual PNG of a training run, and how every coinflow figure is saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def plot_forecast(
    dates: pd.DatetimeIndex,
    close: np.ndarray,
    next_close: np.ndarray,
    pred_return: np.ndarray,
    title: str,
    path: Path,
    band: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """PNG of actual next-day closes, the model's forecast (and a band of return quantiles)
    and persistence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target_dates = dates + pd.Timedelta(days=1)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.plot(target_dates, next_close, label="actual close", color="black", linewidth=1.2)
    if band is not None:
        ax.fill_between(
            target_dates,
            close * np.exp(band[0]),
            close * np.exp(band[1]),
            alpha=0.25,
            linewidth=0,
            label="80% interval",
        )
    ax.plot(target_dates, close * np.exp(pred_return), label="model median", linewidth=1)
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
    return save_figure(fig, path, dpi=110)


def save_figure(fig: Any, path: Path, dpi: int) -> Path:
    """Date axis tidied, laid out, written as PNG at `path` (folders made), figure closed."""
    import matplotlib.pyplot as plt

    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path

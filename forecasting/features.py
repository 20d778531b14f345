"""Leakage-safe features, the chronological split, the train-only scaler and windows.

Row t holds only what is known at the close of day t; its target is the log return from
day t's close to day t+1's close. The persistence forecast (tomorrow = today) is a zero
log return, so models and the baseline are scored on the same rows in USD.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

# Raw columns a forecast needs, per day (the serving API's row schema).
INPUT_COLUMNS = [
    "btc_open",
    "btc_high",
    "btc_low",
    "btc_close",
    "btc_volume",
    "eth_close",
    "gold_close",
    "gold_filled",
]
# Positions of INPUT_COLUMNS in a raw-row array (the serving hot path works on arrays).
OPEN, HIGH, LOW, CLOSE, VOLUME, ETH, GOLD, GOLD_FILLED = range(len(INPUT_COLUMNS))
FEATURE_COLUMNS = [
    "btc_ret",
    "btc_high_rel",
    "btc_low_rel",
    "btc_open_rel",
    "btc_vol_chg",
    "eth_ret",
    "gold_ret",
    "gold_filled",
]


@dataclass(frozen=True)
class Scaler:
    """Standardisation statistics fitted on training rows only."""

    mean: list[float]
    std: list[float]
    target_mean: float
    target_std: float

    def transform(self, x: np.ndarray) -> np.ndarray:
        scaled: np.ndarray = (x - np.asarray(self.mean)) / np.asarray(self.std)
        return scaled

    def target_to_scaled(self, y: np.ndarray) -> np.ndarray:
        return (y - self.target_mean) / self.target_std

    def target_from_scaled(self, z: np.ndarray) -> np.ndarray:
        return z * self.target_std + self.target_mean

    def for_median(self, median: str) -> Scaler:
        """The scaler of a model whose median is `median` (learned | persistence): a persistence
        median is a zero log return, so its target is scaled but not centred (0 stays 0)."""
        return replace(self, target_mean=0.0) if median == "persistence" else self


@dataclass(frozen=True)
class Split:
    """Row ranges (end-exclusive) of the chronological split, over rows that have a target."""

    n_train: int
    n_val: int
    n_test: int

    @property
    def val_start(self) -> int:
        return self.n_train

    @property
    def test_start(self) -> int:
        return self.n_train + self.n_val


def features_from(values: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """FEATURE_COLUMNS of each day (rows of INPUT_COLUMNS on the last axis) given the day before
    it (`prev`); works on one window (days, columns) or a batch (windows, days, columns)."""
    close = values[..., CLOSE]
    with np.errstate(invalid="ignore", divide="ignore"):  # missing inputs (NaN) give NaN
        return np.stack(
            [
                np.log(close / prev[..., CLOSE]),
                np.log(values[..., HIGH] / close),
                np.log(values[..., LOW] / close),
                np.log(values[..., OPEN] / close),
                np.log1p(values[..., VOLUME]) - np.log1p(prev[..., VOLUME]),
                np.log(values[..., ETH] / prev[..., ETH]),
                np.log(values[..., GOLD] / prev[..., GOLD]),
                values[..., GOLD_FILLED],
            ],
            axis=-1,
        )


def features_array(values: np.ndarray) -> np.ndarray:
    """Features of every day after the first (which only feeds the first day's returns)."""
    return features_from(values[..., 1:, :], values[..., :-1, :])


def compute_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-day features from days t and t-1 only; NaN where an input is missing."""
    missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise KeyError(f"input rows lack columns: {missing}")
    values = frame[INPUT_COLUMNS].to_numpy(dtype="float64")
    prev = np.vstack([np.full((1, len(INPUT_COLUMNS)), np.nan), values])[:-1]
    return pd.DataFrame(features_from(values, prev), index=frame.index, columns=FEATURE_COLUMNS)


def build_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Features plus close, next close and target; rows from the first day all inputs exist."""
    table = compute_features(frame)
    table["close"] = frame["btc_close"]
    table["next_close"] = frame["btc_close"].shift(-1)
    table["target"] = np.log(table["next_close"] / table["close"])
    usable = table[FEATURE_COLUMNS].notna().all(axis=1)
    first = usable.idxmax() if usable.any() else None
    if first is None:
        raise ValueError("no day has every input feature")
    table = table.loc[first:]
    if table[FEATURE_COLUMNS].isna().any().any():
        bad = table[table[FEATURE_COLUMNS].isna().any(axis=1)].index[:3]
        raise ValueError(f"missing inputs inside the series on {list(bad.date)}")
    return table.iloc[:-1]  # the last day has no next-day target


def split_chronologically(n_rows: int, train_frac: float, val_frac: float) -> Split:
    """First train_frac of rows train, next val_frac validate, the rest test (never shuffled)."""
    n_train = int(n_rows * train_frac)
    n_val = int(n_rows * val_frac)
    if min(n_train, n_val, n_rows - n_train - n_val) < 1:
        raise ValueError(f"{n_rows} rows are too few for a train/validation/test split")
    return Split(n_train, n_val, n_rows - n_train - n_val)


def fit_scaler(table: pd.DataFrame, split: Split) -> Scaler:
    """Mean/std of features and target over training rows only."""
    train = table.iloc[: split.n_train]
    std = train[FEATURE_COLUMNS].std(ddof=0).replace(0.0, 1.0)
    return Scaler(
        mean=train[FEATURE_COLUMNS].mean().tolist(),
        std=std.tolist(),
        target_mean=float(train["target"].mean()),
        target_std=float(train["target"].std(ddof=0)) or 1.0,
    )


def make_windows(x: np.ndarray, lookback: int, end_rows: np.ndarray) -> np.ndarray:
    """Windows x[i-lookback+1 : i+1] for each i in end_rows, shape (n, lookback, features)."""
    if lookback < 1 or lookback > len(x):
        raise ValueError(f"lookback {lookback} must be between 1 and {len(x)} rows")
    if len(end_rows) and end_rows.min() < lookback - 1:
        raise ValueError(f"window ending at row {end_rows.min()} needs {lookback} rows of history")
    views = sliding_window_view(x, lookback, axis=0)  # (n - lookback + 1, features, lookback)
    return np.ascontiguousarray(views[end_rows - lookback + 1].transpose(0, 2, 1))


def persistence_errors(table: pd.DataFrame) -> dict[str, Any]:
    """MAE and RMSE in USD of the forecast 'tomorrow's close = today's close'."""
    err = (table["next_close"] - table["close"]).to_numpy()
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "rows": len(err),
    }


def baseline_report(table: pd.DataFrame, split: Split) -> dict[str, dict[str, Any]]:
    """Persistence figures on the validation and test rows, with their date ranges."""
    parts = {
        "val": table.iloc[split.val_start : split.test_start],
        "test": table.iloc[split.test_start :],
    }
    return {
        name: {
            **persistence_errors(part),
            "first": str(part.index[0].date()),
            "last_target": str((part.index[-1] + pd.Timedelta(days=1)).date()),
        }
        for name, part in parts.items()
    }

"""From raw daily rows to next-day (or k-day, recursive) USD forecasts, shared by every model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from pipelines.features import (
    CLOSE,
    GOLD_FILLED,
    HIGH,
    INPUT_COLUMNS,
    LOW,
    OPEN,
    Scaler,
    features_array,
)

# Maps a scaled window batch (n, lookback, features) to scaled next-day log returns (n,).
ReturnModel = Callable[[np.ndarray], np.ndarray]


PRICES = [INPUT_COLUMNS.index(c) for c in INPUT_COLUMNS if c not in ("btc_volume", "gold_filled")]


class InputRowsError(ValueError):
    """Rows handed to a model cannot make a forecast; the message says which rule broke."""


def input_frame(records: list[dict[str, object]] | pd.DataFrame) -> pd.DataFrame:
    """Rows in the pyfunc's input schema: ISO date strings, float prices, integer gold flag."""
    frame = pd.DataFrame(records)
    missing = [c for c in ["date", *INPUT_COLUMNS] if c not in frame.columns]
    if missing:
        raise InputRowsError(f"rows lack columns {missing}")
    frame = frame[["date", *INPUT_COLUMNS]].copy()
    frame["date"] = pd.to_datetime(frame["date"]).dt.strftime("%Y-%m-%d")
    floats = [c for c in INPUT_COLUMNS if c != "gold_filled"]
    frame[floats] = frame[floats].astype("float64")
    frame["gold_filled"] = frame["gold_filled"].astype("int64")
    return frame.reset_index(drop=True)


def rows_to_arrays(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Rows in the input schema → (dates as datetime64[D], values (n, INPUT_COLUMNS) float64)."""
    missing = [c for c in INPUT_COLUMNS if c not in rows.columns]
    if missing:
        raise InputRowsError(f"rows lack columns {missing}")
    dates = pd.to_datetime(rows["date"] if "date" in rows.columns else rows.index)
    return (
        np.asarray(dates.values, dtype="datetime64[D]"),
        rows[INPUT_COLUMNS].to_numpy(dtype="float64"),
    )


def check_rows(rows: pd.DataFrame, needed: int) -> pd.DataFrame:
    """The latest `needed` rows, checked by check_arrays, as a date-indexed frame."""
    dates, values = check_arrays(*rows_to_arrays(rows), needed)
    return pd.DataFrame(
        values,
        columns=INPUT_COLUMNS,
        index=pd.DatetimeIndex(dates.astype("datetime64[ns]"), name="date"),
    )


def forecast_closes(
    model: ReturnModel, scaler: Scaler, lookback: int, rows: pd.DataFrame, horizon: int = 1
) -> pd.DataFrame:
    """Forecast `horizon` next-day closes (USD) recursively from the latest rows."""
    dates, closes = forecast_arrays(model, scaler, lookback, *rows_to_arrays(rows), horizon)
    return pd.DataFrame({"date": pd.to_datetime(dates.astype("datetime64[ns]")), "close": closes})


def check_arrays(
    dates: np.ndarray, values: np.ndarray, needed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The latest `needed` rows, consecutive, finite and positive (dates datetime64[D])."""
    if values.ndim != 2 or values.shape[1] != len(INPUT_COLUMNS) or len(dates) != len(values):
        raise InputRowsError(f"rows must have {len(INPUT_COLUMNS)} columns {INPUT_COLUMNS}")
    if len(values) < needed:
        raise InputRowsError(f"need at least {needed} consecutive daily rows, got {len(values)}")
    dates, values = dates[-needed:], values[-needed:]
    if (np.diff(dates).astype("timedelta64[D]").astype(int) != 1).any():
        raise InputRowsError("rows must be on consecutive calendar days, oldest first")
    if not np.isfinite(values).all():
        raise InputRowsError("rows hold missing or non-finite values")
    if (values[:, PRICES] <= 0).any():
        raise InputRowsError("prices must be positive")
    return dates, values


def forecast_arrays(
    model: ReturnModel,
    scaler: Scaler,
    lookback: int,
    dates: np.ndarray,
    values: np.ndarray,
    horizon: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Recursive forecasts: (forecast dates datetime64[D], closes USD float64).

    Each step appends a synthetic next day: flat OHLC at the forecast, the rest carried, gold
    flagged as filled at weekends.
    """
    if not 1 <= horizon <= 30:
        raise InputRowsError(f"horizon must be between 1 and 30, got {horizon}")
    dates, values = check_arrays(dates, values, lookback + 1)
    window = np.empty((lookback + 1 + horizon, values.shape[1]), dtype="float64")
    window[: lookback + 1] = values
    last_date = dates[-1]
    out_dates = last_date + np.arange(1, horizon + 1).astype("timedelta64[D]")
    closes = np.empty(horizon, dtype="float64")
    for step in range(horizon):
        rows = window[step : step + lookback + 1]
        feats = features_array(rows)
        scaled = scaler.transform(feats).astype("float32")[None, :, :]
        log_return = float(scaler.target_from_scaled(model(scaled))[0])
        close = float(rows[-1, CLOSE] * np.exp(log_return))
        nxt = window[step + lookback + 1]
        nxt[:] = rows[-1]
        nxt[[OPEN, HIGH, LOW, CLOSE]] = close
        weekday = (int(out_dates[step].astype("int64")) + 3) % 7  # 1970-01-01 was a Thursday
        nxt[GOLD_FILLED] = float(weekday >= 5)
        closes[step] = close
    return out_dates, closes

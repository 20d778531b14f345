"""From raw daily rows to next-day (or k-day, recursive) USD forecasts, shared by every model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from pipelines.features import INPUT_COLUMNS, Scaler, compute_features

# Maps a scaled window batch (n, lookback, features) to scaled next-day log returns (n,).
ReturnModel = Callable[[np.ndarray], np.ndarray]


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


def check_rows(rows: pd.DataFrame, needed: int) -> pd.DataFrame:
    """Dated, consecutive, finite, positive rows; returns them indexed by date."""
    if "date" in rows.columns:
        rows = rows.set_index("date")
    missing = [c for c in INPUT_COLUMNS if c not in rows.columns]
    if missing:
        raise InputRowsError(f"rows lack columns {missing}")
    if len(rows) < needed:
        raise InputRowsError(f"need at least {needed} consecutive daily rows, got {len(rows)}")
    rows = rows.tail(needed).copy()
    rows.index = pd.to_datetime(rows.index)
    gaps = np.diff(rows.index.values).astype("timedelta64[D]").astype(int)
    if (gaps != 1).any():
        raise InputRowsError("rows must be on consecutive calendar days, oldest first")
    values = rows[INPUT_COLUMNS].to_numpy(dtype="float64")
    if not np.isfinite(values).all():
        raise InputRowsError("rows hold missing or non-finite values")
    prices = rows[[c for c in INPUT_COLUMNS if c not in ("gold_filled", "btc_volume")]]
    if (prices.to_numpy() <= 0).any():
        raise InputRowsError("prices must be positive")
    return rows


def next_row(rows: pd.DataFrame, close: float) -> pd.DataFrame:
    """A synthetic next day for recursive forecasts: flat OHLC at the forecast, others carried."""
    last = rows.iloc[-1]
    date = rows.index[-1] + pd.Timedelta(days=1)
    row = {c: last[c] for c in INPUT_COLUMNS}
    row.update(btc_open=close, btc_high=close, btc_low=close, btc_close=close,
               gold_filled=float(date.dayofweek >= 5))  # gold does not trade at weekends
    return pd.DataFrame([row], index=pd.DatetimeIndex([date], name=rows.index.name))


def forecast_closes(model: ReturnModel, scaler: Scaler, lookback: int, rows: pd.DataFrame,
                    horizon: int = 1) -> pd.DataFrame:
    """Forecast `horizon` next-day closes (USD) recursively from the latest rows."""
    if not 1 <= horizon <= 30:
        raise InputRowsError(f"horizon must be between 1 and 30, got {horizon}")
    rows = check_rows(rows, lookback + 1)
    out = []
    for _ in range(horizon):
        feats = compute_features(rows).iloc[-lookback:].to_numpy(dtype="float64")
        window = scaler.transform(feats).astype("float32")[None, :, :]
        log_return = float(scaler.target_from_scaled(model(window))[0])
        close = float(rows["btc_close"].iloc[-1] * np.exp(log_return))
        rows = pd.concat([rows.iloc[1:], next_row(rows, close)])
        out.append((rows.index[-1], close))
    return pd.DataFrame(out, columns=["date", "close"])


# --- numpy fast path: the same arithmetic as above on plain arrays (the API's hot path) -------
# Column positions in INPUT_COLUMNS order; tests/serving/test_fast_path.py proves both paths agree.
_OPEN, _HIGH, _LOW, _CLOSE, _VOLUME, _ETH, _GOLD, _GOLD_FILLED = range(len(INPUT_COLUMNS))
_PRICES = [_OPEN, _HIGH, _LOW, _CLOSE, _ETH, _GOLD]


def rows_to_arrays(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Rows in the input schema → (dates as datetime64[D], values (n, INPUT_COLUMNS) float64)."""
    dates = pd.to_datetime(rows["date"] if "date" in rows.columns else rows.index)
    return (np.asarray(dates.values, dtype="datetime64[D]"),
            rows[INPUT_COLUMNS].to_numpy(dtype="float64"))


def check_arrays(dates: np.ndarray, values: np.ndarray, needed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Array twin of check_rows: the latest `needed` rows, consecutive, finite and positive."""
    if values.ndim != 2 or values.shape[1] != len(INPUT_COLUMNS) or len(dates) != len(values):
        raise InputRowsError(f"rows must have {len(INPUT_COLUMNS)} columns {INPUT_COLUMNS}")
    if len(values) < needed:
        raise InputRowsError(f"need at least {needed} consecutive daily rows, got {len(values)}")
    dates, values = dates[-needed:], values[-needed:]
    if (np.diff(dates).astype("timedelta64[D]").astype(int) != 1).any():
        raise InputRowsError("rows must be on consecutive calendar days, oldest first")
    if not np.isfinite(values).all():
        raise InputRowsError("rows hold missing or non-finite values")
    if (values[:, _PRICES] <= 0).any():
        raise InputRowsError("prices must be positive")
    return dates, values


def features_array(values: np.ndarray) -> np.ndarray:
    """compute_features on an array: one row per input row after the first (which feeds returns)."""
    cur, prev = values[1:], values[:-1]
    close = cur[:, _CLOSE]
    log_volume = np.log1p(values[:, _VOLUME])
    return np.column_stack([
        np.log(close / prev[:, _CLOSE]),
        np.log(cur[:, _HIGH] / close),
        np.log(cur[:, _LOW] / close),
        np.log(cur[:, _OPEN] / close),
        log_volume[1:] - log_volume[:-1],
        np.log(cur[:, _ETH] / prev[:, _ETH]),
        np.log(cur[:, _GOLD] / prev[:, _GOLD]),
        cur[:, _GOLD_FILLED],
    ])


def forecast_arrays(model: ReturnModel, scaler: Scaler, lookback: int, dates: np.ndarray,
                    values: np.ndarray, horizon: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """forecast_closes without pandas: (forecast dates datetime64[D], closes USD float64)."""
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
        close = float(rows[-1, _CLOSE] * np.exp(log_return))
        # The synthetic next day of next_row: flat OHLC at the forecast, the rest carried.
        nxt = window[step + lookback + 1]
        nxt[:] = rows[-1]
        nxt[[_OPEN, _HIGH, _LOW, _CLOSE]] = close
        weekday = (int(out_dates[step].astype("int64")) + 3) % 7  # 1970-01-01 was a Thursday
        nxt[_GOLD_FILLED] = float(weekday >= 5)
        closes[step] = close
    return out_dates, closes

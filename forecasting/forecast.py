"""From raw daily rows to USD quantile forecasts of the next days, shared by every model."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from .features import (
    CLOSE,
    GOLD_FILLED,
    HIGH,
    INPUT_COLUMNS,
    LOW,
    OPEN,
)

MAX_HORIZON = 30  # days ahead a forecast may reach (recursive steps): the API's bound too
PATHS = 500  # sampled price paths behind the bands of days 2 .. horizon


PRICES = [INPUT_COLUMNS.index(c) for c in INPUT_COLUMNS if c not in ("btc_volume", "gold_filled")]


class InputRowsError(ValueError):
    """Rows handed to a model cannot make a forecast; the message says which rule broke."""


def input_frame(records: list[dict[str, object]] | pd.DataFrame) -> pd.DataFrame:
    """Rows in the pyfunc's input schema: ISO date strings, then float64 values."""
    frame = pd.DataFrame(records)
    missing = [c for c in ["date", *INPUT_COLUMNS] if c not in frame.columns]
    if missing:
        raise InputRowsError(f"rows lack columns {missing}")
    frame = frame[["date", *INPUT_COLUMNS]].copy()
    frame["date"] = pd.to_datetime(frame["date"]).dt.strftime("%Y-%m-%d")
    # Every value a double (the gold flag too): an integer column would make MLflow's schema
    # enforcement warn about missing values on every logged model.
    frame[INPUT_COLUMNS] = frame[INPUT_COLUMNS].astype("float64")
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


def check_horizon(horizon: int) -> None:
    """Refuse a horizon outside 1..MAX_HORIZON days."""
    if not 1 <= horizon <= MAX_HORIZON:
        raise InputRowsError(f"horizon must be between 1 and {MAX_HORIZON}, got {horizon}")


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


class QuantileModel(Protocol):
    """A model of the next day's log return, as quantiles at `levels`, from raw daily rows."""

    @property
    def levels(self) -> tuple[float, ...]:
        """The quantile levels (sorted, symmetric, with 0.5)."""
        ...

    @property
    def rows_needed(self) -> int:
        """Raw daily rows (oldest first) one forecast reads."""
        ...

    def return_quantiles(self, windows: np.ndarray) -> np.ndarray:
        """(n, rows_needed, INPUT_COLUMNS) raw rows → (n, levels) log-return quantiles,
        non-decreasing along the levels (a model's raw ones; calibrated through
        packaged.Calibrated)."""
        ...


def next_rows(last: np.ndarray, close: np.ndarray, day: np.datetime64) -> np.ndarray:
    """The synthetic day after `last` (n, columns): flat OHLC at `close`, the rest carried,
    gold flagged as filled on weekends."""
    rows = np.array(last, dtype="float64", copy=True)
    rows[:, [OPEN, HIGH, LOW, CLOSE]] = close[:, None]
    weekday = (int(day.astype("datetime64[D]").astype("int64")) + 3) % 7  # 1970-01-01: Thursday
    rows[:, GOLD_FILLED] = float(weekday >= 5)
    return rows


def windows_at(values: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """The `length` raw rows ending at each index in `ends`: (n, length, columns)."""
    if len(ends) and ends.min() < length - 1:
        raise InputRowsError(f"a forecast at row {ends.min()} needs {length} rows of history")
    idx = ends[:, None] + np.arange(1 - length, 1)[None, :]
    return np.asarray(values[idx], dtype="float64")


def stratified_uniforms(rng: np.random.Generator, n: int) -> np.ndarray:
    """n draws of U(0, 1), one in each of n equal strata, in random order (less noise)."""
    return rng.permutation((np.arange(n) + rng.uniform(size=n)) / n)


def forecast_quantiles(
    model: QuantileModel,
    dates: np.ndarray,
    values: np.ndarray,
    horizon: int,
    paths: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(forecast dates datetime64[D], USD close quantiles (horizon, levels)).

    Day 1 is the model's own quantiles (calibrated when `model` is a packaged.Calibrated: every
    day then uses the same calibration state). Later days come from `paths` sampled price
    paths: each step draws a return from every path's quantile function and appends the
    synthetic day it implies, so volatility the model reads from recent rows carries forward.
    The seed makes the answer reproducible (the same rows give the same bands).
    """
    from .quantiles import sample_from_quantiles

    check_horizon(horizon)
    dates, values = check_arrays(dates, values, model.rows_needed)
    levels = model.levels
    out_dates = dates[-1] + np.arange(1, horizon + 1).astype("timedelta64[D]")
    first = model.return_quantiles(values[None])[0]
    closes = np.empty((horizon, len(levels)))
    closes[0] = values[-1, CLOSE] * np.exp(first)
    if horizon > 1:
        rng = np.random.default_rng(seed)
        history = np.repeat(values[None], paths, axis=0)
        drawn = sample_from_quantiles(
            np.repeat(first[None], paths, axis=0), levels, stratified_uniforms(rng, paths)
        )
        for step in range(1, horizon):
            close = history[:, -1, CLOSE] * np.exp(drawn)  # each path's close on day `step`
            history = np.concatenate(
                [history[:, 1:], next_rows(history[:, -1], close, out_dates[step - 1])[:, None]],
                axis=1,
            )
            quant = model.return_quantiles(history)
            drawn = sample_from_quantiles(quant, levels, stratified_uniforms(rng, paths))
            closes[step] = np.quantile(close * np.exp(drawn), levels)
    return out_dates, closes


def forecast_seed(*parts: object, values: np.ndarray | None = None) -> int:
    """A reproducible 64-bit seed from what a forecast depends on (model, horizon, input rows)."""
    import hashlib

    digest = hashlib.sha256(repr(parts).encode())
    if values is not None:
        digest.update(np.ascontiguousarray(values, dtype="float64").tobytes())
    return int.from_bytes(digest.digest()[:8], "little")

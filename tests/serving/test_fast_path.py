"""The recursive numpy forecast (every model's serving path) equals a pandas re-derivation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipelines.features import INPUT_COLUMNS, Scaler, compute_features
from pipelines.forecast import (
    InputRowsError,
    ReturnModel,
    check_arrays,
    forecast_arrays,
    input_frame,
    rows_to_arrays,
)
from pipelines.model import Forecaster
from tests.params import model_config

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def rows(real_versions: Path) -> pd.DataFrame:
    """The latest 120 real v0.3 rows in the pyfunc's input schema."""
    frame = pd.read_parquet(real_versions / "v0.3.parquet")[INPUT_COLUMNS].tail(120)
    return input_frame(frame.reset_index().assign(date=lambda f: f["date"].dt.strftime("%F")))


def untrained(cell: str, seed: int) -> tuple[Forecaster, Scaler]:
    """A seeded random forecaster and a non-trivial scaler (nothing trained: pure arithmetic)."""
    torch.set_num_threads(1)  # as the API runs it; more threads only contend on 2 cores
    torch.manual_seed(seed)
    net = Forecaster(model_config(input_size=8, hidden_size=8, cell=cell)).eval()
    rng = np.random.default_rng(seed)
    scaler = Scaler(
        mean=rng.normal(0, 0.01, 8).tolist(),
        std=rng.uniform(0.5, 2, 8).tolist(),
        target_mean=0.001,
        target_std=0.03,
    )
    return net, scaler


def returns_of(net: Forecaster) -> ReturnModel:
    def model(windows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(windows)).numpy()

    return model


def pandas_reference(
    model: ReturnModel, scaler: Scaler, lookback: int, rows: pd.DataFrame, horizon: int
) -> pd.DataFrame:
    """The same forecast, re-derived one step at a time with pandas: features of a growing
    frame, the window of its last `lookback` days, a synthetic flat next day appended."""
    frame = rows.set_index(pd.DatetimeIndex(pd.to_datetime(rows["date"])))[INPUT_COLUMNS]
    frame = frame.tail(lookback + 1)
    out = []
    for _ in range(horizon):
        feats = np.ascontiguousarray(compute_features(frame).iloc[1:].to_numpy())
        window = scaler.transform(feats).astype("float32")[None, :, :]
        log_return = float(scaler.target_from_scaled(model(window))[0])
        close = float(frame["btc_close"].iloc[-1] * np.exp(log_return))
        day = frame.index[-1] + pd.Timedelta(days=1)
        nxt = frame.iloc[-1].copy()
        nxt[["btc_open", "btc_high", "btc_low", "btc_close"]] = close
        nxt["gold_filled"] = float(day.weekday() >= 5)
        frame = pd.concat([frame, nxt.to_frame(day).T]).tail(lookback + 1)
        out.append({"date": day, "close": close})
    return pd.DataFrame(out)


@pytest.mark.parametrize(
    ("cell", "lookback", "horizon"),
    [("rnn", 10, 1), ("gru", 30, 7), ("lstm", 60, 30), ("rnn", 1, 30)],
)
def test_numpy_path_equals_pandas_path(
    rows: pd.DataFrame, cell: str, lookback: int, horizon: int
) -> None:
    net, scaler = untrained(cell, seed=lookback)
    model = returns_of(net)
    reference = pandas_reference(model, scaler, lookback, rows, horizon)
    dates, closes = forecast_arrays(model, scaler, lookback, *rows_to_arrays(rows), horizon)
    assert (
        np.datetime_as_string(dates, unit="D").tolist()
        == reference["date"].dt.strftime("%Y-%m-%d").tolist()
    )
    assert np.array_equal(closes, reference["close"].to_numpy())  # identical, not just close
    # 30 recursive steps cross weekends: the synthetic rows' gold_filled flag matters there.
    assert len(set(closes.tolist())) == horizon


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(index=f.index[-3]), "consecutive calendar days"),
        (
            lambda f: f.assign(btc_close=f["btc_close"].where(f.index != f.index[-1], np.nan)),
            "non-finite",
        ),
        (lambda f: f.assign(eth_close=-f["eth_close"]), "prices must be positive"),
        (lambda f: f.tail(5), "need at least 11"),
    ],
)
def test_bad_rows_are_refused_by_name(
    rows: pd.DataFrame, change: Callable[[pd.DataFrame], pd.DataFrame], message: str
) -> None:
    bad = change(rows.copy())
    with pytest.raises(InputRowsError, match=message):
        check_arrays(*rows_to_arrays(bad), 11)
    net, scaler = untrained("rnn", 0)
    with pytest.raises(InputRowsError, match=message):
        forecast_arrays(returns_of(net), scaler, 10, *rows_to_arrays(bad), 1)


def test_horizon_bounds(rows: pd.DataFrame) -> None:
    net, scaler = untrained("rnn", 0)
    for horizon in (0, 31):
        with pytest.raises(InputRowsError, match="horizon"):
            forecast_arrays(returns_of(net), scaler, 10, *rows_to_arrays(rows), horizon)

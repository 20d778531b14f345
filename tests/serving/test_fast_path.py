"""The API's numpy forecasting path equals pipelines.forecast's pandas path, bit for bit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipelines.features import INPUT_COLUMNS, Scaler
from pipelines.forecast import (
    InputRowsError,
    ReturnModel,
    check_arrays,
    check_rows,
    forecast_arrays,
    forecast_closes,
    input_frame,
    rows_to_arrays,
)
from pipelines.model import Forecaster, ModelConfig

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
    net = Forecaster(ModelConfig(input_size=8, hidden_size=8, cell=cell)).eval()
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


@pytest.mark.parametrize(
    ("cell", "lookback", "horizon"),
    [("rnn", 10, 1), ("gru", 30, 7), ("lstm", 60, 30), ("rnn", 1, 30)],
)
def test_numpy_path_equals_pandas_path(
    rows: pd.DataFrame, cell: str, lookback: int, horizon: int
) -> None:
    net, scaler = untrained(cell, seed=lookback)
    model = returns_of(net)
    reference = forecast_closes(
        model, scaler, lookback, rows.assign(date=pd.to_datetime(rows["date"])), horizon
    )
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
def test_both_paths_refuse_the_same_rows(
    rows: pd.DataFrame, change: Callable[[pd.DataFrame], pd.DataFrame], message: str
) -> None:
    bad = change(rows.copy())
    with pytest.raises(InputRowsError, match=message):
        check_rows(bad.assign(date=pd.to_datetime(bad["date"])), 11)
    with pytest.raises(InputRowsError, match=message):
        check_arrays(*rows_to_arrays(bad), 11)


def test_horizon_bounds(rows: pd.DataFrame) -> None:
    net, scaler = untrained("rnn", 0)
    for horizon in (0, 31):
        with pytest.raises(InputRowsError, match="horizon"):
            forecast_arrays(returns_of(net), scaler, 10, *rows_to_arrays(rows), horizon)

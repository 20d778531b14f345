"""The numpy forecast path (every model's serving path): day 1 is the model's own quantiles, a
degenerate (point) model reproduces a pandas re-derivation of the recursive forecast exactly, and
the sampled paths of later days have the spread the one-day quantiles imply."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from forecasting.features import INPUT_COLUMNS, Scaler, compute_features, features_array
from forecasting.forecast import (
    PATHS,
    InputRowsError,
    check_arrays,
    forecast_quantiles,
    input_frame,
    rows_to_arrays,
)
from forecasting.network import Forecaster
from forecasting.quantiles import median_index
from tests.params import model_config

pytestmark = pytest.mark.unit

LEVELS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)


@pytest.fixture(scope="module")
def rows(real_versions: Path) -> pd.DataFrame:
    """The latest 120 real v0.3 rows in the pyfunc's input schema."""
    frame = pd.read_parquet(real_versions / "v0.3.parquet")[INPUT_COLUMNS].tail(120)
    return input_frame(frame.reset_index().assign(date=lambda f: f["date"].dt.strftime("%F")))


class NetModel:
    """A seeded random forecaster behind a non-trivial scaler (pure arithmetic, nothing
    trained). With `point=True` every level gets the median: a deterministic point model."""

    def __init__(self, cell: str, lookback: int, seed: int, point: bool = False) -> None:
        torch.set_num_threads(1)  # as the API runs it; more threads only contend on 2 cores
        torch.manual_seed(seed)
        self.net = Forecaster(
            model_config(input_size=8, hidden_size=8, cell=cell, levels=LEVELS)
        ).eval()
        rng = np.random.default_rng(seed)
        self.scaler = Scaler(
            mean=rng.normal(0, 0.01, 8).tolist(),
            std=rng.uniform(0.5, 2, 8).tolist(),
            target_mean=0.001,
            target_std=0.03,
        )
        self.lookback, self.point = lookback, point

    @property
    def levels(self) -> tuple[float, ...]:
        return LEVELS

    @property
    def rows_needed(self) -> int:
        return self.lookback + 1

    def scaled(self, window: np.ndarray) -> np.ndarray:
        """Scaled feature windows (n, lookback, 8) → log-return quantiles (n, levels)."""
        with torch.inference_mode():
            out = self.net(torch.from_numpy(window.astype("float32"))).numpy()
        if self.point:
            out = np.repeat(out[:, [median_index(LEVELS)]], len(LEVELS), axis=1)
        return np.asarray(self.scaler.target_from_scaled(out.astype("float64")))

    def return_quantiles(self, windows: np.ndarray) -> np.ndarray:
        return self.scaled(self.scaler.transform(features_array(windows)))


def pandas_reference(model: NetModel, rows: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """The point forecast re-derived one step at a time with pandas: features of a growing
    frame, the window of its last `lookback` days, a synthetic flat next day appended."""
    frame = rows.set_index(pd.DatetimeIndex(pd.to_datetime(rows["date"])))[INPUT_COLUMNS]
    frame = frame.tail(model.rows_needed)
    out = []
    for _ in range(horizon):
        feats = np.ascontiguousarray(compute_features(frame).iloc[1:].to_numpy())
        log_return = float(model.scaled(model.scaler.transform(feats)[None])[0, 0])
        close = float(frame["btc_close"].iloc[-1] * np.exp(log_return))
        day = frame.index[-1] + pd.Timedelta(days=1)
        nxt = frame.iloc[-1].copy()
        nxt[["btc_open", "btc_high", "btc_low", "btc_close"]] = close
        nxt["gold_filled"] = float(day.weekday() >= 5)
        frame = pd.concat([frame, nxt.to_frame(day).T]).tail(model.rows_needed)
        out.append({"date": day, "close": close})
    return pd.DataFrame(out)


@pytest.mark.parametrize(
    ("cell", "lookback", "horizon"),
    [("rnn", 10, 1), ("gru", 30, 7), ("lstm", 60, 30), ("rnn", 1, 30)],
)
def test_point_model_paths_equal_the_pandas_recursion(
    rows: pd.DataFrame, cell: str, lookback: int, horizon: int
) -> None:
    model = NetModel(cell, lookback, seed=lookback, point=True)
    reference = pandas_reference(model, rows, horizon)
    dates, closes = forecast_quantiles(model, *rows_to_arrays(rows), horizon, PATHS, seed=1)
    assert (
        np.datetime_as_string(dates, unit="D").tolist()
        == reference["date"].dt.strftime("%Y-%m-%d").tolist()
    )
    # Every path is the same path: no spread at any level. (Tolerance: the float32 net sums a
    # batch of 500 paths in another order than one window; the arithmetic is otherwise equal.)
    for level in range(len(LEVELS)):
        np.testing.assert_allclose(closes[:, level], reference["close"], rtol=1e-8)
    # 30 recursive steps cross weekends: the synthetic rows' gold_filled flag matters there.
    assert len(set(np.round(closes[:, 0], 6).tolist())) == horizon


def test_day_one_is_the_models_own_quantiles_and_paths_are_reproducible(
    rows: pd.DataFrame,
) -> None:
    model = NetModel("gru", 20, seed=3)
    dates, values = rows_to_arrays(rows)
    _, closes = forecast_quantiles(model, dates, values, 10, PATHS, seed=7)
    first = model.return_quantiles(values[None, -model.rows_needed :])[0]
    np.testing.assert_allclose(
        closes[0], values[-1, INPUT_COLUMNS.index("btc_close")] * np.exp(first)
    )
    assert (np.diff(closes, axis=1) >= 0).all()  # no crossing on any day
    again = forecast_quantiles(model, dates, values, 10, PATHS, seed=7)[1]
    assert np.array_equal(closes, again)
    other = forecast_quantiles(model, dates, values, 10, PATHS, seed=8)[1]
    assert not np.array_equal(closes[1:], other[1:]) and np.array_equal(closes[0], other[0])


class GaussianModel:
    """I.i.d. N(0, sigma) daily log returns, whatever the rows: h-day sums are N(0, sigma √h)."""

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma
        self.q = stats.norm.ppf(LEVELS) * sigma

    @property
    def levels(self) -> tuple[float, ...]:
        return LEVELS

    @property
    def rows_needed(self) -> int:
        return 2

    def return_quantiles(self, windows: np.ndarray) -> np.ndarray:
        return np.repeat(self.q[None], len(windows), axis=0)


def test_sampled_paths_spread_as_the_sum_of_daily_returns(rows: pd.DataFrame) -> None:
    model = GaussianModel(sigma=0.03)
    dates, values = rows_to_arrays(rows)
    _, closes = forecast_quantiles(model, dates, values, 30, PATHS, seed=0)
    log_ratio = np.log(closes / values[-1, INPUT_COLUMNS.index("btc_close")])
    for day in (1, 5, 30):
        expected = stats.norm.ppf(LEVELS) * model.sigma * np.sqrt(day)
        # 500 stratified paths, linear tails beyond 2.5%/97.5%: within 12% at the 90% band.
        for lo, hi in ((2, 6), (1, 7)):
            width = log_ratio[day - 1, hi] - log_ratio[day - 1, lo]
            assert width == pytest.approx(expected[hi] - expected[lo], rel=0.12), (day, lo)


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
    with pytest.raises(InputRowsError, match=message):
        forecast_quantiles(NetModel("rnn", 10, 0), *rows_to_arrays(bad), 1, PATHS, 0)


def test_horizon_bounds(rows: pd.DataFrame) -> None:
    for horizon in (0, 31):
        with pytest.raises(InputRowsError, match="horizon"):
            forecast_quantiles(NetModel("rnn", 10, 0), *rows_to_arrays(rows), horizon, PATHS, 0)

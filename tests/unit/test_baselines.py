"""The probabilistic baselines and the multi-day path forecast on synthetic prices."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from forecasting.baselines import EmpiricalQuantiles, EwmaQuantiles
from forecasting.features import CLOSE, INPUT_COLUMNS
from forecasting.forecast import forecast_quantiles, forecast_seed, windows_at

pytestmark = pytest.mark.unit
LEVELS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)


def price_rows(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw daily rows whose BTC close follows `returns` (other columns plausible, constant)."""
    close = 100 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    values = np.ones((len(close), len(INPUT_COLUMNS)))
    values[:, CLOSE] = close
    for col in ("btc_open", "btc_high", "btc_low"):
        values[:, INPUT_COLUMNS.index(col)] = close
    values[:, INPUT_COLUMNS.index("gold_filled")] = 0.0
    dates = np.datetime64("2020-01-01") + np.arange(len(close)).astype("timedelta64[D]")
    return dates, values


def test_empirical_quantiles_are_the_trailing_spread_around_persistence() -> None:
    rng = np.random.default_rng(0)
    returns = rng.normal(0.004, 0.03, 400)  # a drift: the median return is not 0
    _, values = price_rows(returns)
    model = EmpiricalQuantiles(LEVELS, window=365)
    got = model.return_quantiles(values[None])[0]
    trailing = np.quantile(returns[-365:], LEVELS)
    np.testing.assert_allclose(got, trailing - trailing[4], rtol=1e-9, atol=1e-15)
    assert got[4] == 0.0  # persistence at the median: the MASE anchor


def test_ewma_volatility_of_constant_moves_is_that_move() -> None:
    returns = np.tile([0.02, -0.02], 100)
    _, values = price_rows(returns)
    model = EwmaQuantiles(LEVELS, window=180)
    assert model.volatility(values[None])[0] == pytest.approx(0.02, rel=1e-9)
    q = model.return_quantiles(values[None])[0]
    np.testing.assert_allclose(q, stats.norm.ppf(LEVELS) * 0.02, rtol=1e-9)
    assert q[4] == 0.0  # persistence at the median


def test_path_forecast_first_day_is_exact_and_seeded() -> None:
    rng = np.random.default_rng(1)
    dates, values = price_rows(rng.normal(0, 0.02, 400))
    model = EwmaQuantiles(LEVELS, window=180)
    days, closes = forecast_quantiles(model, dates, values, 5, paths=300, seed=42)
    assert days[0] == dates[-1] + np.timedelta64(1, "D") and len(days) == 5
    np.testing.assert_allclose(
        closes[0], values[-1, CLOSE] * np.exp(model.return_quantiles(values[None])[0])
    )
    assert np.all(np.diff(closes, axis=1) >= 0)  # bands never cross
    assert np.all(np.diff(closes[:, -1] - closes[:, 0]) > 0)  # and widen with the horizon
    _, again = forecast_quantiles(model, dates, values, 5, paths=300, seed=42)
    assert np.array_equal(closes, again)  # reproducible
    assert forecast_seed("v1", 5, values=values) == forecast_seed("v1", 5, values=values.copy())
    assert forecast_seed("v1", 5, values=values) != forecast_seed("v2", 5, values=values)


def test_multi_day_intervals_cover_their_nominal_share_on_a_random_walk() -> None:
    """iid normal returns: the empirical baseline's 5-day-ahead bands cover about nominally."""
    rng = np.random.default_rng(2)
    dates, values = price_rows(rng.normal(0, 0.02, 1200))
    model = EmpiricalQuantiles(LEVELS, window=365)
    hits = {0.8: [], 0.95: []}
    for origin in range(400, 1190, 4):
        _, closes = forecast_quantiles(
            model, dates[: origin + 1], values[: origin + 1], 5, paths=400, seed=origin
        )
        actual = values[origin + 5, CLOSE]
        hits[0.8].append(closes[4, 2] <= actual <= closes[4, 6])
        hits[0.95].append(closes[4, 0] <= actual <= closes[4, 8])
    assert abs(np.mean(hits[0.8]) - 0.8) < 0.08 and abs(np.mean(hits[0.95]) - 0.95) < 0.05


def test_windows_at_refuses_too_little_history() -> None:
    values = np.arange(20.0).reshape(10, 2)
    assert windows_at(values, np.array([4, 9]), 3).shape == (2, 3, 2)
    with pytest.raises(ValueError, match="needs 3 rows"):
        windows_at(values, np.array([1]), 3)

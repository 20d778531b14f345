"""Online conformal calibration: no look-ahead, the long-run miss rate, the state's round trip,
non-crossing quantiles, and a packaged model that owns its calibration."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from forecasting import calibration as cal
from forecasting.features import CLOSE, INPUT_COLUMNS
from forecasting.packaged import PackagedModel, build_model
from forecasting.quantiles import conformal_offsets, coverage, interval_pairs
from forecasting.scores import coverage_by_volatility

pytestmark = pytest.mark.unit
LEVELS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)
STEP = 0.077


def heteroscedastic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(raw quantiles, returns, true volatility, days): returns whose volatility wanders in
    slow regimes (fat-tailed), forecast by a model with one fixed, too narrow spread."""
    rng = np.random.default_rng(seed)
    log_vol = np.zeros(n)
    for i in range(1, n):
        log_vol[i] = 0.99 * log_vol[i - 1] + rng.normal(0, 0.1)
    sigma = 0.02 * np.exp(log_vol)
    returns = sigma * rng.standard_t(5, n) / math.sqrt(5 / 3)
    raw = np.tile(stats.norm.ppf(LEVELS) * 0.01, (n, 1))
    days = np.datetime64("2001-01-01") + np.arange(n)
    return raw, returns, sigma, days


def test_the_long_run_miss_rate_is_nominal_where_the_raw_spread_is_wrong() -> None:
    raw, returns, sigma, days = heteroscedastic(20000, seed=11)
    start = cal.initial_state(LEVELS, STEP)
    out, state = cal.run(start, raw, returns, days)
    assert state.updates == len(returns) and state.as_of == str(days[-1])
    for nominal, (lo, hi) in interval_pairs(LEVELS).items():
        assert coverage(raw, returns, lo, hi) < nominal - 0.15  # the raw spread misses badly
        adaptive = coverage(out, returns, lo, hi)
        assert abs(adaptive - nominal) < 0.01, nominal
        # the quantile tracker's identity: misses beyond nominal = log k's change / step
        excess = (1 - adaptive) * len(returns) - (1 - nominal) * len(returns)
        assert excess == pytest.approx(math.log(state.multipliers[nominal]) / STEP, abs=1e-6)
    # It follows the volatility regimes: on calm and turbulent thirds of the days it is much
    # nearer nominal than split-conformal offsets fitted once on the first 2000 days.
    fixed = cal.apply(
        raw, cal.fixed_state(LEVELS, conformal_offsets(raw[:2000], returns[:2000], LEVELS))
    )

    def worst(quantiles: np.ndarray) -> float:
        by_third = coverage_by_volatility(quantiles[2000:], returns[2000:], sigma[2000:], LEVELS)
        return max(abs(v - float(k.split("_")[1]) / 100) for k, v in by_third.items())

    assert worst(out) < 0.1 < worst(fixed) and worst(out) < worst(fixed) / 2


def test_no_interval_issued_on_or_before_a_day_moves_when_a_later_close_changes() -> None:
    raw, returns, _, days = heteroscedastic(300, seed=3)
    start = cal.initial_state(LEVELS, STEP)
    base, final = cal.run(start, raw, returns, days)
    for t in (0, 57, 150, 298):
        changed = returns.copy()  # the close of day t + 1 (the return realised on days[t + 1]):
        covered = base[t + 1, 0] <= returns[t + 1] <= base[t + 1, -1]
        changed[t + 1] = 1.0 if covered else 0.0  # from inside every interval to outside, or back
        out, again = cal.run(start, raw, changed, days)
        np.testing.assert_array_equal(out[: t + 2], base[: t + 2])  # issued through day t + 1
        assert again != final  # ... and it does move what follows
        assert not np.array_equal(out[t + 2 :], base[t + 2 :]) or t + 2 == len(days)


def test_the_state_round_trips_through_json_exactly() -> None:
    raw, returns, _, days = heteroscedastic(200, seed=5)
    _, state = cal.run(cal.initial_state(LEVELS, STEP), raw, returns, days)
    text = json.dumps(state.to_dict())
    back = cal.CalibrationState.from_dict(json.loads(text))
    assert back == state and back.digest() == state.digest()
    assert back.as_of == str(days[-1]) and back.updates == 200
    np.testing.assert_array_equal(cal.apply(raw, back), cal.apply(raw, state))
    moved = cal.update(state, raw[0], 0.5, days[-1] + 1)
    assert moved.digest() != state.digest() and len(state.digest()) == 16
    fixed = cal.fixed_state(LEVELS, {0.8: 0.01, 0.95: -0.002})
    assert cal.CalibrationState.from_dict(json.loads(json.dumps(fixed.to_dict()))) == fixed


def test_calibrated_quantiles_never_cross_and_keep_the_median() -> None:
    rng = np.random.default_rng(0)
    raw = np.sort(rng.normal(0, 0.03, (500, len(LEVELS))), axis=1)
    raw[:, 4] = rng.normal(0, 0.01, 500).clip(raw[:, 3], raw[:, 5])
    state = cal.CalibrationState(LEVELS, {0.5: 6.0, 0.8: 0.3, 0.9: 2.0, 0.95: 0.1}, STEP, None, 0)
    out = cal.apply(raw, state)
    assert (np.diff(out, axis=1) >= 0).all()
    np.testing.assert_array_equal(out[:, 4], raw[:, 4])
    days = np.datetime64("2020-01-01") + np.arange(500)
    out, _ = cal.run(state, raw, rng.normal(0, 0.05, 500), days)
    assert (np.diff(out, axis=1) >= 0).all()
    np.testing.assert_array_equal(out[:, 4], raw[:, 4])


def test_a_fixed_state_is_the_interface_1_offsets_and_never_moves() -> None:
    raw = np.tile(stats.norm.ppf(LEVELS) * 0.02, (3, 1))
    state = cal.load_state({"0.8": 0.01, "0.95": 0.004}, LEVELS)
    assert state.step == 0 and state.offsets == {0.8: 0.01, 0.95: 0.004}
    expected = raw.copy()
    expected[:, [2, 6]] += [-0.01, 0.01]
    expected[:, [0, 8]] += [-0.004, 0.004]
    np.testing.assert_allclose(cal.apply(raw, state), np.sort(expected), rtol=0, atol=1e-15)
    after = cal.update(state, raw[0], 0.3, "2024-01-02")  # a miss everywhere: k stays
    assert after.multipliers == state.multipliers and after.as_of == "2024-01-02"
    assert cal.load_state(None, LEVELS) == cal.initial_state(LEVELS, 0.0)


def test_a_close_is_folded_in_once_and_a_state_never_calibrates_its_own_past() -> None:
    raw, returns, _, days = heteroscedastic(10, seed=1)
    _, state = cal.run(cal.initial_state(LEVELS, STEP), raw[:5], returns[:5], days[:5])
    assert cal.update(state, raw[4], 0.9, days[4]) == state  # day 5 again: nothing changes
    assert cal.update(state, raw[2], 0.9, days[2]) == state
    with pytest.raises(ValueError, match="would look ahead"):
        cal.run(state, raw[4:], returns[4:], days[4:])
    with pytest.raises(ValueError, match="strictly increasing"):
        cal.run(state, raw[5:7], returns[5:7], days[[6, 5]])


def packaged_ewma(n: int = 260, seed: int = 4) -> tuple[PackagedModel, np.ndarray, np.ndarray]:
    """An EWMA version packaged with the raw spread as its state, and raw rows of a random walk
    whose volatility grows fivefold."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n) * np.linspace(0.5, 2.5, n)))
    values = np.ones((n, len(INPUT_COLUMNS)))
    values[:, :4] = close[:, None]
    values[:, INPUT_COLUMNS.index("gold_filled")] = 0.0
    dates = np.datetime64("2022-01-01") + np.arange(n)
    config = {
        "kind": "ewma",
        "window": 60,
        "decay": 0.94,
        "lookback": 60,
        "levels": list(LEVELS),
        "calibration": cal.initial_state(LEVELS, STEP).to_dict(),
    }
    rows = [
        {"date": str(d), **dict(zip(INPUT_COLUMNS, v, strict=True))}
        for d, v in zip(dates, values, strict=True)
    ]
    return PackagedModel(config, rows[-61:], build_model(config, None)), dates, values


def test_a_packaged_model_never_reads_a_close_after_the_day_it_forecasts_on() -> None:
    py, dates, values = packaged_ewma()
    ends = np.arange(60, 259)
    base, final = py.calibrated_run(dates, values, ends)
    through = str(dates[150])
    state = py.advance(dates, values, through)
    assert state.as_of == through and state.updates == 150 - 60
    for t in (100, 150, 200):
        changed = values.copy()
        changed[t + 1, CLOSE] *= 1.3  # the close of day t + 1
        out, again = py.calibrated_run(dates, changed, ends)
        issued = ends <= t  # forecasts issued at the close of day t or before
        np.testing.assert_array_equal(out[issued], base[issued])
        assert not np.array_equal(out[~issued], base[~issued]) and again != final
        if t >= 150:
            assert py.advance(dates, changed, through) == state
    # Idempotent, and day by day equals all at once.
    assert py.advance(dates, values, through, state) == state
    step_by_step = py.state
    for day in dates[61:151]:
        step_by_step = py.advance(dates, values, str(day), step_by_step)
    assert step_by_step == state
    # The forecast issued at the close of day 150 with that state is the run's row for it, on
    # every face.
    window = values[150 - 60 : 151]
    np.testing.assert_allclose(py.return_quantiles(window[None], state)[0], base[90], rtol=1e-12)
    _, closes = py.forecast(dates[:151], values[:151], 1, state)
    np.testing.assert_allclose(np.log(closes[0] / values[150, CLOSE]), base[90], rtol=1e-12)


def test_an_interface_1_config_loads_as_a_fixed_calibration_that_advance_only_dates() -> None:
    py, dates, values = packaged_ewma()
    rows = py.recent_rows.to_dict(orient="records")
    old = PackagedModel({**py.config, "calibration": {"0.8": 0.01}}, rows, py.model)
    assert old.state == cal.fixed_state(LEVELS, {0.8: 0.01}) and old.state.as_of is None
    advanced = old.advance(dates, values, str(dates[200]))
    _, stepped = old.calibrated_run(dates, values, np.arange(60, 200))
    assert advanced == stepped  # the shortcut for a fixed state is the day-by-day result
    assert advanced.as_of == str(dates[200]) and advanced.updates == 140
    window = values[140:201][None]
    np.testing.assert_array_equal(
        old.return_quantiles(window, advanced), old.return_quantiles(window)
    )

"""Quantile scores, calibration and the Diebold–Mariano test on small cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from forecasting import quantiles as q

pytestmark = pytest.mark.unit
LEVELS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)


def test_levels_must_be_sorted_symmetric_and_hold_the_median() -> None:
    assert q.check_levels(LEVELS) == LEVELS
    for bad, message in (
        (((0.1, 0.5),), "symmetric"),
        (((0.25, 0.75),), "median"),
        (((0.5, 0.1, 0.9),), "sorted"),
        (((0.0, 0.5, 1.0),), "strictly between"),
    ):
        with pytest.raises(ValueError, match=message):
            q.check_levels(*bad)
    assert q.interval_pairs(LEVELS) == {0.95: (0, 8), 0.9: (1, 7), 0.8: (2, 6), 0.5: (3, 5)}


def test_pinball_of_known_cases() -> None:
    quant = np.array([[1.0, 2.0, 3.0]])
    got = q.pinball(quant, np.array([2.5]), (0.1, 0.5, 0.9))
    np.testing.assert_allclose(got, [[0.1 * 1.5, 0.5 * 0.5, 0.1 * 0.5]])


def test_crps_of_a_point_forecast_is_the_absolute_error() -> None:
    point = np.full((3, len(LEVELS)), 10.0)
    np.testing.assert_allclose(q.crps(point, np.array([10.0, 12.0, 7.0]), LEVELS), [0, 2, 3])


def test_crps_from_dense_quantiles_matches_the_normal_closed_form() -> None:
    levels = tuple(np.round(np.linspace(0.01, 0.99, 99), 4))
    normal = stats.norm.ppf(levels)[None, :]
    for y in (0.0, 1.3, -2.0):
        exact = y * (2 * stats.norm.cdf(y) - 1) + 2 * stats.norm.pdf(y) - 1 / math.sqrt(math.pi)
        assert q.crps(normal, np.array([y]), levels)[0] == pytest.approx(exact, rel=0.02)


def test_monotone_quantiles_never_cross() -> None:
    import torch

    raw = torch.randn(500, len(LEVELS)) * 5
    out = q.monotone_quantiles(raw, q.median_index(LEVELS))
    assert torch.all(out[:, 1:] >= out[:, :-1])  # never crossing (softplus may round to 0)
    assert torch.equal(out[:, 4], raw[:, 4])  # the median output is the median


def test_dm_does_not_reject_equal_models() -> None:
    rng = np.random.default_rng(0)
    same = rng.gamma(2.0, 1.0, 400)
    assert q.diebold_mariano(same, same).p_value == pytest.approx(0.5)
    a, b = rng.gamma(2.0, 1.0, 400), rng.gamma(2.0, 1.0, 400)  # same distribution
    assert q.diebold_mariano(a, b).p_value > 0.05


def test_dm_rejects_a_clearly_better_model_and_not_the_reverse() -> None:
    rng = np.random.default_rng(1)
    base = rng.gamma(2.0, 1.0, 300)
    better = base * 0.8 + rng.normal(0, 0.05, 300)
    assert q.diebold_mariano(better, base).p_value < 0.01
    assert q.diebold_mariano(base, better).p_value > 0.99


def test_conformal_intervals_reach_nominal_coverage_on_heteroscedastic_data() -> None:
    """A homoscedastic, too-narrow model of heteroscedastic returns: split-conformal offsets
    from a calibration block (applied as a fixed calibration state, what interface-1 versions
    ship) bring every interval to its nominal coverage ±2 points on exchangeable rows."""
    from forecasting.calibration import apply, fixed_state

    rng = np.random.default_rng(7)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        scale = np.exp(rng.normal(0, 0.6, n)) * 0.02  # volatility varies row to row
        return scale * rng.standard_t(4, n), scale

    def model(n: int) -> np.ndarray:
        return np.tile(stats.norm.ppf(LEVELS) * 0.01, (n, 1))  # one spread for all, too narrow

    calib_y, _ = draw(3000)
    test_y, _ = draw(20000)
    raw_cov = q.coverage(model(len(test_y)), test_y, 2, 6)
    assert raw_cov < 0.7  # the uncalibrated 80% interval misses badly
    offsets = q.conformal_offsets(model(len(calib_y)), calib_y, LEVELS)
    calibrated = apply(model(len(test_y)), fixed_state(LEVELS, offsets))
    for nominal, (lo, hi) in q.interval_pairs(LEVELS).items():
        assert abs(q.coverage(calibrated, test_y, lo, hi) - nominal) <= 0.02, nominal
    assert np.all(np.diff(calibrated, axis=1) >= 0)


def test_sampling_from_quantiles_reproduces_them() -> None:
    rng = np.random.default_rng(3)
    levels = tuple(np.round(np.linspace(0.05, 0.95, 19), 4))
    quant = np.tile(stats.norm.ppf(levels), (40000, 1))
    draws = q.sample_from_quantiles(quant, levels, rng.uniform(size=40000))
    np.testing.assert_allclose(np.quantile(draws, levels), stats.norm.ppf(levels), atol=0.03)


def test_forecast_scores_names_every_interval() -> None:
    quant = np.tile(np.arange(len(LEVELS), dtype=float), (4, 1)) + 100
    scores = q.forecast_scores(quant, np.full(4, 104.0), np.full(4, 2.0), LEVELS)
    assert scores["mase"] == 0.0 and scores["coverage_95"] == 1.0 and scores["width_80"] == 4.0
    assert set(scores) >= {"pinball", "crps", "coverage_80", "width_95", "median_mae"}

"""The probabilistic promotion rule: each clause, on its own, flips the decision."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from registry.policy import ModelScore, Policy, should_promote

pytestmark = pytest.mark.unit

POLICY = Policy(margin=0.01, max_mase=1.0, metric="crps", alpha=0.05, coverage_tol=0.05)
RNG = np.random.default_rng(11)
CHAMPION_DAILY = RNG.gamma(2.0, 55.0, 600)  # mean ~110 USD a day


def score(version: int | None, daily: np.ndarray, **extra: float) -> ModelScore:
    values = {"mase": 0.99, "coverage_80": 0.81, "coverage_95": 0.94} | extra
    return ModelScore(version, crps=float(np.mean(daily)), daily=tuple(daily), **values)


def champion() -> ModelScore:
    return score(3, CHAMPION_DAILY, mase=1.0)


def baseline() -> ModelScore:
    return score(None, CHAMPION_DAILY * 1.03, mase=1.0)


def good_challenger(**extra: float) -> ModelScore:
    return score(7, CHAMPION_DAILY * 0.95 + RNG.normal(0, 1.0, 600), **extra)


def test_a_challenger_passing_every_clause_is_promoted() -> None:
    decision = should_promote(good_challenger(), champion(), baseline(), POLICY)
    assert decision.promote, decision.reason
    assert decision.dm is not None and decision.dm.p_value < 1e-6
    record = decision.to_dict()
    assert record["diebold_mariano"]["p_value"] == decision.dm.p_value
    assert "daily" not in record["challenger"]


def test_not_beating_the_champion_by_the_margin_is_refused() -> None:
    close = score(7, CHAMPION_DAILY * 0.995)  # 0.5% better: inside the 1% margin
    decision = should_promote(close, champion(), baseline(), POLICY)
    assert not decision.promote and "x (1 - 0.01)" in decision.reason


def test_not_beating_the_baseline_is_refused() -> None:
    strong_baseline = score(None, CHAMPION_DAILY * 0.90)
    decision = should_promote(good_challenger(), champion(), strong_baseline, POLICY)
    assert not decision.promote and "not below the baseline" in decision.reason


def test_a_gain_the_dm_test_cannot_tell_from_noise_is_refused() -> None:
    noisy = CHAMPION_DAILY * 0.97 + RNG.normal(0, 400.0, 600)  # 3% better on average, very noisy
    noisy = noisy - noisy.mean() + CHAMPION_DAILY.mean() * 0.97
    decision = should_promote(score(7, noisy), champion(), baseline(), POLICY)
    assert not decision.promote and "Diebold-Mariano" in decision.reason
    assert decision.dm is not None and decision.dm.p_value >= 0.05


@pytest.mark.parametrize(("field", "value"), [("coverage_80", 0.70), ("coverage_95", 0.88)])
def test_miscalibrated_intervals_are_refused(field: str, value: float) -> None:
    decision = should_promote(good_challenger(**{field: value}), champion(), baseline(), POLICY)
    assert not decision.promote and "miscalibrated" in decision.reason


def test_a_median_worse_than_persistence_is_refused() -> None:
    decision = should_promote(good_challenger(mase=1.03), champion(), baseline(), POLICY)
    assert not decision.promote and "MASE 1.0300 exceeds 1" in decision.reason


def test_without_a_champion_the_test_is_against_the_baseline() -> None:
    decision = should_promote(good_challenger(), None, baseline(), POLICY)
    assert decision.promote and "against the baseline" in decision.reason


def test_a_champion_that_cannot_be_rescored_is_no_bar() -> None:
    unusable = dataclasses.replace(champion(), crps=float("nan"), daily=())
    decision = should_promote(good_challenger(), unusable, baseline(), POLICY)
    assert decision.promote and "no usable champion" in decision.reason

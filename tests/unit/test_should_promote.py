"""should_promote: the pure champion/challenger rule (ties, margin, baseline, NaN, no champion)."""

from __future__ import annotations

import json
import math

import pytest

from registry.policy import Decision, ModelScore, Policy, should_promote

pytestmark = pytest.mark.unit

POLICY = Policy(margin=0.01, max_mase=1.0)
BASELINE = ModelScore(None, 1.0, 820.0, 1260.0, "persistence")
NAN = float("nan")


def challenger(mase: float, version: int = 5) -> ModelScore:
    return ModelScore(version, mase, 820.0 * mase, kind="torch")


def champion(mase: float, version: int = 3) -> ModelScore:
    return ModelScore(version, mase, 820.0 * mase, kind="torch")


def test_better_by_more_than_margin_is_promoted() -> None:
    decision = should_promote(challenger(0.90), champion(0.95), BASELINE, POLICY)
    assert decision.promote
    assert "0.9000 < champion v3 MASE 0.9500" in decision.reason


def test_tie_is_refused() -> None:
    decision = should_promote(challenger(0.95), champion(0.95), BASELINE, POLICY)
    assert not decision.promote
    assert "not below champion v3" in decision.reason


def test_tie_is_refused_even_with_zero_margin() -> None:
    assert not should_promote(
        challenger(0.95), champion(0.95), BASELINE, Policy(margin=0.0, max_mase=1.0)
    ).promote


@pytest.mark.parametrize(("mase", "promote"), [(0.945, False), (0.9399, True), (0.94, False)])
def test_margin_boundary(mase: float, promote: bool) -> None:
    """Better than the champion, but not by the margin (0.95 - 0.01 = 0.94): refused."""
    assert should_promote(challenger(mase), champion(0.95), BASELINE, POLICY).promote is promote


def test_worse_than_champion_is_refused() -> None:
    assert not should_promote(challenger(0.97), champion(0.95), BASELINE, POLICY).promote


def test_missing_champion_promotes_a_model_that_beats_persistence() -> None:
    decision = should_promote(challenger(0.98), None, BASELINE, POLICY)
    assert decision.promote
    assert decision.champion is None
    assert "no champion" in decision.reason


@pytest.mark.parametrize("mase", [1.0, 1.0001, 1.3])
def test_worse_than_or_equal_to_persistence_is_refused_without_champion(mase: float) -> None:
    decision = should_promote(challenger(mase), None, BASELINE, POLICY)
    assert not decision.promote
    assert "no better than persistence" in decision.reason


def test_persistence_gate_holds_even_when_champion_is_much_worse() -> None:
    """A challenger worse than persistence never wins, however bad the champion is."""
    decision = should_promote(challenger(1.05), champion(1.40), BASELINE, POLICY)
    assert not decision.promote
    assert "no better than persistence" in decision.reason


def test_persistence_champion_needs_the_margin_too() -> None:
    persistence = ModelScore(1, 1.0, 820.0, kind="persistence")
    assert not should_promote(challenger(0.995), persistence, BASELINE, POLICY).promote
    assert should_promote(challenger(0.985), persistence, BASELINE, POLICY).promote


def test_max_mase_is_relative_to_the_baseline_score() -> None:
    strict = Policy(margin=0.0, max_mase=0.9)
    assert not should_promote(challenger(0.92), None, BASELINE, strict).promote
    assert should_promote(challenger(0.88), None, BASELINE, strict).promote


@pytest.mark.parametrize("bad", [NAN, math.inf])
def test_nonfinite_challenger_is_refused(bad: float) -> None:
    decision = should_promote(challenger(bad), champion(0.95), BASELINE, POLICY)
    assert not decision.promote
    assert "not a usable score" in decision.reason


def test_nan_baseline_is_refused() -> None:
    decision = should_promote(challenger(0.5), None, ModelScore(None, NAN), POLICY)
    assert not decision.promote
    assert "no baseline" in decision.reason


def test_nan_champion_is_replaced_by_a_challenger_that_beats_persistence() -> None:
    decision = should_promote(challenger(0.97), champion(NAN), BASELINE, POLICY)
    assert decision.promote
    assert "broken" in decision.reason


def test_nan_champion_is_kept_when_challenger_does_not_beat_persistence() -> None:
    assert not should_promote(challenger(1.02), champion(NAN), BASELINE, POLICY).promote


def test_champion_is_not_promoted_over_itself() -> None:
    decision = should_promote(
        challenger(0.9, version=3), champion(0.9, version=3), BASELINE, POLICY
    )
    assert not decision.promote
    assert "already the champion" in decision.reason


def test_decision_records_rule_and_scores_as_json() -> None:
    decision = should_promote(challenger(NAN), champion(0.95), BASELINE, POLICY)
    record = json.loads(json.dumps(decision.to_dict(), allow_nan=False))  # NaN → null
    assert record["challenger"]["mase"] is None
    point = {
        "version": 3,
        "mase": 0.95,
        "mae": 779.0,
        "rmse": None,
        "kind": "torch",
        "trained_on": "",
    }
    assert {k: record["champion"][k] for k in point} == point
    assert record["champion"]["crps"] is None and "daily" not in record["champion"]  # MASE only
    assert record["baseline"]["mase"] == 1.0
    assert record["rule"] == POLICY.rule
    assert "champion MASE - 0.01" in record["rule"]
    assert isinstance(decision, Decision)


def test_policy_from_params() -> None:
    from core.params import RegistryParams

    params = RegistryParams(
        model_name="m",
        metric="mase",
        promote_margin=0.02,
        max_mase=0.9,
        alpha=0.1,
        coverage_tol=0.03,
    )
    policy = Policy.from_params(params)
    assert policy == Policy(margin=0.02, max_mase=0.9, metric="mase", alpha=0.1, coverage_tol=0.03)
    assert "- 0.02" in policy.rule and "0.9 x persistence" in policy.rule

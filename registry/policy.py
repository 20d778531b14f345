"""The promotion rule: pure data in, a Decision out (no MLflow, no I/O; unit-tested alone)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from core.params import RegistryParams
from forecasting.quantiles import DieboldMariano, diebold_mariano

NAN = float("nan")


Metric = Literal["crps", "mase"]


@dataclass(frozen=True)
class Policy:
    """Promotion thresholds from params.yaml `registry`.

    metric "mase" is the point-forecast rule (MASE below persistence and below the champion's
    minus an absolute margin); metric "crps" is the probabilistic rule: CRPS below the champion's
    by a relative margin and below the baseline's, a Diebold–Mariano test against the champion
    at level `alpha`, the 80% and 95% intervals covering within `coverage_tol` of nominal, and
    the median's MASE at most `max_mase`.
    """

    margin: float
    max_mase: float
    metric: Metric = "mase"
    alpha: float = 0.05
    coverage_tol: float = 0.05

    @classmethod
    def from_params(cls, params: RegistryParams) -> Policy:
        return cls(
            margin=params.promote_margin,
            max_mase=params.max_mase,
            metric=params.metric,
            alpha=params.alpha,
            coverage_tol=params.coverage_tol,
        )

    def describe(self) -> dict[str, Any]:
        """The thresholds, as recorded with every decision."""
        out: dict[str, Any] = {
            "metric": self.metric,
            "promote_margin": self.margin,
            "max_mase": self.max_mase,
        }
        if self.metric == "crps":
            out |= {"alpha": self.alpha, "coverage_tol": self.coverage_tol}
        return out

    @property
    def rule(self) -> str:
        """The rule in words, as recorded with every decision."""
        if self.metric == "mase":
            return (
                f"promote iff challenger MASE < {self.max_mase:g} x persistence MASE on the same "
                f"rows, and challenger MASE < champion MASE - {self.margin:g}"
            )
        return (
            f"promote iff, on the same rows: challenger CRPS < (1 - {self.margin:g}) x champion "
            f"CRPS and < baseline CRPS; a Diebold-Mariano test of its daily CRPS against the "
            f"champion's gives p < {self.alpha:g}; its 80% and 95% intervals cover within "
            f"{self.coverage_tol:g} of nominal; its median's MASE <= {self.max_mase:g}"
        )


@dataclass(frozen=True)
class ModelScore:
    """One model's re-score on the shared test rows (version None: not a registered version).

    `daily` holds the per-day loss of the primary metric (CRPS, else absolute error) for the
    Diebold–Mariano test; it is not part of the decision record.
    """

    version: int | None
    mase: float
    mae: float = NAN
    rmse: float = NAN
    kind: str = ""
    trained_on: str = ""  # the dataset version the model was fitted on (for the audit record)
    crps: float = NAN
    pinball: float = NAN
    coverage_80: float = NAN
    coverage_95: float = NAN
    width_80: float = NAN
    width_95: float = NAN
    daily: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def primary(self, metric: Metric) -> float:
        return self.crps if metric == "crps" else self.mase


@dataclass(frozen=True)
class Decision:
    """Whether to promote, why, and every score the rule looked at."""

    promote: bool
    reason: str
    rule: str
    challenger: ModelScore
    champion: ModelScore | None
    baseline: ModelScore
    dm: DieboldMariano | None = None  # the test the crps rule ran (None when it did not run)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes null, the daily losses stay out)."""

        def finite(value: Any) -> Any:
            return None if isinstance(value, float) and not math.isfinite(value) else value

        def clean(score: ModelScore | None) -> dict[str, Any] | None:
            if score is None:
                return None
            return {k: finite(v) for k, v in asdict(score).items() if k != "daily"}

        return {
            "promoted": self.promote,
            "reason": self.reason,
            "rule": self.rule,
            "challenger": clean(self.challenger),
            "champion": clean(self.champion),
            "baseline": clean(self.baseline),
            "diebold_mariano": None
            if self.dm is None
            else {k: finite(v) for k, v in asdict(self.dm).items()},
        }


def should_promote(
    challenger: ModelScore, champion: ModelScore | None, baseline: ModelScore, policy: Policy
) -> Decision:
    """The promotion rule of `policy.metric` (see Policy)."""
    if policy.metric == "crps":
        return _probabilistic_rule(challenger, champion, baseline, policy)
    return _mase_rule(challenger, champion, baseline, policy)


def _mase_rule(
    challenger: ModelScore, champion: ModelScore | None, baseline: ModelScore, policy: Policy
) -> Decision:
    """Promote iff the challenger beats persistence (max_mase) and the champion by the margin."""

    def decide(promote: bool, reason: str) -> Decision:
        return Decision(promote, reason, policy.rule, challenger, champion, baseline)

    c = challenger.mase
    if not math.isfinite(c):
        return decide(False, f"challenger MASE is {c}: not a usable score")
    if not math.isfinite(baseline.mase):
        return decide(
            False,
            f"persistence MASE is {baseline.mase} on these rows: no baseline to compare against",
        )
    bar = policy.max_mase * baseline.mase
    if c >= bar:
        return decide(
            False,
            f"challenger MASE {c:.4f} is not below {bar:.4f} "
            f"({policy.max_mase:g} x persistence): no better than persistence",
        )
    if champion is None:
        return decide(True, f"no champion; challenger MASE {c:.4f} beats persistence (< {bar:.4f})")
    if champion.version is not None and champion.version == challenger.version:
        return decide(False, f"v{challenger.version} is already the champion")
    if not math.isfinite(champion.mase):
        return decide(
            True,
            f"champion v{champion.version} scores MASE {champion.mase} (broken "
            f"forecasts); challenger MASE {c:.4f} beats persistence",
        )
    needed = champion.mase - policy.margin
    if c < needed:
        return decide(
            True,
            f"challenger MASE {c:.4f} < champion v{champion.version} MASE "
            f"{champion.mase:.4f} - margin {policy.margin:g} = {needed:.4f}",
        )
    return decide(
        False,
        f"challenger MASE {c:.4f} is not below champion v{champion.version} "
        f"MASE {champion.mase:.4f} - margin {policy.margin:g} = {needed:.4f}",
    )


def _probabilistic_rule(
    challenger: ModelScore, champion: ModelScore | None, baseline: ModelScore, policy: Policy
) -> Decision:
    """The four clauses of the crps rule, checked in order; the first that fails refuses."""
    dm: DieboldMariano | None = None

    def decide(promote: bool, reason: str) -> Decision:
        return Decision(promote, reason, policy.rule, challenger, champion, baseline, dm)

    c, base = challenger.crps, baseline.crps
    if not math.isfinite(c):
        return decide(False, f"challenger CRPS is {c}: not a usable score")
    if champion is not None and champion.version is not None:
        if champion.version == challenger.version:
            return decide(False, f"v{challenger.version} is already the champion")
    if not c < base:
        return decide(False, f"challenger CRPS ${c:.2f} is not below the baseline's ${base:.2f}")
    usable = champion is not None and math.isfinite(champion.crps) and len(champion.daily) > 0
    if champion is not None and usable:
        needed = (1 - policy.margin) * champion.crps
        if not c < needed:
            return decide(
                False,
                f"challenger CRPS ${c:.2f} is not below champion v{champion.version} CRPS "
                f"${champion.crps:.2f} x (1 - {policy.margin:g}) = ${needed:.2f}",
            )
    # Against the champion when it can be re-scored, else against the baseline.
    other = champion if champion is not None and usable else baseline
    dm = diebold_mariano(np.asarray(challenger.daily), np.asarray(other.daily))
    who = f"champion v{other.version}" if other is champion else "the baseline"
    if not dm.p_value < policy.alpha:
        return decide(
            False,
            f"a Diebold-Mariano test of daily CRPS against {who} gives p = {dm.p_value:.3g}, "
            f"not < {policy.alpha:g}: the gain may be noise",
        )
    for nominal, got in ((0.8, challenger.coverage_80), (0.95, challenger.coverage_95)):
        if not abs(got - nominal) <= policy.coverage_tol:
            return decide(
                False,
                f"its {nominal:.0%} interval covers {got:.1%} of days, not within "
                f"{policy.coverage_tol:g} of nominal: the bands are miscalibrated",
            )
    if not challenger.mase <= policy.max_mase:
        return decide(
            False,
            f"its median's MASE {challenger.mase:.4f} exceeds {policy.max_mase:g}: the point "
            "forecast is worse than persistence",
        )
    beaten = (
        f"champion v{champion.version} (${champion.crps:.2f})"
        if champion is not None and usable
        else "no usable champion"
    )
    return decide(
        True,
        f"challenger CRPS ${c:.2f} beats {beaten} and the baseline (${base:.2f}); DM p = "
        f"{dm.p_value:.3g} against {who}; coverage 80% {challenger.coverage_80:.1%}, 95% "
        f"{challenger.coverage_95:.1%}; median MASE {challenger.mase:.4f}",
    )


@dataclass(frozen=True)
class PromotionOutcome:
    """What a promotion did: the decision, the champion before and after, and its record run."""

    decision: Decision
    version: int
    champion_before: int | None
    champion_after: int | None
    attempts: int
    record_run_id: str

    def summary(self) -> dict[str, Any]:
        """metrics/promotion.json."""
        d = self.decision.to_dict()
        return {
            "promoted": self.decision.promote,
            "version": self.version,
            "champion_before": self.champion_before,
            "champion_after": self.champion_after,
            "challenger_mase": d["challenger"]["mase"],
            "champion_mase": (d["champion"] or {}).get("mase"),
            "baseline_mase": d["baseline"]["mase"],
            "challenger_crps": d["challenger"]["crps"],
            "champion_crps": (d["champion"] or {}).get("crps"),
            "baseline_crps": d["baseline"]["crps"],
            "dm_p_value": (d["diebold_mariano"] or {}).get("p_value"),
            "reason": self.decision.reason,
            "rule": self.decision.rule,
            "attempts": self.attempts,
            "record_run_id": self.record_run_id,
        }

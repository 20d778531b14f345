"""The promotion rule: pure data in, a Decision out (no MLflow, no I/O; unit-tested alone)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from pipelines.config import RegistryParams

NAN = float("nan")


@dataclass(frozen=True)
class Policy:
    """Promotion thresholds from params.yaml `registry`."""

    margin: float
    max_mase: float

    @classmethod
    def from_params(cls, params: RegistryParams) -> Policy:
        return cls(margin=params.promote_margin, max_mase=params.max_mase)

    def describe(self) -> dict[str, Any]:
        """The thresholds, as recorded with every decision."""
        return {"promote_margin": self.margin, "max_mase": self.max_mase}

    @property
    def rule(self) -> str:
        """The rule in words, as recorded with every decision."""
        return (
            f"promote iff challenger MASE < {self.max_mase:g} x persistence MASE on the same "
            f"rows, and challenger MASE < champion MASE - {self.margin:g}"
        )


@dataclass(frozen=True)
class ModelScore:
    """One model's re-score on the shared test rows (version None: not a registered version)."""

    version: int | None
    mase: float
    mae: float = NAN
    rmse: float = NAN
    kind: str = ""
    trained_on: str = ""  # the dataset version the model was fitted on (for the audit record)


@dataclass(frozen=True)
class Decision:
    """Whether to promote, why, and every score the rule looked at."""

    promote: bool
    reason: str
    rule: str
    challenger: ModelScore
    champion: ModelScore | None
    baseline: ModelScore

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes null)."""

        def clean(score: ModelScore | None) -> dict[str, Any] | None:
            if score is None:
                return None
            return {
                k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(score).items()
            }

        return {
            "promoted": self.promote,
            "reason": self.reason,
            "rule": self.rule,
            "challenger": clean(self.challenger),
            "champion": clean(self.champion),
            "baseline": clean(self.baseline),
        }


def should_promote(
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
            "reason": self.decision.reason,
            "rule": self.decision.rule,
            "attempts": self.attempts,
            "record_run_id": self.record_run_id,
        }

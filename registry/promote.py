"""Champion/challenger promotion: a pure rule, a fair re-score, a compare-and-set alias move.

`should_promote` decides from scores alone. `promote` re-scores the challenger and the current
champion on the same test rows, takes the registry lock (registry.lock), checks the champion is
still the version it scored (else re-scores, up to 3 times), records the decision (version tags +
a `promotion` run holding promotion/decision-<time>.json), moves the aliases and re-reads them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pipelines.config import RegistryParams
from registry.errors import (
    ConcurrentPromotionError,
    ModelLoadError,
    NothingToDoError,
    RegistryError,
)

if TYPE_CHECKING:
    from registry.scoring import EvalSet
    from registry.store import Registry

log = logging.getLogger(__name__)
NAN = float("nan")


@dataclass(frozen=True)
class Policy:
    """Promotion thresholds from params.yaml `registry`."""

    margin: float
    max_mase: float

    @classmethod
    def from_params(cls, params: RegistryParams) -> Policy:
        return cls(margin=params.promote_margin, max_mase=params.max_mase)

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


def actor() -> str:
    """Who made a decision: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def score_version(reg: Registry, version: int, ev: EvalSet) -> ModelScore:
    """Load one registered version and score it on the evaluation rows."""
    from registry.scoring import score_on_split
    from registry.store import load_python_model

    py = load_python_model(reg, version)
    scores = score_on_split(py, ev)
    kind = "persistence" if py.config.get("kind") == "persistence" else "torch"
    return ModelScore(
        version,
        scores["mase"],
        scores["mae"],
        scores["rmse"],
        kind,
        str(py.config.get("data_version", "")),
    )


def promote(
    reg: Registry,
    ev: EvalSet,
    policy: Policy,
    version: int | str | None = None,
    *,
    on_scored: Callable[[int], None] | None = None,
    max_attempts: int = 3,
) -> PromotionOutcome:
    """Re-score `version` (default: the challenger) against the champion; CAS-move `champion`."""
    from registry.aliases import commit_decision
    from registry.lineage import check_lineage
    from registry.scoring import persistence_scores
    from registry.store import CHALLENGER, CHAMPION, aliases, get_version

    if version is None and CHALLENGER not in aliases(reg):
        raise NothingToDoError(
            f"{reg.name} has no {CHALLENGER!r} alias: register a sweep's best "
            "run first, or pass --version N"
        )
    mv = get_version(reg, CHALLENGER if version is None else version)
    number = int(mv.version)
    check_lineage(reg.name, number, dict(mv.tags))
    if aliases(reg).get(CHAMPION) == number:
        raise NothingToDoError(f"{reg.name} v{number} is already the champion")
    challenger = score_version(reg, number, ev)
    base = persistence_scores(ev)
    baseline = ModelScore(None, base["mase"], base["mae"], base["rmse"], "persistence")
    scored: dict[int, ModelScore] = {number: challenger}
    for attempt in range(1, max_attempts + 1):
        before = aliases(reg).get(CHAMPION)
        if before == number:  # a concurrent promotion of this very version won
            raise NothingToDoError(f"{reg.name} v{number} became the champion meanwhile")
        if before is not None and before not in scored:
            try:
                scored[before] = score_version(reg, before, ev)
            except ModelLoadError as exc:
                raise RegistryError(
                    f"the current champion fails to load, so nothing can be "
                    f"compared with it: {exc}; `coinflow registry rollback` "
                    "restores the previous champion"
                ) from exc
        champion = None if before is None else scored[before]
        decision = should_promote(challenger, champion, baseline, policy)
        if on_scored is not None:
            on_scored(attempt)
        outcome = commit_decision(reg, ev, policy, decision, number, before, attempt)
        if outcome is not None:
            return outcome
        log.warning("champion moved while v%d was scored (attempt %d): re-scoring", number, attempt)
    raise ConcurrentPromotionError(
        f"the champion of {reg.name} changed {max_attempts} times "
        f"while v{number} was being scored; run the promotion again"
    )


def main() -> None:
    """`python -m registry.promote` (dvc stage `promote`): register the sweep's best, promote it."""
    from pipelines.config import load_params
    from pipelines.paths import METRICS_DIR
    from registry.register import ensure_champion, register_run
    from registry.scoring import load_eval_set
    from registry.store import CHAMPION, aliases, open_registry

    params, sweep_json = load_params(), METRICS_DIR / "sweep.json"
    sweep = json.loads(sweep_json.read_text()) if sweep_json.is_file() else {}
    if not sweep.get("best_run_id"):
        raise RegistryError(f"{sweep_json} is missing or names no best_run_id: run the sweep")
    reg = open_registry(params.registry.model_name)
    ev = load_eval_set()
    ensure_champion(reg, ev)  # an empty registry starts with persistence as champion
    version = register_run(reg, sweep["best_run_id"], sweep_parent_id=sweep.get("parent_run_id"))
    if aliases(reg).get(CHAMPION) == version:  # a re-run after this very run was promoted
        summary = {
            "promoted": False,
            "version": version,
            "champion_before": version,
            "champion_after": version,
            "reason": f"v{version} is already the champion",
        }
    else:
        summary = promote(reg, ev, Policy.from_params(params.registry), version).summary()
    (METRICS_DIR / "promotion.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("%s v%d: %s", reg.name, version, summary["reason"])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        main()
    except RegistryError as err:
        log.error("%s", err)
        raise SystemExit(1) from err

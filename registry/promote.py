"""Champion/challenger promotion: a fair re-score, then the pure rule, then a guarded move.

`promote` re-scores the challenger and the current champion on the same test rows, each as it
would have been served (registry.scoring: its shipped calibration state advanced with the
platform's rows, then day by day over the test days), asks registry.policy.should_promote,
and hands the decision to registry.aliases.commit_decision, which applies it under the registry
lock only if the champion is still the version it scored (else this re-scores, up to 3 times).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from registry.errors import (
    ConcurrentPromotionError,
    ModelLoadError,
    NothingToDoError,
    RegistryError,
)
from registry.policy import ModelScore, Policy, PromotionOutcome, should_promote

if TYPE_CHECKING:
    from registry.scoring import EvalSet
    from registry.store import Registry
log = logging.getLogger(__name__)


def score_version(registry: Registry, version: int, eval_set: EvalSet) -> ModelScore:
    """Load one registered version and score it on the evaluation rows, as served."""
    from registry.scoring import score_model
    from registry.store import load_packaged

    return score_model(load_packaged(registry, version), eval_set, version)


def promote(
    registry: Registry,
    eval_set: EvalSet,
    policy: Policy,
    version: int | str | None = None,
    *,
    on_scored: Callable[[int], None] | None = None,
    max_attempts: int = 3,
) -> PromotionOutcome:
    """Re-score `version` (default: the challenger) against the champion; CAS-move `champion`."""
    from registry.aliases import commit_decision, repair_pending
    from registry.lineage import check_lineage
    from registry.scoring import baseline_score
    from registry.store import CHALLENGER, CHAMPION, aliases, get_version

    repair_pending(registry)  # a promotion killed mid-way is completed (or failed) before anything
    if version is None and CHALLENGER not in aliases(registry):
        raise NothingToDoError(
            f"{registry.name} has no {CHALLENGER!r} alias: register a sweep's best "
            "run first, or pass --version N"
        )
    model_version = get_version(registry, CHALLENGER if version is None else version)
    number = int(model_version.version)
    check_lineage(registry.name, number, dict(model_version.tags))
    if aliases(registry).get(CHAMPION) == number:
        raise NothingToDoError(f"{registry.name} v{number} is already the champion")
    challenger = score_version(registry, number, eval_set)
    baseline = baseline_score(eval_set)
    scored: dict[int, ModelScore] = {number: challenger}
    for attempt in range(1, max_attempts + 1):
        before = aliases(registry).get(CHAMPION)
        if before == number:  # a concurrent promotion of this very version won
            raise NothingToDoError(f"{registry.name} v{number} became the champion meanwhile")
        if before is not None and before not in scored:
            try:
                scored[before] = score_version(registry, before, eval_set)
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
        outcome = commit_decision(registry, eval_set, policy, decision, number, before, attempt)
        if outcome is not None:
            return outcome
        log.warning("champion moved while v%d was scored (attempt %d): re-scoring", number, attempt)
    raise ConcurrentPromotionError(
        f"the champion of {registry.name} changed {max_attempts} times "
        f"while v{number} was being scored; run the promotion again"
    )

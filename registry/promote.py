"""Champion/challenger promotion: a fair re-score, then the pure rule, then a guarded move.

`promote` re-scores the challenger and the current champion on the same test rows, asks
registry.policy.should_promote, and hands the decision to registry.aliases.commit_decision,
which applies it under the registry lock only if the champion is still the version it scored
(else this re-scores, up to 3 times).
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


def score_version(reg: Registry, version: int, ev: EvalSet) -> ModelScore:
    """Load one registered version and score it on the evaluation rows."""
    from registry.scoring import score_model
    from registry.store import load_python_model

    return score_model(load_python_model(reg, version), ev, version)


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
    from registry.aliases import commit_decision, repair_pending
    from registry.lineage import check_lineage
    from registry.scoring import baseline_score
    from registry.store import CHALLENGER, CHAMPION, aliases, get_version

    repair_pending(reg)  # a promotion killed mid-way is completed (or failed) before anything
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
    baseline = baseline_score(ev)
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

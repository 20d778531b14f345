"""Guarded alias moves: commit a promotion decision (compare-and-set) and roll back a champion.

Every move happens inside RegistryLock: re-read the aliases, compare with what the caller saw,
write the record run first (so a failure leaves aliases as they were), move, re-read to verify.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from registry import lineage
from registry.errors import ConcurrentPromotionError, NothingToDoError
from registry.lock import RegistryLock
from registry.promote import Decision, Policy, PromotionOutcome, actor
from registry.scoring import EvalSet
from registry.store import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    Registry,
    aliases,
    get_version,
    load_python_model,
    now_iso,
    record_event,
)

log = logging.getLogger(__name__)


def _set_tags(reg: Registry, version: int, prefix: str, values: dict[str, Any]) -> None:
    for key, value in values.items():
        text = "" if value is None else str(value)
        reg.client.set_model_version_tag(reg.name, str(version), prefix + key, text)


def _verify(reg: Registry, expected: dict[str, int | None]) -> None:
    now = aliases(reg)
    wrong = {a: now.get(a) for a, v in expected.items() if now.get(a) != v}
    if wrong:
        raise ConcurrentPromotionError(
            f"aliases of {reg.name} are {wrong} right after moving "
            f"them to {expected}: someone moved them without the lock"
        )


def commit_decision(
    reg: Registry,
    ev: EvalSet,
    policy: Policy,
    decision: Decision,
    version: int,
    champion_seen: int | None,
    attempt: int,
) -> PromotionOutcome | None:
    """Under the lock: if the champion is still `champion_seen`, record and apply the decision.

    Returns None (nothing written) when the champion moved since it was scored.
    """
    with RegistryLock(reg.client, reg.name) as lock:
        current = aliases(reg)
        if current.get(CHAMPION) != champion_seen:
            return None
        after = version if decision.promote else champion_seen
        action = "promote" if decision.promote else "refuse"
        record = {
            "action": action,
            "model_name": reg.name,
            "version": version,
            "run_id": get_version(reg, version).tags.get(lineage.RUN_ID),
            "decided_at": now_iso(),
            "actor": actor(),
            "attempt": attempt,
            "champion_before": champion_seen,
            "champion_after": after,
            "policy": {"promote_margin": policy.margin, "max_mase": policy.max_mase},
            "eval": ev.describe(),
            **decision.to_dict(),
        }
        record_run = record_event(reg, action, version, record)
        lock.verify()
        if decision.promote:
            if champion_seen is not None:
                reg.client.set_registered_model_alias(reg.name, PREVIOUS, str(champion_seen))
            reg.client.set_registered_model_alias(reg.name, CHAMPION, str(version))
            if current.get(CHALLENGER) == version:
                reg.client.delete_registered_model_alias(reg.name, CHALLENGER)
        champ = decision.champion
        _set_tags(
            reg,
            version,
            lineage.DECISION,
            {
                "action": action,
                "promoted": str(decision.promote).lower(),
                "reason": decision.reason,
                "rule": decision.rule,
                "at": record["decided_at"],
                "record_run_id": record_run,
                "challenger_mase": f"{decision.challenger.mase:.6g}",
                "champion_version": champion_seen,
                "champion_mase": None if champ is None else f"{champ.mase:.6g}",
                "baseline_mase": f"{decision.baseline.mase:.6g}",
                "baseline_mae": f"{decision.baseline.mae:.6g}",
                "data_version": ev.version,
                "dvc_md5": ev.md5,
                "replaced": champion_seen if decision.promote else None,
            },
        )
        expected = {CHAMPION: after}
        if decision.promote and champion_seen is not None:
            expected[PREVIOUS] = champion_seen
        _verify(reg, expected)
    return PromotionOutcome(decision, version, champion_seen, after, attempt, record_run)


@dataclass(frozen=True)
class RollbackOutcome:
    """Champion moved back: from which version to which, and the record run."""

    from_version: int
    to_version: int
    record_run_id: str


def rollback(reg: Registry, reason: str = "manual rollback") -> RollbackOutcome:
    """Champion back to previous-champion (which must still load); the two aliases swap."""
    seen = aliases(reg)
    if CHAMPION not in seen or PREVIOUS not in seen:
        missing = CHAMPION if CHAMPION not in seen else PREVIOUS
        raise NothingToDoError(f"{reg.name} has no {missing!r} alias: nothing to roll back to")
    current, previous = seen[CHAMPION], seen[PREVIOUS]
    if current == previous:
        raise NothingToDoError(f"{reg.name} champion and previous-champion are both v{current}")
    lineage.require_lineage_tags(reg.name, previous, dict(get_version(reg, previous).tags))
    load_python_model(reg, previous)  # refuse to restore a version that no longer loads
    with RegistryLock(reg.client, reg.name) as lock:
        now = aliases(reg)
        if (now.get(CHAMPION), now.get(PREVIOUS)) != (current, previous):
            raise ConcurrentPromotionError(
                f"aliases of {reg.name} moved during the rollback "
                f"(now {now}); nothing was changed, run it again"
            )
        record = {
            "action": "rollback",
            "model_name": reg.name,
            "version": previous,
            "from_version": current,
            "to_version": previous,
            "reason": reason,
            "decided_at": now_iso(),
            "actor": actor(),
        }
        record_run = record_event(reg, "rollback", previous, record)
        lock.verify()
        reg.client.set_registered_model_alias(reg.name, CHAMPION, str(previous))
        reg.client.set_registered_model_alias(reg.name, PREVIOUS, str(current))
        _set_tags(
            reg,
            previous,
            "coinflow.rollback.",
            {
                "from": current,
                "at": record["decided_at"],
                "reason": reason,
                "record_run_id": record_run,
            },
        )
        _verify(reg, {CHAMPION: previous, PREVIOUS: current})
    log.info("%s: champion rolled back v%d -> v%d", reg.name, current, previous)
    return RollbackOutcome(current, previous, record_run)

"""Guarded alias moves: apply a promotion decision (compare-and-set) or roll a champion back.

Every move happens inside RegistryLock and follows one protocol, so that an audit record is
complete or absent whatever moment the process dies at:

1. re-read the aliases and compare with what the caller scored against;
2. write the decision record: a RUNNING `promotion` run holding the JSON;
3. move the aliases;
4. write the version's description and `coinflow.decision` tag, then end the record FINISHED,
   then point the version's `coinflow.decision_run` tag at it (readers follow that pointer);
5. re-read the aliases to verify.

`repair_records` runs first under every lock: a record left RUNNING by a dead process is
finished (the aliases show its move happened) or failed (they show it did not).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core import tags
from registry.description import OUTCOME, decision_markdown
from registry.errors import ConcurrentPromotionError, NothingToDoError
from registry.lock import RegistryLock
from registry.policy import Decision, Policy, PromotionOutcome
from registry.records import begin_record, decision_time, read_record, record_runs
from registry.store import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    Registry,
    actor,
    aliases,
    get_version,
    load_packaged,
)

if TYPE_CHECKING:
    from registry.scoring import EvalSet

log = logging.getLogger(__name__)


def _verify(registry: Registry, expected: dict[str, int | None]) -> None:
    now = aliases(registry)
    wrong = {a: now.get(a) for a, v in expected.items() if now.get(a) != v}
    if wrong:
        raise ConcurrentPromotionError(
            f"aliases of {registry.name} are {wrong} right after moving "
            f"them to {expected}: someone moved them without the lock"
        )


def expected_aliases(record: dict[str, Any]) -> dict[str, int | None]:
    """The aliases a record's decision leaves behind (what `_verify` and repairs check)."""
    after, before = record.get("champion_after"), record.get("champion_before")
    expected: dict[str, int | None] = {CHAMPION: after}
    if after != before and before is not None:
        expected[PREVIOUS] = before
    return expected


def _apply(registry: Registry, record: dict[str, Any], record_run: str) -> None:
    """Steps 3-4: move the aliases the record names, describe the version, finish the record."""
    version, action = int(record["version"]), str(record["action"])
    before, after = record.get("champion_before"), record.get("champion_after")
    if after != before:
        if before is not None:
            registry.client.set_registered_model_alias(registry.name, PREVIOUS, str(before))
        registry.client.set_registered_model_alias(registry.name, CHAMPION, str(after))
        if aliases(registry).get(CHALLENGER) == after:
            registry.client.delete_registered_model_alias(registry.name, CHALLENGER)
    _describe(registry, version, action, record, record_run)


def _describe(
    registry: Registry, version: int, action: str, record: dict[str, Any], run: str
) -> None:
    registry.client.update_model_version(
        registry.name, str(version), description=decision_markdown(record, run)
    )
    registry.client.set_model_version_tag(
        registry.name, str(version), tags.DECISION, OUTCOME[action]
    )
    registry.client.set_terminated(run, "FINISHED")
    registry.client.set_model_version_tag(registry.name, str(version), tags.DECISION_RUN, run)


def apply_record(
    registry: Registry, lock: RegistryLock, record: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Under the lock: write the record, apply it, verify; returns (record run id, record)."""
    record = {**record, "decided_at": decision_time(), "actor": actor()}
    run = begin_record(registry, str(record["action"]), int(record["version"]), record)
    lock.verify()
    _apply(registry, record, run)
    _verify(registry, expected_aliases(record))
    return run, record


def repair_records(registry: Registry) -> list[str]:
    """Finish or fail the records a dead process left RUNNING (call under the lock)."""
    repaired = []
    for run in reversed(record_runs(registry, status="RUNNING")):  # oldest first
        run_id = run.info.run_id
        try:
            record = read_record(registry, run_id)
        except Exception:  # killed before its JSON was written: nothing was applied
            record = {}
        if record.get("action") == "alert":  # moves nothing: a written alert is complete
            registry.client.set_terminated(run_id, "FINISHED")
            repaired.append(run_id)
            continue
        now = aliases(registry)
        applied = bool(record) and all(now.get(a) == v for a, v in expected_aliases(record).items())
        if applied:
            _describe(registry, int(record["version"]), str(record["action"]), record, run_id)
            registry.client.set_tag(run_id, tags.REPAIRED, "completed after its writer died")
            log.warning(
                "record %s (%s) completed: its writer died after moving aliases",
                run_id,
                record.get("action"),
            )
        else:
            reason = "interrupted before its aliases moved: this decision never took effect"
            registry.client.set_tag(run_id, tags.FAILURE, reason)
            registry.client.set_terminated(run_id, "FAILED")
            log.warning("record %s failed: %s", run_id, reason)
        repaired.append(run_id)
    return repaired


def repair_pending(registry: Registry) -> list[str]:
    """repair_records under the lock, only when a record was left RUNNING (one search else):
    every entry point runs it, so "nothing to do" never leaves a dead writer's record behind."""
    if not record_runs(registry, status="RUNNING", limit=1):
        return []
    with RegistryLock(registry.client, registry.name):
        return repair_records(registry)


def commit_decision(
    registry: Registry,
    eval_set: EvalSet,
    policy: Policy,
    decision: Decision,
    version: int,
    champion_seen: int | None,
    attempt: int,
) -> PromotionOutcome | None:
    """Under the lock: if the champion is still `champion_seen`, record and apply the decision.

    Returns None (nothing written) when the champion moved since it was scored.
    """
    with RegistryLock(registry.client, registry.name) as lock:
        repair_records(registry)
        if aliases(registry).get(CHAMPION) != champion_seen:
            return None
        record = {
            "action": "promote" if decision.promote else "refuse",
            "model_name": registry.name,
            "version": version,
            "run_id": get_version(registry, version).run_id,
            "attempt": attempt,
            "champion_before": champion_seen,
            "champion_after": version if decision.promote else champion_seen,
            "policy": policy.describe(),
            "eval": eval_set.describe(),
            **decision.to_dict(),
        }
        run, record = apply_record(registry, lock, record)
    return PromotionOutcome(
        decision, version, champion_seen, record["champion_after"], attempt, run
    )


@dataclass(frozen=True)
class RollbackOutcome:
    """Champion moved back: from which version to which, and the record run."""

    from_version: int
    to_version: int
    record_run_id: str


def rollback(registry: Registry, reason: str = "manual rollback") -> RollbackOutcome:
    """Champion back to previous-champion (which must still load); the two aliases swap."""
    from registry.lineage import require_lineage_tags

    seen = aliases(registry)
    if CHAMPION not in seen or PREVIOUS not in seen:
        missing = CHAMPION if CHAMPION not in seen else PREVIOUS
        raise NothingToDoError(f"{registry.name} has no {missing!r} alias: nothing to roll back to")
    current, previous = seen[CHAMPION], seen[PREVIOUS]
    if current == previous:
        raise NothingToDoError(
            f"{registry.name} champion and previous-champion are both v{current}"
        )
    require_lineage_tags(registry.name, previous, dict(get_version(registry, previous).tags))
    load_packaged(registry, previous)  # refuse to restore a version that no longer loads
    with RegistryLock(registry.client, registry.name) as lock:
        repair_records(registry)
        now = aliases(registry)
        if (now.get(CHAMPION), now.get(PREVIOUS)) != (current, previous):
            raise ConcurrentPromotionError(
                f"aliases of {registry.name} moved during the rollback "
                f"(now {now}); nothing was changed, run it again"
            )
        record = {
            "action": "rollback",
            "model_name": registry.name,
            "version": previous,
            "champion_before": current,
            "champion_after": previous,
            "reason": reason,
        }
        run, _ = apply_record(registry, lock, record)
    log.info("%s: champion rolled back v%d -> v%d", registry.name, current, previous)
    return RollbackOutcome(current, previous, run)


def record_alert(registry: Registry, version: int, alert: dict[str, Any]) -> str:
    """A monitoring alert on `version`, in the same audit trail as promotions (a finished
    `promotion` record run with action `alert`) and as its `coinflow.live.alert` tag. Alerts
    move no alias and leave the version's decision pointer on its last promotion decision."""
    record = {
        **alert,
        "action": "alert",
        "model_name": registry.name,
        "version": version,
        "champion_before": version,
        "champion_after": version,
        "decided_at": decision_time(),
        "actor": actor(),
    }
    run = begin_record(registry, "alert", version, record)
    registry.client.set_terminated(run, "FINISHED")
    text = f"{record['decided_at']}: {alert.get('reason', '')}"[:5000]
    registry.client.set_model_version_tag(registry.name, str(version), tags.LIVE_ALERT, text)
    log.warning("%s v%d: monitoring alert: %s", registry.name, version, alert.get("reason"))
    return run

"""Decision records: `promotion` runs holding a decision's JSON, the registry's audit trail.

A record is RUNNING while its decision is being applied and FINISHED once it is (see
registry.aliases); a version's `coinflow.decision_run` tag points at its latest applied one.

Records live in their own experiment, `<training experiment>-decisions` (created with the first
record), so the training experiment lists training runs and sweeps only; records an older
coinflow wrote into the training experiment are still found (`record_runs` searches both).

A decision is dated when it is taken: by the wall clock, or, inside `decided_on(day)`, on that
day (a replay's simulated day: `coinflow simulate` runs the same promote, rollback and alert code
on past days). The record's `decided_at` and its run's start time both carry that date, so the
audit trail, the Live tab's promotion marks and "since promotion" windows all read one date.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import tempfile
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import tags
from registry.description import OUTCOME
from registry.errors import UnknownVersionError
from registry.store import Registry, get_version, mlflow_call, now_iso

if TYPE_CHECKING:
    from mlflow.entities import Run


@dataclass
class _DecisionDay:
    day: dt.date
    taken: int = 0  # decisions dated so far: each is a millisecond after the one before


_decision_day: ContextVar[_DecisionDay | None] = ContextVar("coinflow_decision_day", default=None)


@contextlib.contextmanager
def decided_on(day: dt.date) -> Iterator[None]:
    """Decisions taken inside (promotions, rollbacks, alerts) are dated `day`, not the wall
    clock: a replay's simulated day."""
    token = _decision_day.set(_DecisionDay(day))
    try:
        yield
    finally:
        _decision_day.reset(token)


def decision_time() -> str:
    """When a decision taken now is dated (ISO-8601 UTC, milliseconds): the wall clock, or inside
    `decided_on(day)` that day, in the order its decisions are taken."""
    clock = _decision_day.get()
    if clock is None:
        return now_iso()
    clock.taken += 1
    midnight = dt.datetime.combine(clock.day, dt.time(), dt.UTC)
    return (midnight + dt.timedelta(milliseconds=clock.taken)).isoformat(timespec="milliseconds")


DECISIONS_SUFFIX = "-decisions"  # the records' experiment: the training experiment's name + this
DECISIONS_NOTE = (
    "coinflow's audit trail: one run per registry decision (first-champion, promote, refuse, "
    "rollback, alert), its JSON under `promotion/`. Training runs and sweeps are in `{training}`."
)


def decisions_experiment(registry: Registry, create: bool = False) -> str | None:
    """The id of the experiment holding this store's decision records (None when it does not
    exist yet and `create` is False, or the handle names no training experiment)."""
    from core.tracking import create_experiment_once

    if registry.experiment_id is None:
        return None
    client = registry.client
    training = client.get_experiment(registry.experiment_id)
    name = f"{training.name}{DECISIONS_SUFFIX}"
    found = client.get_experiment_by_name(name)
    if found is not None and found.lifecycle_stage == "active":
        return str(found.experiment_id)
    if not create:
        return None
    if found is not None:  # deleted in the UI: records must still go somewhere visible
        client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)
    # An embedded store keeps the records' artifacts beside the training runs' (a folder we
    # name); a tracking server chooses its own artifact location.
    location = training.artifact_location
    return create_experiment_once(
        client,
        name,
        artifact_location=location if location.startswith("file:") else None,
        tags={"mlflow.note.content": DECISIONS_NOTE.format(training=training.name)},
    )


def begin_record(registry: Registry, action: str, version: int, record: dict[str, Any]) -> str:
    """A RUNNING `promotion` run holding the decision JSON: the decision is being applied. The
    run starts when the decision is dated (`decided_at`), so runs sort in decision order."""
    experiment = decisions_experiment(registry, create=True)
    if experiment is None:
        raise ValueError("decision records need a registry opened with open_registry()")
    decided = str(record.get("decided_at") or decision_time())
    stamp = decided.replace(":", "").replace("+0000", "Z")
    run = registry.client.create_run(
        experiment,
        start_time=int(dt.datetime.fromisoformat(decided).timestamp() * 1000),
        run_name=f"{action}-{registry.name}-v{version}",
        tags={
            tags.KIND: tags.RECORD_KIND,
            tags.ACTION: action,
            tags.MODEL_NAME: registry.name,
            tags.MODEL_VERSION: str(version),
        },
    )
    run_id = str(run.info.run_id)
    try:
        registry.client.log_dict(run_id, record, f"promotion/decision-{stamp}.json")
        scores = {
            f"{role}_{k}": float(v)
            for role in ("challenger", "champion", "baseline")
            for k, v in (record.get(role) or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        if scores:
            registry.client.log_batch(run_id, metrics=_metrics(scores))
    except Exception:
        registry.client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def _metrics(values: dict[str, float]) -> list[Any]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, v, now, 0) for k, v in values.items() if math.isfinite(v)]


def read_record(registry: Registry, run_id: str) -> dict[str, Any]:
    """The decision JSON of a record run (through the handle's own store, not MLflow's global)."""
    files = mlflow_call(
        f"listing record run {run_id}",
        lambda: registry.client.list_artifacts(run_id, "promotion"),
        lambda _: UnknownVersionError(f"no record run {run_id}"),
    )
    if not files:
        raise UnknownVersionError(f"run {run_id} holds no decision record")
    with tempfile.TemporaryDirectory(prefix="coinflow-record-") as tmp:
        local = registry.client.download_artifacts(run_id, files[-1].path, tmp)
        return dict(json.loads(Path(local).read_text()))


def latest_decision(registry: Registry, version: int | str) -> dict[str, Any] | None:
    """The applied decision a version's tags point at (its record JSON), None when none is."""
    model_version = get_version(registry, version)
    run_id = (model_version.tags or {}).get(tags.DECISION_RUN)
    if not run_id:
        return None
    return {**read_record(registry, run_id), "record_run_id": run_id}


def record_runs(registry: Registry, status: str | None = None, limit: int = 200) -> list[Run]:
    """This model's decision record runs, newest first (optionally of one status): in the
    decisions experiment and, for records written before it existed, the training experiment;
    a handle naming no experiment (the API's) searches every experiment."""
    where = (
        f"tags.`{tags.KIND}` = '{tags.RECORD_KIND}' "
        f"and tags.`{tags.MODEL_NAME}` = '{registry.name}'"
    )
    if status:
        where += f" and attributes.status = '{status}'"
    if registry.experiment_id is not None:
        decisions = decisions_experiment(registry)
        experiments = [registry.experiment_id, *([decisions] if decisions else [])]
    else:
        experiments = [e.experiment_id for e in registry.client.search_experiments()]
    found: list[Run] = registry.client.search_runs(
        experiments, where, order_by=["attributes.start_time DESC"], max_results=limit
    )
    return found


# Decision-record actions that move @champion (refuse and alert records move nothing).
CHAMPION_MOVES = ("first-champion", "code-upgrade", "promote", "rollback")


def alias_moves(registry: Registry, limit: int = 200) -> list[dict[str, Any]]:
    """The champion's moves among the model's newest `limit` decision records, oldest first:
    finished records only (a FAILED one never took effect, a RUNNING one is still moving)."""
    moves = [
        {
            "at": dt.datetime.fromtimestamp(run.info.start_time / 1000, tz=dt.UTC),
            "action": run.data.tags.get(tags.ACTION),
            "version": int(run.data.tags[tags.MODEL_VERSION]),
            "record_run_id": run.info.run_id,
        }
        for run in record_runs(registry, status="FINISHED", limit=limit)
        if run.data.tags.get(tags.ACTION) in CHAMPION_MOVES
        and run.data.tags.get(tags.MODEL_VERSION)
    ]
    return moves[::-1]


SCORE_FIELDS = ("mase", "crps", "coverage_80", "coverage_95", "mae", "rmse")


def decision_view(record: dict[str, Any]) -> dict[str, Any]:
    """A decision record as the API shows it: what happened, when, by which rule, why, and the
    scores the rule compared (the daily losses and the policy's internals left out)."""
    action = str(record.get("action", ""))
    dm = record.get("diebold_mariano") or {}
    return {
        "action": action,
        "outcome": OUTCOME.get(action, action),
        "version": record.get("version"),
        "decided_at": record.get("decided_at"),
        "actor": record.get("actor"),
        "reason": str(record.get("reason", "")),
        "rule": record.get("rule"),
        "champion_before": record.get("champion_before"),
        "champion_after": record.get("champion_after"),
        "eval": record.get("eval"),
        "scores": [
            {
                "role": role,
                "version": score.get("version"),
                "kind": score.get("kind"),
                **{k: score.get(k) for k in SCORE_FIELDS},
            }
            for role in ("challenger", "champion", "baseline")
            if isinstance(score := record.get(role), dict)
        ],
        "dm_p_value": dm.get("p_value"),
        "record_run_id": record.get("record_run_id"),
    }

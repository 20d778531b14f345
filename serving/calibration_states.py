"""The calibration state store: each served version's adaptive calibrator, as `coinflow monitor
score` advanced it from the platform's rows, in the prediction log's database.

A state is written once and never changed (table `calibration_states`): which version, as of
which day (the last realised close folded in), how many updates, its digest, the state itself as
the version's kernel serialises it (levels, multipliers, step: `CalibrationState.to_dict`), the
md5 of the platform rows it learned from and when it was written. The API serves each version
with its newest state (re-read on the loop that refreshes the aliases) and falls back to the
state the version shipped with; every answer names the state it used, and `coinflow monitor
replay` finds it again here by its digest.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from core.errors import CoinflowError
from serving.prediction_log import calibration_states as table

if TYPE_CHECKING:
    from forecasting.calibration import CalibrationState
    from forecasting.packaged import PackagedModel


class StateError(CoinflowError, ValueError):
    """A stored calibration state that does not read back as written (its digest differs)."""


@dataclass(frozen=True)
class StoredState:
    """A calibration state as the store holds it: the kernel's dict and its digest."""

    state: dict[str, Any]
    digest: str


def read_state(py: PackagedModel, stored: StoredState) -> CalibrationState:
    """A stored state as the version's own kernel reads it, checked against its digest."""
    state = py.load_state(stored.state)
    if state.digest() != stored.digest:
        raise StateError(
            f"a stored calibration state of {stored.digest} reads back as {state.digest()}: "
            "it was altered after it was written"
        )
    return state


def _missing_table(exc: sa.exc.DBAPIError) -> bool:
    """A log whose writer has not migrated it yet: no state is stored."""
    text = str(exc).lower()
    return "no such table" in text or "does not exist" in text


def newest(engine: sa.Engine, model_name: str, versions: list[int]) -> dict[int, StoredState]:
    """version → its newest stored state, for those of `versions` that have one."""
    if not versions:
        return {}
    latest = (
        sa.select(table.c.version, sa.func.max(table.c.id).label("id"))
        .where(table.c.model_name == model_name, table.c.version.in_(versions))
        .group_by(table.c.version)
        .subquery()
    )
    query = sa.select(table.c.version, table.c.state, table.c.digest).join(
        latest, latest.c.id == table.c.id
    )
    try:
        with engine.connect() as connection:
            rows = connection.execute(query).all()
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
        if not _missing_table(exc):
            raise
        return {}
    return {int(version): StoredState(dict(state), digest) for version, state, digest in rows}


def by_digest(engine: sa.Engine, model_name: str, version: int, digest: str) -> StoredState | None:
    """The stored state of `version` with this digest (None: none was stored)."""
    query = sa.select(table.c.state).where(
        table.c.model_name == model_name, table.c.version == version, table.c.digest == digest
    )
    with engine.connect() as connection:
        state = connection.execute(query).scalar_one_or_none()
    return None if state is None else StoredState(dict(state), digest)


def history(engine: sa.Engine, model_name: str, version: int) -> list[dict[str, Any]]:
    """Every stored state of a version, oldest first (the audit trail of its calibration)."""
    query = (
        table.select()
        .where(table.c.model_name == model_name, table.c.version == version)
        .order_by(table.c.id)
    )
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings().all()]


def store(
    engine: sa.Engine,
    model_name: str,
    version: int,
    state: dict[str, Any],
    digest: str,
    data_md5: str,
) -> bool:
    """Write a new state of `version` (its kernel's dict and digest); False when that very state
    is stored already (scoring the same data twice writes nothing)."""
    row = {
        "model_name": model_name,
        "version": version,
        "as_of": dt.date.fromisoformat(str(state["as_of"])),
        "updates": int(state["updates"]),
        "digest": digest,
        "state": state,
        "data_md5": data_md5,
        "written_at": dt.datetime.now(dt.UTC),
    }
    try:
        with engine.begin() as connection:
            connection.execute(table.insert(), [row])
    except sa.exc.IntegrityError:  # the same state, written by this or a concurrent scorer
        return False
    return True

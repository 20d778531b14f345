"""The replay's plan and its private workspace: a project root with its own stores.

The workspace holds params.yaml (the repo's, with the replay's dataset versions and sweep
budget), data/versions, the GE records, an SQLite MLflow store and registry (mlruns.db,
mlartifacts/), the Optuna journal and the prediction log (predictions.db). While the replay
runs, every setting that names a store points there (env vars beat `.env`), so the user's
store, registry and log are never opened.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import CoinflowError
from core.params import Params
from core.paths import WORKDIR_ENV, Project
from core.tracking import MLFLOW_URI_VARS, restored_env


class SimulationError(CoinflowError, ValueError):
    """A replay that cannot run (dates outside the data, a bad budget); the message says why."""


@dataclass(frozen=True)
class Plan:
    """What to replay: the days, how often to retrain, and the budget of each sweep."""

    start: dt.date
    end: dt.date
    retrain_every: int
    trials: int = 2
    epochs: int = 3
    auto_rollback: bool | None = None  # None: params.yaml monitor.auto_rollback
    horizon: int = 7  # days ahead each served forecast reaches (coverage by horizon day)

    @property
    def days(self) -> list[dt.date]:
        """Every simulated day, oldest first."""
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    @property
    def retrain_days(self) -> list[dt.date]:
        """start + k x retrain_every (k >= 1) before end: after each full period of serving. A
        retrain on the last day is left out: its version could never serve a day."""
        return [d for d in self.days[self.retrain_every :: self.retrain_every] if d < self.end]

    @property
    def skipped_retrain(self) -> dt.date | None:
        """The last day, when the schedule puts a retrain there (retrain_days leaves it out)."""
        scheduled = (self.end - self.start).days
        return self.end if scheduled and scheduled % self.retrain_every == 0 else None


def check_workdir(workdir: Path | None) -> None:
    """A given workspace must be new or empty: a replay never mixes with another's store."""
    if workdir is not None and workdir.exists() and any(workdir.iterdir()):
        raise SimulationError(f"--workdir {workdir} is not empty: give a new or empty folder")


# --- the private workspace ----------------------------------------------------------------
def workspace_env(root: Path) -> dict[str, str]:
    """Every setting that names a store, set to the workspace's (env beats `.env`)."""
    store = f"sqlite:///{root / 'mlruns.db'}"
    return {
        WORKDIR_ENV: str(root),
        "MLFLOW_TRACKING_URI": store,
        "MLFLOW_REGISTRY_URI": store,
        "COINFLOW_ARTIFACT_ROOT": str(root / "mlartifacts"),
        "COINFLOW_EXPERIMENT": "coinflow",
        "COINFLOW_OPTUNA_STORAGE": str(root / "optuna" / "journal.log"),
        "COINFLOW_PREDICTION_LOG_URL": f"sqlite:///{root / 'predictions.db'}",
        "COINFLOW_PROGRESS": "0",
        "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
    }


@contextlib.contextmanager
def isolated(root: Path) -> Iterator[None]:
    """Run with the workspace's settings; the process's own are restored afterwards."""
    import mlflow

    env = workspace_env(root)
    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    # The environment is restored last: the set_*_uri calls below mirror URIs into it.
    with restored_env(*env, *MLFLOW_URI_VARS):
        os.environ.update(env)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(tracking)
            mlflow.set_registry_uri(registry)


def write_params(proj: Project, base: Params, plan: Plan, versions: dict[str, dt.date]) -> Params:
    """The workspace's params.yaml: the repo's, with the replay's versions and sweep budget."""
    import yaml

    raw = base.model_dump(mode="json", by_alias=True)
    raw["data"]["versions"] = {name: day.isoformat() for name, day in versions.items()}
    raw["data"]["version"] = max(versions, key=lambda v: versions[v])
    raw["sweep"] |= {"n_trials": plan.trials, "max_epochs": plan.epochs, "folds": 0}
    if plan.auto_rollback is not None:
        raw["monitor"]["auto_rollback"] = plan.auto_rollback
    params = Params.model_validate(raw)
    proj.params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    return params


@dataclass
class Simulation:
    """What the replay did, in simulated time (the report is built from it and the log)."""

    plan: Plan
    workdir: Path
    data_last_day: dt.date
    retrains: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    served: dict[str, int] = field(default_factory=dict)  # origin day -> champion version
    wall_s: float = 0.0

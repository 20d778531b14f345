"""MLflow set-up shared by training, sweeps and the registry: where runs go, how they are tagged."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core import tags
from core.paths import Project, project_root


def env_file() -> Path:
    """The `.env` deployment settings are read from: the project root's."""
    return project_root() / ".env"


class MlflowSettings(BaseSettings):
    """Where the MLflow tracking store and model registry are (env vars / .env)."""

    model_config = SettingsConfigDict(env_file=env_file(), extra="ignore")

    mlflow_tracking_uri: str = Field(
        default_factory=lambda: f"sqlite:///{project_root() / 'mlruns.db'}"
    )
    mlflow_registry_uri: str | None = None  # defaults to the tracking URI

    @property
    def registry_uri(self) -> str:
        """Where registered models live: MLFLOW_REGISTRY_URI, else the tracking store."""
        return self.mlflow_registry_uri or self.mlflow_tracking_uri


class TrackingSettings(MlflowSettings):
    """Settings of the pipeline side: artifact folder, experiment, Optuna storage."""

    coinflow_artifact_root: str = Field(default_factory=lambda: str(project_root() / "mlartifacts"))
    coinflow_experiment: str = "coinflow"
    coinflow_optuna_storage: str = Field(
        default_factory=lambda: str(project_root() / "optuna" / "journal.log")
    )


# MLflow mirrors set_tracking_uri/set_registry_uri into these environment variables, where every
# process started afterwards (and, in tests, every later test) would find that store.
MLFLOW_URI_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@contextlib.contextmanager
def restored_env(*names: str) -> Iterator[None]:
    """Put these environment variables back as they were on leaving (unset stays unset)."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def quiet_mlflow() -> None:
    """No artifact download bars (unless MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR says so), no
    per-call INFO chatter from MLflow's store set-up and model logging (ours stays)."""
    import logging

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("mlflow.store.db.utils", "mlflow.pyfunc", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_mlflow(settings: TrackingSettings | None = None) -> str:
    """Point MLflow at the tracking store and return the coinflow experiment id."""
    import mlflow

    quiet_mlflow()
    settings = settings or TrackingSettings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    experiment = mlflow.get_experiment_by_name(settings.coinflow_experiment)
    if experiment is not None:
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
        return str(experiment.experiment_id)
    location = None
    if not settings.mlflow_tracking_uri.startswith(("http://", "https://")):
        # Embedded store: keep artifacts in a folder we name, not a cwd-relative default.
        root = Path(settings.coinflow_artifact_root).resolve()
        location = root.as_uri()
    experiment_id = create_experiment_once(
        mlflow.MlflowClient(), settings.coinflow_experiment, artifact_location=location
    )
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def create_experiment_once(client: Any, name: str, **options: Any) -> str:
    """Create experiment `name` and return its id; when another process created it between
    our look-up and now (stages started together on a fresh store), MLflow refuses the second
    name, and the id is that process's experiment."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.create_experiment(name, **options))
    except MlflowException:
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


_USERINFO = re.compile(r"://[^/\s]+@")


def redact(text: str) -> str:
    """Hide URL credentials (user:password@) in text shown to clients or logs."""
    return _USERINFO.sub("://***@", text)


def store_identity(settings: TrackingSettings | None = None) -> dict[str, str]:
    """Which tracking store the chain writes to: its (redacted) URI and the coinflow
    experiment's id and creation time. A deleted or replaced store gets a new experiment, so
    this changes, and `dvc repro` re-runs the stages whose real output lives in MLflow (train,
    sweep, promote) instead of restoring their metrics files from its run-cache."""
    settings = settings or TrackingSettings()
    configure_mlflow(settings)
    experiment_id, created_at = store_key().split("@")
    return {
        "tracking_uri": redact(settings.mlflow_tracking_uri),
        "experiment": settings.coinflow_experiment,
        "experiment_id": experiment_id,
        "created_at": created_at,
    }


def store_key() -> str:
    """`<experiment id>@<creation ms>` of the configured coinflow experiment: what tells one
    tracking store from its replacement (configure_mlflow() first)."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(TrackingSettings().coinflow_experiment)
    if experiment is None:
        raise RuntimeError("no coinflow experiment: call configure_mlflow() first")
    return f"{experiment.experiment_id}@{experiment.creation_time}"


def git_sha(repo: Path | None = None) -> str:
    """HEAD commit, '-dirty' when tracked code or params changed; 'unknown' outside git."""
    cwd = repo or project_root()
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        # Files the pipeline itself rewrites (dvc.lock, metrics, plots) do not make code dirty.
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":!dvc.lock",
                ":!metrics",
                ":!plots",
            ],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty.strip() else sha


def lineage_tags(version: str, md5: str, proj: Project | None = None) -> dict[str, str]:
    """Tags every coinflow run carries: git sha, data version, DVC hash, GE status, model code."""
    from core.fingerprint import code_fingerprint
    from core.gate_record import passed

    return {
        tags.GIT_SHA: git_sha(),
        tags.DATA_VERSION: version,
        tags.DVC_MD5: md5,
        tags.GE_STATUS: "success" if passed(version, md5, proj) else "failed",
        tags.CODE: code_fingerprint(),
    }

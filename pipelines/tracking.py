"""MLflow set-up shared by training, sweeps and the registry: where runs go, how they are tagged."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

from pipelines.paths import METRICS_DIR


class TrackingSettings(BaseSettings):
    """Deployment settings from env vars / .env (never from params.yaml)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    mlflow_tracking_uri: str = "sqlite:///mlruns.db"
    coinflow_artifact_root: str = "mlartifacts"
    coinflow_experiment: str = "coinflow"
    coinflow_optuna_storage: str = "optuna/journal.log"


def configure_mlflow(settings: TrackingSettings | None = None) -> str:
    """Point MLflow at the tracking store and return the coinflow experiment id."""
    import mlflow

    settings = settings or TrackingSettings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    experiment = mlflow.get_experiment_by_name(settings.coinflow_experiment)
    if experiment is not None:
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
        return str(experiment.experiment_id)
    location = None
    if not settings.mlflow_tracking_uri.startswith(("http://", "https://")):
        # Embedded store: keep artifacts in a folder we name, not a cwd-relative default.
        root = Path(settings.coinflow_artifact_root).resolve()
        location = root.as_uri()
    experiment_id = mlflow.create_experiment(
        settings.coinflow_experiment, artifact_location=location
    )
    mlflow.set_experiment(experiment_id=experiment_id)
    return str(experiment_id)


def git_sha(repo: Path | None = None) -> str:
    """HEAD commit, '-dirty' when tracked code or params changed; 'unknown' outside git."""
    cwd = repo or Path.cwd()
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


def validation_status(version: str, metrics_dir: Path = METRICS_DIR) -> dict[str, Any]:
    """The GE gate's record for one version (success, md5, failed expectations)."""
    path = metrics_dir / "validation.json"
    if not path.is_file():
        return {"success": False, "reason": f"{path} missing"}
    return dict(json.loads(path.read_text()).get(version, {"success": False}))


def lineage_tags(version: str, md5: str, metrics_dir: Path = METRICS_DIR) -> dict[str, str]:
    """Tags every coinflow run carries: git sha, data version, DVC hash, GE status."""
    ge = validation_status(version, metrics_dir)
    return {
        "coinflow.git_sha": git_sha(),
        "coinflow.data_version": version,
        "coinflow.dvc_md5": md5,
        "coinflow.ge_status": "success" if ge.get("success") and ge.get("md5") == md5 else "failed",
    }

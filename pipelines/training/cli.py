"""`coinflow data features`, `coinflow store`, `coinflow train`: the training stages' commands."""

from __future__ import annotations

import logging

import typer

from core.console import refusals

log = logging.getLogger(__name__)


def features(
    version: str | None = typer.Option(None, help="dataset version (default data.version)"),
) -> None:
    """Features, split and train-only scaler of one gated version; metrics/baseline.json."""
    from pipelines.training import features as stage

    with refusals("features"):
        stage.main(version)


def store() -> None:
    """Record the MLflow store's identity in metrics/store.json (dvc's `store` stage)."""
    from core.files import write_json
    from core.paths import project
    from core.tracking import store_identity

    with refusals("store"):
        identity = store_identity()
        write_json(project().metrics_file("store"), identity)
        typer.echo(
            f"MLflow store {identity['tracking_uri']}: experiment {identity['experiment_id']}"
        )


def train() -> None:
    """One tracked training run with params.yaml's `train` block (writes metrics/train.json)."""
    from core.files import write_json
    from core.params import load_params
    from core.paths import project
    from core.tracking import configure_mlflow
    from pipelines.training.tracked_run import tracked_training
    from pipelines.training.train import load_training_data, progress_default

    with refusals("training"):
        proj = project()
        params = load_params(proj.params_file)
        configure_mlflow()
        data = load_training_data(proj.features)
        outcome = tracked_training(
            params.train, data, run_name=f"train-{data.version}", progress=progress_default()
        )
        write_json(
            proj.metrics_file("train"),
            {"run_id": outcome.run_id, "status": outcome.status, **outcome.metrics},
        )
    mase = outcome.metrics.get("test_mase", float("nan"))
    typer.echo(f"run {outcome.run_id} {outcome.status}: test MASE {mase:.3f}")
    if outcome.status != "FINISHED":
        typer.echo(f"training run {outcome.run_id} ended {outcome.status}", err=True)
        raise typer.Exit(1)

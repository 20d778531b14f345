"""`coinflow train` and `coinflow sweep`: one tracked run, or an Optuna sweep of tracked runs."""

from __future__ import annotations

import logging

import typer

log = logging.getLogger(__name__)


def train() -> None:
    """One tracked training run with params.yaml's `train` block (writes metrics/train.json)."""
    from pipelines.config import load_params
    from pipelines.console import refusals
    from pipelines.files import write_json
    from pipelines.paths import project
    from pipelines.tracked import tracked_training
    from pipelines.tracking import configure_mlflow
    from pipelines.train import load_training_data, progress_default

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


def sweep(
    workers: int = typer.Option(
        1, min=1, envvar="COINFLOW_SWEEP_WORKERS", help="worker processes sharing the study"
    ),
    n_trials: int | None = typer.Option(None, min=1, help="trial budget (default sweep.n_trials)"),
    study_name: str | None = typer.Option(
        None, help="study to create or resume (default sweep.study_name + a params/data hash)"
    ),
    storage: str | None = typer.Option(
        None, help="journal file path or SQLAlchemy URL (default COINFLOW_OPTUNA_STORAGE)"
    ),
) -> None:
    """Optuna sweep: parent MLflow run + one child run per trial; best model logged as pyfunc.

    Writes metrics/sweep.json and plots/sweep/*.png (the dvc `sweep` stage's outputs).
    """
    from pipelines.config import load_params
    from pipelines.console import refusals
    from pipelines.paths import project
    from pipelines.sweep import run_sweep
    from pipelines.sweep_report import write_sweep_metrics

    with refusals("sweep"):
        proj = project()
        # run_sweep configures MLflow after spawning its workers (their start-up overlaps it).
        result = run_sweep(
            load_params(proj.params_file),
            workers=workers,
            study_name=study_name,
            storage=storage,
            n_trials=n_trials,
            plots_dir=proj.sweep_plots,
        )
        write_sweep_metrics(result, proj.metrics_file("sweep"))
    typer.echo(
        f"study {result.study_name}: {result.n_complete} complete, {result.n_pruned} "
        f"pruned, {result.n_failed} failed"
    )
    mase = result.metrics.get("test_mase", float("nan"))
    typer.echo(
        f"best trial {result.best_trial} (run {result.best_run_id}): val loss "
        f"{result.best_value:.5f}, test MASE {mase:.3f} ({result.best_params})"
    )

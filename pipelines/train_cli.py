"""`coinflow train` and `coinflow sweep`: one tracked run, or an Optuna sweep of tracked runs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from pipelines.sweep_report import METRICS_JSON, PLOTS_DIR


def train() -> None:
    """One tracked training run with params.yaml's `train` block (writes metrics/train.json)."""
    from pipelines.train import main

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()


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
    metrics: Annotated[Path, typer.Option(help="summary JSON to write")] = METRICS_JSON,
    plots: Annotated[Path, typer.Option(help="folder for the sweep's PNG plots")] = PLOTS_DIR,
) -> None:
    """Optuna sweep: parent MLflow run + one child run per trial; best model logged as pyfunc."""
    from pipelines.config import load_params
    from pipelines.sweep import SweepError, run_sweep
    from pipelines.sweep_report import write_sweep_metrics

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    params = load_params()
    try:  # run_sweep configures MLflow after spawning its workers (their start-up overlaps it)
        result = run_sweep(
            params,
            workers=workers,
            study_name=study_name,
            storage=storage,
            n_trials=n_trials,
            plots_dir=plots,
        )
    except SweepError as exc:
        typer.echo(f"sweep failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    write_sweep_metrics(result, metrics)
    typer.echo(
        f"study {result.study_name}: {result.n_complete} complete, {result.n_pruned} "
        f"pruned, {result.n_failed} failed"
    )
    mase = result.metrics.get("test_mase", float("nan"))
    typer.echo(
        f"best trial {result.best_trial} (run {result.best_run_id}): val loss "
        f"{result.best_value:.5f}, test MASE {mase:.3f} ({result.best_params})"
    )

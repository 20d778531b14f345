"""`coinflow sweep`: an Optuna sweep of tracked runs (parent run + nested trial runs)."""

from __future__ import annotations

import typer

from core.console import refusals


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
    from core.params import load_params
    from core.paths import project
    from pipelines.sweep.report import write_sweep_metrics
    from pipelines.sweep.study import run_sweep

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

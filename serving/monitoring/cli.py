"""`coinflow monitor score | replay`: live scores of served forecasts, and replaying one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    import sqlalchemy as sa

    from registry.store import Registry
app = typer.Typer(
    help="Score served forecasts as the truth arrives; replay any of them.", no_args_is_help=True
)


def _open() -> tuple[sa.Engine, Registry]:
    """The prediction log's engine and the model's registry (as the API is configured)."""
    from registry.store import open_registry
    from serving.monitoring.monitor import MonitorError
    from serving.prediction_log import engine_for, migrate
    from serving.settings import ServingSettings

    settings = ServingSettings()
    if not settings.coinflow_prediction_log_url:
        raise MonitorError("COINFLOW_PREDICTION_LOG_URL is empty: the prediction log is off")
    engine = engine_for(settings.coinflow_prediction_log_url)
    migrate(engine)
    return engine, open_registry(settings.coinflow_model_name)


@app.command("score")
def score() -> None:
    """Join logged forecasts with the newest version's closes; write live scores; judge."""
    from core.console import refusals
    from core.params import load_params
    from core.paths import project
    from serving.monitoring import monitor

    with refusals("monitor"):
        params = load_params()
        newest = max(params.data.versions, key=lambda v: params.data.versions[v])
        engine, registry = _open()
        report = monitor.score(engine, registry, project().version_file(newest), params.monitor)
        typer.echo(
            f"scored {report.scored_days} forecast day(s) of versions {report.versions} "
            f"against {newest}'s closes: {report.reason}"
        )
        if report.alert:
            typer.echo("ALERT recorded" + (" and rolled back" if report.rolled_back else ""))


@app.command("replay")
def replay(
    prediction_id: str = typer.Argument(help="a prediction_id from a /predict answer"),
) -> None:
    """Recompute a logged forecast from its version and rows; exit 1 unless identical."""
    from core.console import refusals
    from serving.monitoring import monitor

    with refusals("replay"):
        engine, registry = _open()
        same, why = monitor.replay(engine, registry, prediction_id)
        typer.echo(f"{prediction_id}: {why}")
        if not same:
            raise typer.Exit(1)

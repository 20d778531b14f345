"""`coinflow monitor score | replay | states | prune`: live scores of served forecasts, replaying
one, a version's calibration states, and the prediction log's retention."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    import sqlalchemy as sa

    from registry.store import Registry
    from serving.settings import ServingSettings
app = typer.Typer(
    help="Score served forecasts as the truth arrives; replay any of them.", no_args_is_help=True
)


def _log(settings: ServingSettings) -> sa.Engine:
    """The prediction log's engine, migrated (as the API is configured)."""
    from serving.log_database import engine_for, migrate
    from serving.monitoring.monitor import MonitorError

    if not settings.coinflow_prediction_log_url:
        raise MonitorError("COINFLOW_PREDICTION_LOG_URL is empty: the prediction log is off")
    engine = engine_for(settings.coinflow_prediction_log_url)
    migrate(engine)
    return engine


def _open() -> tuple[sa.Engine, Registry]:
    """The prediction log's engine and the model's registry (as the API is configured)."""
    from registry.store import open_registry
    from serving.settings import ServingSettings

    settings = ServingSettings()
    return _log(settings), open_registry(settings.coinflow_model_name)


@app.command("score")
def score() -> None:
    """Join logged forecasts made on the platform's rows with data/raw's closes; write live
    scores; judge."""
    from core.console import refusals
    from core.params import load_params
    from core.paths import project
    from serving.monitoring import monitor
    from serving.monitoring.trusted import platform_rows

    with refusals("monitor"):
        params = load_params()
        rows = platform_rows(project().raw, params.data.start)
        engine, registry = _open()
        report = monitor.score(engine, registry, rows, params.monitor)
        typer.echo(
            f"scored {report.scored_days} forecast day(s) of versions {report.versions} "
            f"against data/raw's closes to {rows.last_day}: {report.reason}"
        )
        if report.alert:
            typer.echo("ALERT recorded" + (" and rolled back" if report.rolled_back else ""))
        for version, as_of in sorted(report.states.items()):
            typer.echo(f"v{version}: calibration state as of {as_of}")


@app.command("replay")
def replay(
    prediction_id: str = typer.Argument(help="a prediction_id from a /predict answer"),
) -> None:
    """Recompute a logged forecast from its version, rows and calibration state; exit 1 unless
    identical."""
    from core.console import refusals
    from serving.monitoring import monitor

    with refusals("replay"):
        engine, registry = _open()
        same, why = monitor.replay(engine, registry, prediction_id)
        typer.echo(f"{prediction_id}: {why}")
        if not same:
            raise typer.Exit(1)


@app.command("states")
def states(
    version: int = typer.Argument(help="a registry version number"),
) -> None:
    """A version's calibration states as `coinflow monitor score` wrote them, oldest first: the
    day, the updates, the multipliers, the digest and the md5 of the rows it learned from."""
    from core.console import refusals
    from serving.calibration_states import history

    with refusals("monitor"):
        engine, registry = _open()
        written = history(engine, registry.name, version)
        if not written:
            typer.echo(f"v{version}: no stored state (it answers with the state it shipped)")
        for state in written:
            multipliers = ", ".join(
                f"{float(k):g}: {v:.3f}" for k, v in state["state"]["multipliers"].items()
            )
            typer.echo(
                f"v{version} as of {state['as_of']} after {state['updates']} updates: "
                f"{multipliers} (digest {state['digest']}, data md5 {state['data_md5']}, "
                f"written {state['written_at']:%Y-%m-%d %H:%M})"
            )


@app.command("prune")
def prune(
    max_age_days: float | None = typer.Option(
        None,
        min=0,
        help="delete answers older than this (default COINFLOW_PREDICTION_LOG_MAX_AGE_DAYS, "
        "365; 0: no age limit)",
    ),
    max_mb: float | None = typer.Option(
        None,
        min=0,
        help="then delete the oldest answers until the log is under this size "
        "(default COINFLOW_PREDICTION_LOG_MAX_MB, 1024; 0: no size limit)",
    ),
) -> None:
    """Apply the prediction log's retention now (the API's writer also does, every
    COINFLOW_PREDICTION_LOG_PRUNE_S): old answers, then the oldest over the size cap, then every
    forecast and input no answer uses. Scores and calibration states are kept."""
    from core.console import refusals
    from serving.retention import Retention
    from serving.retention import prune as apply
    from serving.settings import ServingSettings

    with refusals("monitor"):
        settings = ServingSettings()
        retention = Retention.of(
            settings.coinflow_prediction_log_max_age_days if max_age_days is None else max_age_days,
            settings.coinflow_prediction_log_max_mb if max_mb is None else max_mb,
        )
        done = apply(_log(settings), retention)
        typer.echo(f"prediction log pruned: {done}")

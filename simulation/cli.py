"""`coinflow simulate`: replay the platform over past days in a private workspace (report + run)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import typer


def _day(flag: str, text: str) -> dt.date:
    from simulation.replay import SimulationError

    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise SimulationError(f"{flag} {text!r} is not an ISO date (YYYY-MM-DD)") from exc


def simulate(
    start: str = typer.Option("2024-01-01", "--from", help="first simulated day"),
    end: str = typer.Option("2024-10-31", "--to", help="last simulated day"),
    retrain_every: int = typer.Option(
        30, "--retrain-every", help="days between retrains (sweep → register → promote rule)"
    ),
    trials: int = typer.Option(2, help="Optuna trials per retrain (tiny, to fit 2 cores)"),
    epochs: int = typer.Option(3, help="max epochs per trial"),
    auto_rollback: bool | None = typer.Option(
        None,
        "--auto-rollback/--no-auto-rollback",
        help="the monitor's rollback (default: params.yaml monitor.auto_rollback)",
    ),
    workdir: str | None = typer.Option(
        None, help="workspace for the replay's store, registry and log (default: a new temp dir)"
    ),
) -> None:
    """Replay the platform day by day: cut the data at each day, forecast with the champion
    through the API, log and score, retrain every K days and let the promotion rule decide.

    Writes report/simulation.json and .png in the workspace and logs them to its MLflow store;
    the project's own store, registry and prediction log are never touched.
    """
    from core.console import refusals
    from core.paths import project
    from simulation.replay import Plan
    from simulation.replay import simulate as run

    with refusals("simulate"):
        plan = Plan(
            _day("--from", start), _day("--to", end), retrain_every, trials, epochs, auto_rollback
        )
        report = run(plan, project(), Path(workdir) if workdir else None)
    s = report["summary"]
    typer.echo(
        f"{s['forecast_days']} forecast days, {s['scored_days']} scored: live MASE "
        f"{_fmt(s['live_mase'])} (persistence = 1), coverage 80% {_fmt(s['coverage_80'], '.1%')}"
        f", 95% {_fmt(s['coverage_95'], '.1%')}"
    )
    typer.echo(
        f"{s['retrains']} retrain(s), {s['promotions']} promotion(s), {s['rollbacks']} "
        f"rollback(s), {s['alerts']} alert(s); {s['versions_served']} version(s) served; "
        f"{s['wall_s']:.0f} s"
    )
    for move in report["moves"]:
        typer.echo(
            f"  {move['day']} {move['action']} v{move['champion_before']} -> "
            f"v{move['champion_after']} ({move['kind']})"
        )
    typer.echo(f"report: {report['artifacts']['json']} and {report['artifacts']['png']}")
    typer.echo(
        f"MLflow run {report['mlflow']['run_id']} in {report['mlflow']['tracking_uri']} "
        f"(mlflow ui --backend-store-uri {report['mlflow']['tracking_uri']})"
    )


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)

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
    start: str = typer.Option(None, "--from", help="first simulated day [default: 2024-01-01]"),
    end: str = typer.Option(None, "--to", help="last simulated day [default: 2024-10-31]"),
    retrain_every: int = typer.Option(
        30, "--retrain-every", help="days between retrains (sweep → register → promote rule)"
    ),
    trials: int = typer.Option(2, help="Optuna trials per retrain (tiny, to fit 2 cores)"),
    epochs: int = typer.Option(3, help="max epochs per trial"),
    horizon: int = typer.Option(7, help="days ahead each served forecast reaches"),
    auto_rollback: bool | None = typer.Option(
        None,
        "--auto-rollback/--no-auto-rollback",
        help="the monitor's rollback (default: params.yaml monitor.auto_rollback)",
    ),
    workdir: str | None = typer.Option(
        None, help="workspace for the replay's store, registry and log (default: a new temp dir)"
    ),
    recent: int | None = typer.Option(
        None,
        "--recent",
        metavar="DAYS",
        help="instead: this project's champion serves the newest dataset version's last DAYS "
        "days again, through the API into this project's prediction log (role `replay`; no "
        "retrain, no alias moves); `make demo` ends with --recent 60",
    ),
) -> None:
    """Replay the platform day by day: cut the data at each day, forecast with the champion
    through the API, log and score, retrain every K days and let the promotion rule decide.

    Writes report/simulation.json and .png in the workspace and logs them to its MLflow store;
    the project's own store, registry and prediction log are never touched. With --recent, the
    project's own champion and prediction log instead (what the Live tab shows after a demo).
    """
    from core.console import refusals
    from core.paths import project
    from simulation.replay import Plan, SimulationError
    from simulation.replay import simulate as run

    if recent is not None:
        with refusals("simulate"):
            if start or end or workdir:
                raise SimulationError(
                    "--recent replays the newest version's last days in this project: "
                    "it takes no --from, --to or --workdir"
                )
            _recent(recent, horizon)
        return
    with refusals("simulate"):
        plan = Plan(
            _day("--from", start or "2024-01-01"),
            _day("--to", end or "2024-10-31"),
            retrain_every,
            trials,
            epochs,
            auto_rollback,
            horizon,
        )
        report = run(plan, project(), Path(workdir) if workdir else None)
    s, overall = report["summary"], report["coverage"]["overall"]
    cover = ", ".join(
        f"{name.removeprefix('coverage_')}% {_fmt(v, '.1%')}" for name, v in overall.items()
    )
    typer.echo(
        f"{s['forecast_days']} forecast days, {s['scored_days']} scored: live MASE "
        f"{_fmt(s['live_mase'])} (persistence = 1), coverage {cover}"
    )
    typer.echo(
        f"CRPS {_fmt(s['crps'], ',.2f')} USD; persistence {_fmt(s.get('crps_persistence'), ',.2f')}"
        f", EWMA {_fmt(s.get('crps_ewma'), ',.2f')} on the same days"
    )
    typer.echo(
        f"{s['retrains']} retrain(s), {s['promotions']} promotion(s) ({s['moves_paid_off']} of "
        f"{s['moves_judged']} champion move(s) paid off), {s['rollbacks']} rollback(s), "
        f"{s['alerts']} alert(s); {s['versions_served']} version(s) served; {s['wall_s']:.0f} s"
    )
    outcomes = {o["day"] + o["move"]: o for o in report["move_outcomes"]}
    for move in report["moves"]:
        outcome = outcomes.get(move["day"] + move["text"])
        verdict = ""
        if outcome is not None and outcome["paid_off"] is not None:
            new, old = outcome["new_scores"]["crps"], outcome["replaced_scores"]["crps"]
            verdict = (
                f": {'paid off' if outcome['paid_off'] else 'did not pay off'} over "
                f"{outcome['days']} day(s), CRPS {new:,.2f} vs {old:,.2f}"
            )
        typer.echo(f"  {move['day']} {move['text']} ({move['kind']}){verdict}")
    typer.echo(f"report: {report['artifacts']['json']} and {report['artifacts']['png']}")
    typer.echo(
        f"MLflow run {report['mlflow']['run_id']} in {report['mlflow']['tracking_uri']} "
        f"(mlflow ui --backend-store-uri {report['mlflow']['tracking_uri']})"
    )


def _recent(days: int, horizon: int) -> None:
    """`coinflow simulate --recent DAYS`: serve the newest version's last days again."""
    from core.paths import project
    from simulation.recent import REPLAY, replay_recent

    done = replay_recent(project(), days, horizon)
    span = f"the last {days} days of {done.data_version} ({done.first} .. {done.last})"
    if not done.forecasts:
        typer.echo(f"{done.model_name} v{done.version} already replayed {span}: nothing to do")
        return
    typer.echo(
        f"replayed {span}: champion {done.model_name} v{done.version} answered "
        f"{done.forecasts} POST /predict?alias={REPLAY} ({done.horizon} days ahead, rows up to "
        f"each day) into the prediction log, in {done.wall_s:.1f} s"
    )
    typer.echo(
        f"labelled role `{REPLAY}` (not the champion's live record); score them: "
        "coinflow monitor score, then GET /monitoring or the UI's Live tab"
    )


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)

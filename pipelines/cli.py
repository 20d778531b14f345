"""`coinflow` command line: what a user types, what dvc.yaml stages and Airflow tasks run.

Heavy libraries are imported inside commands, so `--help` is instant. A refused request (bad
data, a failed gate, a registry refusal) prints its reason and exits 1, without a traceback.
"""

from __future__ import annotations

import typer

from pipelines import simulate_cli, train_cli
from pipelines.console import refusals
from registry import cli as registry_cli
from serving.cli import serve as serve_command
from serving.monitor_cli import app as monitor_app
from ui.cli import ui as ui_command

app = typer.Typer(
    help="coinflow: versioned data → GE gate → Optuna/MLflow sweeps → registry → API/UI",
    no_args_is_help=True,
    add_completion=False,
)
data_app = typer.Typer(
    help="Dataset versions: ingest, cut, validate, features.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
app.add_typer(registry_cli.app, name="registry")
app.add_typer(monitor_app, name="monitor")
app.command("ui")(ui_command)
app.command("serve")(serve_command)
app.command("train")(train_cli.train)
app.command("sweep")(train_cli.sweep)
app.command("simulate")(simulate_cli.simulate)


@app.command("store")
def store() -> None:
    """Record the MLflow store's identity in metrics/store.json (dvc's `store` stage)."""
    from pipelines.files import write_json
    from pipelines.paths import project
    from pipelines.tracking import store_identity

    with refusals("store"):
        identity = store_identity()
        write_json(project().metrics_file("store"), identity)
        typer.echo(
            f"MLflow store {identity['tracking_uri']}: experiment {identity['experiment_id']}"
        )


@data_app.command("ingest")
def data_ingest() -> None:
    """Parse data/raw/*.csv (investing.com exports) into data/interim/*.parquet."""
    from pipelines import ingest

    with refusals("ingest"):
        ingest.main()


@data_app.command("version")
def data_version(
    name: str = typer.Argument(help="a version of params.yaml data.versions, e.g. v0.3"),
) -> None:
    """Cut one dataset version (its cut-off from params.yaml) into data/versions/<name>.parquet."""
    from pipelines import version

    with refusals(f"version {name}"):
        version.main(name)


@data_app.command("fetch")
def data_fetch(
    source: str = typer.Option(None, help="directory or http(s) base URL of the exports"),
    dvc: bool = typer.Option(True, help="`dvc add data/raw` (and push) after a merge"),
) -> None:
    """Merge newer investing.com exports into data/raw (btc, eth, gold), then `dvc add` it."""
    from pipelines import fetch as fetching

    with refusals("fetch"):
        merges = fetching.fetch(source)
        for m in merges:
            if m.added:
                typer.echo(f"{m.asset}: {len(m.added)} new day(s) {m.added[0]} .. {m.added[-1]}")
            if m.revised:
                changes = ", ".join(f"{c} {a:g} -> {b:g}" for c, (a, b) in m.revision.items())
                typer.echo(f"{m.asset}: newest day {m.revised} revised ({changes})")
        if not any(m.changed for m in merges):
            typer.echo("nothing new: data/raw unchanged")
            return
        if dvc:
            typer.echo(fetching.dvc_add())
        typer.echo("next: `coinflow data cut --use`, `dvc repro`, then")
        typer.echo("  git add data.dvc params.yaml dvc.lock && git commit")


@data_app.command("cut")
def data_cut(
    until: str = typer.Option(None, help="cut-off date (default: last day every series has)"),
    name: str = typer.Option(None, help="version name (default: the next after the last)"),
    use: bool = typer.Option(False, "--use", help="also make it the data.version training uses"),
) -> None:
    """Append the next dataset version to params.yaml data.versions (comments kept)."""
    import datetime as dt

    from pipelines import cut as cutting

    with refusals("cut"):
        try:
            day = dt.date.fromisoformat(until) if until else None
        except ValueError as exc:
            raise cutting.CutError(f"--until {until!r} is not an ISO date (YYYY-MM-DD)") from exc
        done = cutting.cut(day, name, use)
        typer.echo(
            f"{done.name}: cut-off {done.cutoff}" + (" (now data.version)" if done.used else "")
        )
        typer.echo("next: `dvc repro`, then `git add params.yaml dvc.lock` and commit")


@data_app.command("validate")
def data_validate() -> None:
    """The Great Expectations gate over every version; Data Docs in reports/validation/."""
    from pipelines import validate

    with refusals("validation"):
        validate.main()


@data_app.command("features")
def data_features(
    version: str | None = typer.Option(None, help="dataset version (default data.version)"),
) -> None:
    """Features, split and train-only scaler of one gated version; metrics/baseline.json."""
    from pipelines import features

    with refusals("features"):
        features.main(version)


@data_app.command("versions")
def data_versions() -> None:
    """Table of dataset versions: rows, first/last date, content hash (DVC md5)."""
    from pipelines.config import load_params
    from pipelines.version import describe_version

    with refusals("versions"):
        params = load_params()
        typer.echo(f"{'version':<8} {'rows':>6}  {'first':<10}  {'last':<10}  md5")
        for version in params.data.versions:
            info = describe_version(version)
            marker = "*" if version == params.data.version else " "
            typer.echo(
                f"{version:<7}{marker} {info.rows:>6}  {info.first}  {info.last}  {info.md5}"
            )


if __name__ == "__main__":
    app()

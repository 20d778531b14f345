"""`coinflow data ingest | version | fetch | cut | versions`: the data stages' commands."""

from __future__ import annotations

import typer

from core.console import refusals


def ingest() -> None:
    """Parse data/raw/*.csv (investing.com exports) into data/interim/*.parquet."""
    from pipelines.data import ingest as stage

    with refusals("ingest"):
        stage.main()


def version(
    name: str = typer.Argument(help="a version of params.yaml data.versions, e.g. v0.3"),
) -> None:
    """Cut one dataset version (its cut-off from params.yaml) into data/versions/<name>.parquet."""
    from pipelines.data import version as stage

    with refusals(f"version {name}"):
        stage.main(name)


def fetch(
    source: str = typer.Option(None, help="directory or http(s) base URL of the exports"),
    dvc: bool = typer.Option(True, help="`dvc add data/raw` (and push) after a merge"),
) -> None:
    """Merge newer investing.com exports into data/raw (btc, eth, gold), then `dvc add` it.

    All or nothing: a refused or failed fetch leaves data/raw and data.dvc as they were."""
    from pipelines.data import fetch as fetching

    with refusals("fetch"):
        merges = fetching.fetch(source, dvc=dvc)
        for m in merges:
            if m.added:
                typer.echo(f"{m.asset}: {len(m.added)} new day(s) {m.added[0]} .. {m.added[-1]}")
            if m.revised:
                changes = ", ".join(f"{c} {a:g} -> {b:g}" for c, (a, b) in m.revision.items())
                typer.echo(f"{m.asset}: newest day {m.revised} revised ({changes})")
        if not any(m.changed for m in merges):
            typer.echo("nothing new: data/raw unchanged")
            return
        typer.echo(merges.dvc)
        add = "" if dvc else "`dvc add data/raw`, "
        # cut reads data/raw itself (it re-ingests a missing or older data/interim)
        typer.echo(f"next: {add}`coinflow data cut --use` (the next version), `dvc repro`, then")
        typer.echo("  git add data.dvc params.yaml dvc.lock && git commit")


def cut(
    until: str = typer.Option(None, help="cut-off date (default: last day every series has)"),
    name: str = typer.Option(None, help="version name (default: the next after the last)"),
    use: bool = typer.Option(False, "--use", help="also make it the data.version training uses"),
) -> None:
    """Append the next dataset version to params.yaml data.versions (comments kept)."""
    import datetime as dt

    from pipelines.data import cut as cutting

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


def versions() -> None:
    """Table of dataset versions: rows, first/last date, content hash (DVC md5)."""
    from pipelines.data.version import versions_table

    with refusals("versions"):
        typer.echo("\n".join(versions_table()))

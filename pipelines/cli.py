"""`coinflow` command line. Heavy libraries are imported inside commands, so --help is instant."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines import train_cli
from registry import cli as registry_cli
from serving.cli import serve as serve_command
from ui.cli import ui as ui_command

app = typer.Typer(
    help="coinflow: versioned data → GE gate → Optuna/MLflow sweeps → registry → API/UI",
    no_args_is_help=True,
    add_completion=False,
)
data_app = typer.Typer(help="Dataset versions (DVC outputs).", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(registry_cli.app, name="registry")
app.command("ui")(ui_command)
app.command("serve")(serve_command)
app.command("train")(train_cli.train)
app.command("sweep")(train_cli.sweep)


@data_app.command("versions")
def data_versions(
    root: Annotated[Path, typer.Option(help="versions folder")] = Path("data/versions"),
) -> None:
    """Table of dataset versions: rows, first/last date, content hash (DVC md5)."""
    from pipelines.config import load_params
    from pipelines.version import describe_version

    params = load_params()
    typer.echo(f"{'version':<8} {'rows':>6}  {'first':<10}  {'last':<10}  md5")
    for version in params.data.versions:
        try:
            info = describe_version(version, root)
        except FileNotFoundError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc
        marker = "*" if version == params.data.version else " "
        typer.echo(f"{version:<7}{marker} {info.rows:>6}  {info.first}  {info.last}  {info.md5}")


if __name__ == "__main__":
    app()

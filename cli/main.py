"""`coinflow` command line: what a user types, what dvc.yaml stages and Airflow tasks run.

Each sub-command lives beside the code it runs (pipelines/<stage group>/cli.py, registry/cli.py,
serving/cli.py, ...) and is imported only when it is invoked: `coinflow data ingest` loads the
data stages and nothing of the registry, serving or the UI, so a DVC stage depends on exactly
the folders its command imports, and `--help` is instant. A refused request (bad data, a failed
gate, a registry refusal) prints its reason and exits 1, without a traceback.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
import typer.main
from typer.core import TyperGroup

# command name → "module:attribute" (a function of typer options, or a typer.Typer group), or a
# nested table for a group of commands.
Table = dict[str, "str | Table"]
COMMANDS: Table = {
    "data": {
        "ingest": "pipelines.data.cli:ingest",
        "version": "pipelines.data.cli:version",
        "fetch": "pipelines.data.cli:fetch",
        "cut": "pipelines.data.cli:cut",
        "versions": "pipelines.data.cli:versions",
        "validate": "pipelines.gate.cli:validate",
        "features": "pipelines.training.cli:features",
    },
    "store": "pipelines.training.cli:store",
    "train": "pipelines.training.cli:train",
    "sweep": "pipelines.sweep.cli:sweep",
    "registry": "registry.cli:app",
    "monitor": "serving.monitoring.cli:app",
    "serve": "serving.cli:serve",
    "ui": "ui.cli:ui",
    "simulate": "simulation.cli:simulate",
}


def load_command(name: str, target: str) -> Any:
    """The click command a "module:attribute" names (imported now, not before)."""
    module, attribute = target.split(":")
    found: Any = getattr(importlib.import_module(module), attribute)
    if isinstance(found, typer.Typer):
        command = typer.main.get_command(found)
        command.name = name
        return command
    single = typer.Typer(add_completion=False)
    single.command(name)(found)
    return typer.main.get_command(single)


class LazyGroup(TyperGroup):
    """A command group whose sub-commands are imported when one is run (or --help lists them)."""

    table: Table = COMMANDS

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.table)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        target = self.table.get(cmd_name)
        if target is None:
            return None
        if isinstance(target, dict):
            group = type(f"{cmd_name.title()}Group", (LazyGroup,), {"table": target})
            return group(name=cmd_name, help=GROUP_HELP.get(cmd_name), no_args_is_help=True)
        return load_command(cmd_name, target)


GROUP_HELP = {"data": "Dataset versions: ingest, fetch, cut, validate, features."}
app = typer.Typer(cls=LazyGroup, no_args_is_help=True, add_completion=False)


@app.callback()
def coinflow() -> None:
    """coinflow: versioned data → GE gate → Optuna/MLflow sweeps → registry → API/UI."""


if __name__ == "__main__":
    app(prog_name="coinflow")

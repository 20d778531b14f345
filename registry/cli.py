"""`coinflow registry ...`: status, promote, rollback, lineage. Heavy imports inside commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from pipelines.paths import FEATURES_DIR, METRICS_DIR, VERSIONS_DIR

app = typer.Typer(
    help="Model registry: champion/challenger promotion, rollback, lineage.", no_args_is_help=True
)

Name = Annotated[
    str | None,
    typer.Option("--name", help="registered model (default: params.yaml registry.model_name)"),
]
VersionsDir = Annotated[Path, typer.Option(help="dataset version files (md5 checks)")]
MetricsDir = Annotated[Path, typer.Option(help="folder holding validation.json (GE record)")]


def _name(name: str | None) -> str:
    if name:
        return name
    from pipelines.config import load_params

    return load_params().registry.model_name


@contextmanager
def _refusals() -> Iterator[None]:
    """A refused request prints its reason and exits 1 (no traceback)."""
    from registry.errors import RegistryError

    try:
        yield
    except (RegistryError, FileNotFoundError) as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from exc


def _open(name: str | None) -> Any:
    from registry.store import open_registry

    return open_registry(_name(name))


@app.command("status")
def status(name: Name = None) -> None:
    """Versions, aliases and key metrics of the registered model."""
    from registry.report import status_table
    from registry.store import aliases, versions

    with _refusals():
        reg = _open(name)
        found = versions(reg)
        if not found:
            typer.echo(f"{reg.name}: no versions registered yet (run `dvc repro promote`)")
            return
        typer.echo(status_table(reg.name, aliases(reg), found))


@app.command("promote")
def promote(
    version: Annotated[
        int | None, typer.Option(help="version to promote (default: challenger)")
    ] = None,
    name: Name = None,
    features_dir: Annotated[
        Path, typer.Option(help="features of the newest dataset version")
    ] = FEATURES_DIR,
    versions_dir: VersionsDir = VERSIONS_DIR,
    metrics_dir: MetricsDir = METRICS_DIR,
) -> None:
    """Re-score a version and the champion on the newest test split; move `champion` if better."""
    from pipelines.config import load_params
    from registry.promote import Policy
    from registry.promote import promote as run_promotion
    from registry.register import ensure_champion
    from registry.report import decision_table
    from registry.scoring import load_eval_set

    with _refusals():
        params = load_params()
        reg = _open(name or params.registry.model_name)
        ev = load_eval_set(features_dir, versions_dir)
        ensure_champion(reg, ev, versions_dir, metrics_dir)
        outcome = run_promotion(reg, ev, Policy.from_params(params.registry), version)
        typer.echo(
            f"{reg.name} v{outcome.version} re-scored on {ev.version} test split "
            f"({len(ev.dates)} days, {ev.describe()['first_day']} -> "
            f"{ev.describe()['last_day']})"
        )
        typer.echo(decision_table(outcome))


@app.command("rollback")
def rollback(
    name: Name = None,
    reason: Annotated[str, typer.Option(help="recorded with the rollback")] = "manual rollback",
) -> None:
    """Champion back to previous-champion (recorded); the two aliases swap."""
    from registry.aliases import rollback as run_rollback

    with _refusals():
        reg = _open(name)
        outcome = run_rollback(reg, reason)
        typer.echo(
            f"{reg.name}: champion v{outcome.from_version} -> v{outcome.to_version} "
            f"(previous-champion now v{outcome.from_version}); record run "
            f"{outcome.record_run_id}"
        )


@app.command("lineage")
def lineage(
    ref: Annotated[str, typer.Argument(help="version number or alias (e.g. 3, champion)")],
    name: Name = None,
    versions_dir: VersionsDir = VERSIONS_DIR,
    metrics_dir: MetricsDir = METRICS_DIR,
) -> None:
    """Version → run → sweep → data version/hash → git sha → GE result → decision."""
    from registry.lineage import read_lineage
    from registry.report import lineage_table
    from registry.store import aliases, get_version

    with _refusals():
        reg = _open(name)
        mv = get_version(reg, ref)
        held = sorted(a for a, v in aliases(reg).items() if v == int(mv.version))
        lin = read_lineage(reg.client, reg.name, mv, held, versions_dir, metrics_dir)
        typer.echo(lineage_table(lin))

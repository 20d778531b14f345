"""`coinflow registry ...`: status, release, promote, rollback, lineage. Heavy imports inside."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from registry.store import Registry
app = typer.Typer(
    help="Model registry: champion/challenger promotion, rollback, lineage.", no_args_is_help=True
)

Name = Annotated[
    str | None,
    typer.Option("--name", help="registered model (default: params.yaml registry.model_name)"),
]


def _open(name: str | None) -> Registry:
    from core.params import load_params
    from registry.store import open_registry

    return open_registry(name or load_params().registry.model_name)


@app.command("status")
def status(name: Name = None) -> None:
    """Versions, aliases and key metrics of the registered model."""
    from core.console import refusals
    from registry.report import status_table
    from registry.store import aliases, versions

    with refusals("status"):
        registry = _open(name)
        found = versions(registry)
        if not found:
            typer.echo(f"{registry.name}: no versions registered yet (run `dvc repro promote`)")
            return
        typer.echo(status_table(registry.name, aliases(registry), found))


@app.command("release")
def release() -> None:
    """Register the sweep's best run (metrics/sweep.json) as challenger and promote it if it wins
    (the dvc `promote` stage; writes metrics/promotion.json)."""
    from core.console import refusals
    from registry.flow import release as run_release

    with refusals("release"):
        summary = run_release()
    typer.echo(f"v{summary['version']}: {summary['reason']}")


@app.command("promote")
def promote(
    version: Annotated[
        int | None, typer.Option(help="version to promote (default: challenger)")
    ] = None,
    name: Name = None,
) -> None:
    """Re-score a version and the champion on the newest test split; move `champion` if better."""
    from core.console import refusals
    from core.params import load_params
    from registry.policy import Policy
    from registry.promote import promote as run_promotion
    from registry.register import ensure_champion
    from registry.report import decision_table
    from registry.scoring import load_eval_set

    with refusals("promotion"):
        params = load_params()
        registry = _open(name)
        eval_set = load_eval_set()
        ensure_champion(registry, eval_set)
        outcome = run_promotion(registry, eval_set, Policy.from_params(params.registry), version)
        described = eval_set.describe()
        typer.echo(
            f"{registry.name} v{outcome.version} re-scored on {eval_set.version} test split "
            f"({len(eval_set.dates)} days, {described['first_day']} -> {described['last_day']})"
        )
        typer.echo(decision_table(outcome))


@app.command("rollback")
def rollback(
    name: Name = None,
    reason: Annotated[str, typer.Option(help="recorded with the rollback")] = "manual rollback",
) -> None:
    """Champion back to previous-champion (recorded); the two aliases swap."""
    from core.console import refusals
    from registry.aliases import rollback as run_rollback

    with refusals("rollback"):
        registry = _open(name)
        outcome = run_rollback(registry, reason)
        typer.echo(
            f"{registry.name}: champion v{outcome.from_version} -> v{outcome.to_version} "
            f"(previous-champion now v{outcome.from_version}); record run "
            f"{outcome.record_run_id}"
        )


@app.command("lineage")
def lineage(
    ref: Annotated[str, typer.Argument(help="version number or alias (e.g. 3, champion)")],
    name: Name = None,
) -> None:
    """Version → run → sweep → data version/hash → git sha → GE result → decision."""
    from core.console import refusals
    from registry.lineage import read_lineage
    from registry.report import lineage_table
    from registry.store import aliases, get_version

    with refusals("lineage"):
        registry = _open(name)
        model_version = get_version(registry, ref)
        held = sorted(a for a, v in aliases(registry).items() if v == int(model_version.version))
        typer.echo(lineage_table(read_lineage(registry, model_version, held)))

"""How every `coinflow` command reports: progress lines on stderr, refusals without tracebacks."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import typer

from core.errors import CoinflowError

# What a command refuses with: coinflow's own typed errors, a missing file, and ValueError (a
# params.yaml that fails validation, an unknown version name).
REFUSALS = (CoinflowError, FileNotFoundError, ValueError)


@contextlib.contextmanager
def refusals(what: str) -> Iterator[None]:
    """Run a command: log progress lines; a typed refusal prints `what refused: why` and exits 1."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        yield
    except REFUSALS as exc:
        typer.echo(f"{what} refused: {exc}", err=True)
        raise typer.Exit(1) from exc

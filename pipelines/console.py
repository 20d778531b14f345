"""How every `coinflow` command reports: progress lines on stderr, refusals without tracebacks."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import typer


def _refusal_types() -> tuple[type[BaseException], ...]:
    """The typed errors a stage refuses with (imported only once one was raised)."""
    from pipelines.features import GateNotPassedError
    from pipelines.fetch import FetchError
    from pipelines.ingest import IngestError
    from pipelines.sweep_storage import SweepError
    from pipelines.validate import DataValidationError, VersionFileError
    from registry.errors import RegistryError
    from serving.monitor import MonitorError

    return (
        IngestError,
        DataValidationError,
        VersionFileError,
        GateNotPassedError,
        SweepError,
        RegistryError,
        MonitorError,
        FetchError,
        FileNotFoundError,
        ValueError,  # params.yaml that fails validation, an unknown version name
    )


@contextlib.contextmanager
def refusals(what: str) -> Iterator[None]:
    """Run a command: log progress lines; a typed refusal prints `what refused: why` and exits 1."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, _refusal_types()):
            raise
        typer.echo(f"{what} refused: {exc}", err=True)
        raise typer.Exit(1) from exc

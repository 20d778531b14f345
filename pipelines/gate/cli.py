"""`coinflow data validate`: the Great Expectations gate over every dataset version."""

from __future__ import annotations

from core.console import refusals


def validate() -> None:
    """The Great Expectations gate over every version; Data Docs in reports/validation/."""
    from pipelines.gate import validate as stage

    with refusals("validation"):
        stage.main()

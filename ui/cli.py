"""`coinflow ui`: start the Gradio UI (gradio is imported inside the command: --help stays fast)."""

from __future__ import annotations

import os
from typing import Annotated

import typer


def ui(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 7860,
) -> None:
    """Start the Gradio UI; it talks to the API at COINFLOW_API_URL over HTTP."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported
    from ui.app import launch
    from ui.settings import UiSettings

    settings = UiSettings()
    typer.echo(f"coinflow UI on http://{host}:{port} (API {settings.coinflow_api_url})")
    launch(host, port, settings)


if __name__ == "__main__":
    typer.run(ui)

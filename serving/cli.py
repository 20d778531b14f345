"""`coinflow serve`: the model API under uvicorn (uvloop + httptools, no access log)."""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Serve forecasts from the MLflow registry (settings: MLFLOW_TRACKING_URI, COINFLOW_*)."""
    import logging

    import uvicorn

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    # One line per failed registry call is enough: urllib3 would add one per retry.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=log_level,
    )

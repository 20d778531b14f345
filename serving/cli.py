"""`coinflow serve`: the model API under uvicorn (uvloop + httptools with bounded headers, a
header deadline and a connection cap: serving.http_protocol; no access log)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from serving.settings import ServingSettings


def checked_settings() -> ServingSettings:
    """The API's settings from the env, or exit 2 naming each bad one (values never echoed:
    a wrong admin token must not land in a log)."""
    from pydantic import ValidationError

    from serving.settings import ServingSettings

    try:
        return ServingSettings()
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        typer.echo("coinflow serve: refusing to start:\n" + "\n".join(lines), err=True)
        raise typer.Exit(2) from None


def uvicorn_options(settings: ServingSettings) -> dict[str, Any]:
    """uvicorn.run's options beyond the app: the bounded protocol and shutdown behaviour."""
    from serving.http_protocol import BoundedHttpToolsProtocol

    BoundedHttpToolsProtocol.limits = settings  # the same values a worker reads from the env
    return {
        "factory": True,
        "loop": "uvloop",
        "http": BoundedHttpToolsProtocol,
        "access_log": False,
        # uvicorn's own idle keep-alive close (5 s): our header deadline covers the rest.
        "timeout_keep_alive": 5,
    }


def serve(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="worker processes (one per core; serving.workers)")
    ] = 1,
) -> None:
    """Serve forecasts from the MLflow registry (settings: MLFLOW_TRACKING_URI, COINFLOW_*)."""
    import logging

    import uvicorn

    settings = checked_settings()  # a bad setting stops here, before any port is bound
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    # One line per failed registry call is enough: urllib3 would add one per retry.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    from serving.workers import shared_folder

    with shared_folder(workers):  # N > 1: their Prometheus files and reload stamp
        uvicorn.run(
            "serving.app:create_app",
            host=host,
            port=port,
            log_level=log_level,
            workers=workers,
            # A worker's ping goes unanswered while it loads torch (dlopen holds the GIL): tens
            # of seconds on a busy machine, where uvicorn's 5 s would restart it in a loop.
            timeout_worker_healthcheck=120,
            **uvicorn_options(settings),
        )

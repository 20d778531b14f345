"""`mlflow models serve` and our /predict give the same forecast for the same version and rows."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serving_helpers import (
    Server,
    Store,
    api_shape,
    clean_env,
    free_port,
    need_service,
    start_server,
)

pytestmark = [pytest.mark.serving, pytest.mark.integration]
VERSION = 2  # the GRU (lookback 12): version 1 is already checked against its references


@pytest.fixture(scope="module")
def mlflow_serve(
    store: Store, tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("mlflow-serve")
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # it execs `uvicorn` from PATH
    env = clean_env(
        MLFLOW_TRACKING_URI=store.uri, PATH=bin_dir + os.pathsep + os.environ.get("PATH", "")
    )
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        f"models:/btc-forecaster/{VERSION}",
        "--env-manager",
        "local",
        "-p",
        str(port),
        "-h",
        "127.0.0.1",
    ]
    try:
        server = start_server(cmd, env, tmp, tmp / "mlflow-serve.log", port, "/ping")
    except RuntimeError as exc:
        need_service(pytestconfig, False, f"`mlflow models serve` ({exc})")
    yield server
    server.stop()


@pytest.mark.parametrize("horizon", [1, 5])
def test_same_forecast_as_mlflow_models_serve(
    api: Server, mlflow_serve: Server, store: Store, horizon: int
) -> None:
    rows = store.rows(VERSION)
    needed = store.manifest["versions"][str(VERSION)]["rows_needed"]
    for end in (len(rows), len(rows) - 17, len(rows) - 60):  # three different windows
        window = rows[end - needed : end]
        columns = list(window[0])
        theirs = httpx.post(
            f"{mlflow_serve.url}/invocations",
            timeout=60,
            json={
                "dataframe_split": {
                    "columns": columns,
                    "data": [[r[c] for c in columns] for r in window],
                },
                "params": {"horizon": horizon},
            },
        )
        assert theirs.status_code == 200, theirs.text
        ours = httpx.post(
            f"{api.url}/predict?version={VERSION}",
            timeout=60,
            json={"rows": window, "horizon": horizon},
        )
        assert ours.status_code == 200, ours.text
        assert ours.json()["forecasts"] == api_shape(theirs.json()["predictions"])
        assert len(ours.json()["forecasts"]) == horizon

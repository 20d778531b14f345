"""Against a real `mlflow server`: periodic alias refresh under load, then the server stops
(the API keeps serving its cached versions, /ready says degraded) and comes back."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from serving_helpers import (
    ADMIN_TOKEN,
    Outcome,
    Server,
    Store,
    clean_env,
    free_port,
    need_service,
    run_load,
    running_api,
    start_server,
)

pytestmark = [pytest.mark.serving, pytest.mark.integration]
NAME = "outage"


class Registry:
    """A `mlflow server` (SQLite copy of the session store) that can be stopped and restarted."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.server: Server | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{self.root / 'mlflow.db'}",
            "--serve-artifacts",
            "--artifacts-destination",
            str(self.root / "served"),
        ]
        self.server = start_server(
            cmd,
            clean_env(),
            self.root,
            self.root / "mlflow-server.log",
            self.port,
            "/health",
            timeout_s=90,
        )

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


@pytest.fixture(scope="module")
def registry(
    store: Store, tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("mlflow-server")
    shutil.copy(store.root / "mlflow.db", root / "mlflow.db")  # its own registry state
    registry = Registry(root, free_port())
    try:
        registry.start()
    except RuntimeError as exc:
        need_service(pytestconfig, False, f"an `mlflow server` subprocess ({exc})")
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def outage_api(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_api(
        tmp_path_factory.mktemp("outage-api"),
        registry.uri,
        NAME,
        coinflow_admin_token=ADMIN_TOKEN,
        coinflow_refresh_s="1",
        coinflow_ready_probe_s="0.5",
    ) as server:
        yield server


def test_periodic_refresh_moves_champion_under_load(outage_api: Server, registry: Registry) -> None:
    client = MlflowClient(tracking_uri=registry.uri, registry_uri=registry.uri)
    assert httpx.get(f"{outage_api.url}/ready").json()["serving_version"] == 1

    def served_by_2(outcomes: list[Outcome]) -> bool:
        return sum(o.version == 2 for o in outcomes) >= 300

    run = run_load(
        f"{outage_api.url}/predict",
        total=6000,
        concurrency=8,
        max_s=90,
        action_at=200,
        action=lambda: client.set_registered_model_alias(NAME, "champion", "2"),
        stop_when=served_by_2,
    )
    assert run.failures == [], run.failures[:3]
    assert served_by_2(run.outcomes), "the refresh never switched champion to version 2"
    first_2 = min(o.ended for o in run.outcomes if o.version == 2)
    # No flapping: every request sent after the first version-2 answer gets version 2.
    assert {o.version for o in run.outcomes if o.started > first_2} == {2}
    assert {o.version for o in run.outcomes[:200]} == {1}


def test_outage_serves_from_cache_and_ready_says_degraded(
    outage_api: Server, registry: Registry
) -> None:
    url = outage_api.url
    before = httpx.get(f"{url}/ready").json()
    assert before["status"] == "ready"
    champion = before["serving_version"]  # 2 after the refresh test, whichever ran first
    registry.stop()
    run = run_load(f"{url}/predict", total=400, concurrency=8, max_s=60)
    assert run.failures == [] and {o.version for o in run.outcomes} == {champion}
    assert httpx.post(f"{url}/predict?version=1").json()["lineage"]["version"] == 1  # cached
    uncached = httpx.post(f"{url}/predict?version=3", timeout=30)
    assert uncached.status_code == 503 and "registry-unavailable" in uncached.json()["type"]
    ready = httpx.get(f"{url}/ready")
    body = ready.json()
    assert ready.status_code == 200 and body["status"] == "degraded", body
    assert body["registry"]["reachable"] is False and body["serving_version"] == champion
    assert any("unreachable" in reason for reason in body["reasons"])
    assert "coinflow_registry_up 0.0" in httpx.get(f"{url}/metrics").text
    reload = httpx.post(
        f"{url}/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    )
    assert reload.status_code == 503 and "registry-unavailable" in reload.json()["type"]
    registry.start()  # back: the next probe/refresh sees it
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/ready").json()["status"] != "ready":
        assert time.monotonic() < deadline, "/ready did not recover after the registry returned"
        time.sleep(0.5)
    assert "Traceback" not in outage_api.log_tail(50_000)

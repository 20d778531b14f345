"""Moving `champion` under load: new requests switch to the new version, none fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from serving_helpers import ADMIN_TOKEN, Server, Store, run_load, running_api

pytestmark = pytest.mark.serving
NAME = "hot-reload"


@pytest.fixture(scope="module")
def hot_api(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The API on `hot-reload`: no periodic refresh (only /admin/reload moves it), cache of 1."""
    with running_api(
        tmp_path_factory.mktemp("hot"),
        store.uri,
        NAME,
        coinflow_admin_token=ADMIN_TOKEN,
        coinflow_refresh_s="0",
        coinflow_cache_size="1",
    ) as server:
        yield server


def loaded(api: Server) -> list[int]:
    return sorted(httpx.get(f"{api.url}/ready").json()["loaded_versions"])


def test_lru_cache_keeps_the_champion_and_evicts_the_least_recent(hot_api: Server) -> None:
    champion = httpx.get(f"{hot_api.url}/ready").json()["serving_version"]
    other, third = [v for v in (1, 2, 3) if v != champion][:2]
    for version in (other, third, other):
        body = httpx.post(f"{hot_api.url}/predict?version={version}", timeout=60).json()
        assert body["lineage"]["version"] == version
        # Size 1, but the served champion is pinned: it stays, the other slot turns over.
        assert loaded(hot_api) == sorted({champion, version})


def test_admin_reload_under_load_switches_without_failures(
    hot_api: Server, store: Store, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_uri=store.uri, registry_uri=store.uri)
    assert httpx.get(f"{hot_api.url}/ready").json()["serving_version"] == 1

    def promote() -> dict[str, object]:
        client.set_registered_model_alias(NAME, "champion", "2")
        response = httpx.post(
            f"{hot_api.url}/admin/reload",
            timeout=120,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    try:
        run = run_load(
            f"{hot_api.url}/predict",
            total=2000,
            concurrency=8,
            max_s=120,
            action_at=300,
            action=promote,
        )
    finally:
        client.set_registered_model_alias(NAME, "champion", "1")
    assert run.failures == [], run.failures[:3]
    assert len(run.outcomes) == 2000
    assert run.action_result == {
        "changed": {"champion": {"from": 1, "to": 2}},
        "aliases": {"champion": 2},
    }
    assert run.action_started is not None and run.action_ended is not None
    before = [o.version for o in run.outcomes if o.ended < run.action_started]
    after = [o.version for o in run.outcomes if o.started > run.action_ended]
    assert set(before) == {1} and len(before) >= 300
    assert after and set(after) == {2}, "requests sent after the reload must get version 2"

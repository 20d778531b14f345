"""Problem details name the real cause and never a local path: a shed registry call is a 503
that says so (not "registry unreachable"); a corrupt artifact is a 500 logged once."""

from __future__ import annotations

import logging
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest
from fastapi.testclient import TestClient
from serving_helpers import Store, app_settings, copy_store

from serving.app import create_app
from serving.problems import without_paths


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "reading: sqlite:////srv/app/mlruns.db is locked",
            "reading: sqlite:///…/mlruns.db is locked",
        ),
        ("No such file: '/tmp/coinflow-version-x/a/weights.pt'", "No such file: '…/weights.pt'"),
        ("at /home/me/project/params.yaml.", "at …/params.yaml."),
        (
            "see http://mlflow:5000/api/2.0/mlflow/runs",
            "see http://mlflow:5000/api/2.0/mlflow/runs",
        ),
        ("http://localhost/api/2.0/x", "http://localhost/api/2.0/x"),
        ("models:/btc-forecaster/3 failed", "models:/btc-forecaster/3 failed"),
        ("POST /admin/reload", "POST /admin/reload"),
        ("v0.3/features and 80/95% bands", "v0.3/features and 80/95% bands"),
    ],
)
def test_local_paths_are_cut_to_their_last_component(text: str, shown: str) -> None:
    assert without_paths(text) == shown


@pytest.fixture
def hung_registry() -> Iterator[str]:
    """A tracking server that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.serving
def test_a_shed_registry_call_is_a_busy_503_not_an_outage(
    hung_registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One registry slot, held by a call the registry never answers: the next call that needs
    the registry is shed at once, answered 503 registry-busy with Retry-After, naming neither
    an outage nor the store; the registry's state in /ready is not changed by it."""
    from serving.cache import ModelCache
    from serving.registry_client import RegistryClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings = app_settings(hung_registry, "m")
    app = create_app(settings)
    registry = RegistryClient.connect("m", hung_registry, hung_registry, slots=1)
    cache = app.state.cache = ModelCache(registry, 1, "champion")
    app.state.prediction_log = None
    failures: list[Exception] = []

    def hold_the_slot() -> None:
        try:
            cache.refresh()
        except Exception as exc:  # the hung registry times out: an outage, recorded
            failures.append(exc)

    holder = threading.Thread(target=hold_the_slot)
    holder.start()
    time.sleep(0.5)  # the holder is waiting on the registry with the only slot
    try:
        response = TestClient(app).get("/models")
        status = cache.status.last_error
    finally:
        holder.join(timeout=30)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert body["type"] == "urn:coinflow:problem:registry-busy"
    assert body["title"] == "Too many registry calls in flight"
    assert "shed" in body["detail"] and "1 registry calls are already in flight" in body["detail"]
    assert "unreachable" not in body["detail"] and "127.0.0.1" not in body["detail"]
    assert status is None  # shed, never tried: no outage recorded
    assert failures and cache.status.last_error is not None  # the hung call is one, later


# version → how its private artifacts are broken, and what the problem and the log must say
BROKEN = {2: ("weights", "UnpicklingError"), 3: ("rows", "recent_rows.json")}


def corrupt_copy(store: Store, root: Path) -> Store:
    """A private copy of the store whose btc-forecaster versions in BROKEN have private,
    broken artifacts ("weights": random bytes; "rows": the shipped rows removed)."""
    copy = copy_store(store, root / "store")
    db = sqlite3.connect(copy.uri.removeprefix("sqlite:///"))
    for version, (corrupt, _) in BROKEN.items():
        where = ("btc-forecaster", version)
        (location,) = db.execute(
            "SELECT storage_location FROM model_versions WHERE name = ? AND version = ?", where
        ).fetchone()
        private = root / f"artifacts-v{version}"
        shutil.copytree(url2pathname(urlparse(location).path), private)
        if corrupt == "weights":
            (private / "artifacts" / "weights.pt").write_bytes(b"\x80not a torch file" * 8)
        else:
            (private / "artifacts" / "recent_rows.json").unlink()
        with db:
            db.execute(
                "UPDATE model_versions SET storage_location = ? WHERE name = ? AND version = ?",
                (private.as_uri(), *where),
            )
    db.close()
    return copy


@pytest.mark.serving
def test_a_corrupt_artifact_is_a_500_logged_once_without_paths(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each broken version answers 500 model-load-failed with the reason (a missing file named
    by its last component only), the same answer every time; the server logs it once."""
    copy = corrupt_copy(store, tmp_path)
    settings = app_settings(copy.uri, "btc-forecaster", coinflow_refresh_s=0)
    caplog.set_level(logging.ERROR, logger="serving.cache")
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 240
        while client.get("/ready").json()["startup"] != "done":
            assert time.monotonic() < deadline, "the app never finished starting"
            time.sleep(0.1)
        answers = {
            v: [client.post(f"/predict?version={v}", json={}) for _ in range(3)] for v in BROKEN
        }
        served = client.post("/predict?version=1", json={})
    assert served.status_code == 200, served.text  # the other versions still answer
    for version, (_, reason) in BROKEN.items():
        for response in answers[version]:
            assert response.status_code == 500, response.text  # not a retry-later 503
            body = response.json()
            assert body["type"] == "urn:coinflow:problem:model-load-failed"
            assert body["version"] == version and reason in body["detail"]
            assert "/tmp" not in body["detail"] and str(tmp_path) not in body["detail"]
            assert body["detail"] == answers[version][0].json()["detail"]
        logged = [r.getMessage() for r in caplog.records]
        mine = [m for m in logged if f"version {version} cannot be served" in m]
        assert len(mine) == 1 and reason in mine[0], logged  # once, with the reason
    assert "…/recent_rows.json" in answers[3][0].json()["detail"]  # the path, cut

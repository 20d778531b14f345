"""The /predict body is byte for byte what the slow path built (json.dumps of the whole answer),
whether its parts come freshly encoded or from the version's cache, and an alias move or a new
calibration state never serves a stale cached text (in-process app over a copy of the store)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import mlflow
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from serving_helpers import REPO, Store, app_settings, copy_store

from core.tracking import MLFLOW_URI_VARS, restored_env
from forecasting.features import CLOSE
from serving.app import create_app
from serving.predictor import Calibrator, LoadedModel
from serving.routes.predict import shown_levels
from serving.schemas import PredictRequest, row_arrays
from tests.serving.build_registry import NAMES_ALIASES

pytestmark = [pytest.mark.serving, pytest.mark.slow]
NAME = "interop"  # a name whose aliases this test may move in its own copy


@pytest.fixture(scope="module")
def client(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app in this process over a copy of the store, logging to a private SQLite file."""
    tmp = tmp_path_factory.mktemp("answer-bytes")
    copy = copy_store(store, tmp / "store")
    # The aliases this test reads, as build_registry sets them, on its own copy: whatever an
    # earlier test on this worker did to the shared store's aliases of NAME does not matter.
    registry = mlflow.MlflowClient(tracking_uri=copy.uri, registry_uri=copy.uri)
    for alias, version in NAMES_ALIASES.items():
        registry.set_registered_model_alias(NAME, alias, str(version))
    settings = app_settings(
        copy.uri,
        NAME,
        coinflow_refresh_s=0,
        coinflow_prediction_log_url=f"sqlite:///{tmp / 'predictions.db'}",
    )
    # create_app sets MLflow's process-wide URIs (and MLflow mirrors them into os.environ): both
    # put back as they were, so later tests' settings are theirs.
    uri = mlflow.get_tracking_uri()
    with restored_env(*MLFLOW_URI_VARS):  # left last: after the set_*_uri calls below
        try:
            with TestClient(create_app(settings)) as test_client:
                deadline = time.monotonic() + 120
                while test_client.get("/ready").json()["startup"] != "done":
                    assert time.monotonic() < deadline, "the app never started"
                    time.sleep(0.1)
                test_client.store = copy  # type: ignore[attr-defined]
                yield test_client
        finally:
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)


def slow_body(app: Any, prediction_id: str, query: dict[str, Any], body: dict[str, Any]) -> bytes:
    """The answer as /predict built it before its parts were cached: one json.dumps."""
    from serving.predictor import points

    cache, days = app.state.cache, app.state.settings.coinflow_history_days
    version = query.get("version")
    model = cache.model(version) if version else cache.by_alias(query.get("alias", "champion"))
    shown = shown_levels(model, query.get("levels"))
    horizon = body.get("horizon", 1)
    if body.get("rows") is None:
        out = model.predict(None, None, horizon)
        history = model.recent_history(days)
    else:
        inputs = row_arrays(PredictRequest.model_validate(body).rows or [])
        out = model.predict(*inputs, horizon)
        history = points(inputs[0][-days:], inputs[1][-days:, CLOSE]) if days else []
    from serving.prediction_log import forecast_points

    calibration = {**model.lineage["calibration"], **out.calibrator.lineage}
    answer = {
        "prediction_id": prediction_id,
        "forecasts": forecast_points(out.dates, out.quantiles, model.levels, shown),
        "history": history,
        "lineage": {
            **model.lineage,
            "calibration": calibration,
            "aliases": cache.aliases_of(model.version),
        },
    }
    return json.dumps(answer, allow_nan=False, separators=(",", ":")).encode()


def check(client: TestClient, query: dict[str, Any], body: dict[str, Any]) -> bytes:
    """POST twice (fresh, then cached parts): each body equals the slow path's, byte for byte."""
    params = {k: (list(map(str, v)) if isinstance(v, list) else str(v)) for k, v in query.items()}
    seen = []
    for _ in range(2):
        response = client.post("/predict", params=params, json=body or None)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        pid = json.loads(response.content)["prediction_id"]
        assert response.content == slow_body(client.app, pid, query, body)
        seen.append(response.content.replace(pid.encode(), b"ID"))
    assert seen[0] == seen[1]
    return seen[0]


def test_bodies_equal_the_slow_path(
    client: TestClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COINFLOW_WORKDIR", str(REPO))  # the row rules come from params.yaml
    rows = store.rows(1)[-11:]  # version 1 reads 11 rows
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({}, {}),  # the default champion
        ({}, {"horizon": 7}),
        ({"levels": [0.8]}, {}),
        ({"levels": [0.95, 0.5]}, {"horizon": 3}),
        ({"alias": "challenger"}, {"horizon": 2}),
        ({"version": 3}, {}),
        ({"version": 1}, {"rows": rows}),
        ({"version": 1, "levels": [0.9]}, {"rows": rows, "horizon": 5}),
        ({"alias": "champion"}, {"rows": rows, "horizon": 2}),
    ]
    bodies = [check(client, query, body) for query, body in cases]
    assert len(set(bodies)) == len(bodies)  # every case answered differently


def test_an_alias_move_or_a_new_state_is_never_served_stale(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COINFLOW_WORKDIR", str(REPO))  # the row rules come from params.yaml
    before = check(client, {}, {"horizon": 2})
    store: Store = client.store  # type: ignore[attr-defined]
    registry = MlflowClient(tracking_uri=store.uri, registry_uri=store.uri)
    registry.set_registered_model_alias(NAME, "baseline", "1")  # now on the champion too
    try:
        client.app.state.cache.refresh()  # type: ignore[attr-defined]
        moved = check(client, {}, {"horizon": 2})
        assert moved != before and b'"aliases":["baseline","champion"]' in moved
    finally:
        registry.set_registered_model_alias(NAME, "baseline", "3")
        client.app.state.cache.refresh()  # type: ignore[attr-defined]
    model: LoadedModel = client.app.state.cache.model(1)  # type: ignore[attr-defined]
    state, old = model.calibrator.state, model.calibrator
    assert state is not None, "version 1 calibrates adaptively"
    # A state one update further, swapped in as use_state does (the encoded parts are kept:
    # their keys hold the state's digest).
    newer = type(state)(**{**state.__dict__, "updates": state.updates + 1})
    model.calibrator, model._cached = Calibrator.of(newer, "stored"), {}
    try:
        swapped = check(client, {}, {"horizon": 2})
        assert swapped != before and b'"source":"stored"' in swapped
    finally:
        model.calibrator, model._cached = old, {}
    assert check(client, {}, {"horizon": 2}) == before

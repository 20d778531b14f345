"""/predict's query parameters as documented: the comma form of ?levels, levels bounded to (0, 1)
in the schema and at run time, versions written in digits, and no repeated selector."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from serving_helpers import Server, app_settings

from serving.app import create_app
from serving.cache import ModelCache
from serving.registry_client import RegistryClient
from tests.processes import free_port

NOWHERE = f"http://127.0.0.1:{free_port()}"  # a registry that never answers: never reached


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """The real app in process, its model cache on a registry the requests never reach (every
    request here is refused before a model is looked up)."""
    settings = app_settings(NOWHERE, "m")
    app = create_app(settings)
    app.state.cache = ModelCache(RegistryClient.connect("m", NOWHERE, NOWHERE), 1, "champion")
    app.state.prediction_log = None
    yield TestClient(app)


def predict_parameters(client: TestClient) -> dict[str, Any]:
    operation = client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    return {p["name"]: p["schema"] for p in operation["parameters"]}


@pytest.mark.unit
def test_the_schema_bounds_levels_and_versions(client: TestClient) -> None:
    params = predict_parameters(client)
    levels = next(s for s in params["levels"]["anyOf"] if s["type"] == "array")
    assert levels["items"] == {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}
    assert params["levels"]["maxItems"] == 16
    version = next(s for s in params["version"]["anyOf"] if s["type"] == "integer")
    assert version["minimum"] == 1 and version["maximum"] == 2**31 - 1


@pytest.mark.unit
@pytest.mark.parametrize(
    ("query", "where", "words"),
    [
        ("version=1.0", "query.version", "whole number"),
        ("version=%201", "query.version", "whole number"),
        ("version=+1", "query.version", "whole number"),
        ("version=0", "query.version", "greater than or equal to 1"),
        ("levels=1", "query.levels", "less than 1"),
        ("levels=0.8,0", "query.levels", "greater than 0"),
        ("levels=0.8,-0.5", "query.levels", "greater than 0"),
        ("levels=0.8,", "query.levels", "valid number"),
        ("levels=" + ",".join(["0.5"] * 17), "query.levels", "at most 16 levels"),
    ],
)
def test_malformed_parameters_are_422_naming_them(
    client: TestClient, query: str, where: str, words: str
) -> None:
    response = client.post(f"/predict?{query}", json={})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["type"] == "urn:coinflow:problem:validation-error"
    assert body["detail"].startswith(where) and words in body["detail"], body


@pytest.mark.unit
@pytest.mark.parametrize(
    "query", ["version=2&version=3", "alias=champion&alias=challenger", "version=2&version=2"]
)
def test_a_repeated_selector_is_refused_not_the_last_one_used(
    client: TestClient, query: str
) -> None:
    response = client.post(f"/predict?{query}", json={})
    assert response.status_code == 422, response.text
    name = query.split("=")[0]
    assert response.json()["detail"] == f"?{name} is given 2 times: give it once"


@pytest.mark.serving
@pytest.mark.parametrize("query", ["levels=0.8,0.95", "levels=0.95&levels=0.8"])
def test_the_comma_form_of_levels_picks_those_intervals(api: Server, query: str) -> None:
    """The README's ?levels=0.8,0.95 and the repeated form answer the same two intervals."""
    response = httpx.post(f"{api.url}/predict?{query}", json={"horizon": 2}, timeout=30)
    assert response.status_code == 200, response.text
    for point in response.json()["forecasts"]:
        assert [i["level"] for i in point["intervals"]] == [0.95, 0.8]
    everything = httpx.post(f"{api.url}/predict", json={"horizon": 2}, timeout=30).json()
    assert len(everything["forecasts"][0]["intervals"]) > 2

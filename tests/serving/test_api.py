"""The API on a real uvicorn port against a real MLflow store: answers, lineage, every error."""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from serving_helpers import ADMIN_TOKEN, Server, Store, running_api

pytestmark = pytest.mark.serving
PROBLEM = "application/problem+json"


def post(api: Server, query: str = "", **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{api.url}/predict{query}", timeout=30, **kwargs)


def assert_problem(response: httpx.Response, status: int, slug: str, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["type"].endswith(":" + slug), body
    assert body["title"] and body["detail"]
    for word in words:
        assert word in body["detail"], body


def next_days(last: str, n: int) -> list[str]:
    start = dt.date.fromisoformat(last)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range(1, n + 1)]


def test_default_is_the_champion_with_full_lineage(api: Server, store: Store) -> None:
    response = post(api)
    assert response.status_code == 200, response.text
    body = response.json()
    lineage = body["lineage"]
    assert lineage["model_name"] == "btc-forecaster" and lineage["version"] == 1
    assert lineage["aliases"] == ["champion"]
    assert lineage["run_id"] == store.manifest["versions"]["1"]["run_id"]
    assert lineage["data_version"] == store.manifest["data_version"] == "v0.3"
    assert lineage["dvc_md5"] == store.manifest["dvc_md5"]
    assert lineage["git_sha"] == store.manifest["git_sha"]
    assert dt.datetime.fromisoformat(lineage["trained_at"]).year >= 2024
    assert lineage["kind"] == "torch" and lineage["rows_needed"] == 11
    # The forecast is the pyfunc's own predict() on the rows it ships with, to the last bit.
    assert body["forecasts"] == store.reference(1, 1)
    rows = store.rows(1)
    assert body["forecasts"][0]["date"] == next_days(rows[-1]["date"], 1)[0] == "2024-11-01"
    assert [p["date"] for p in body["history"]] == [r["date"] for r in rows[-60:]]
    assert [p["close"] for p in body["history"]] == [r["btc_close"] for r in rows[-60:]]


@pytest.mark.parametrize(
    ("query", "version", "alias", "kind"),
    [
        ("?version=2", 2, "challenger", "torch"),
        ("?alias=challenger", 2, "challenger", "torch"),
        ("?alias=champion", 1, "champion", "torch"),
        ("?version=3", 3, "baseline", "persistence"),
    ],
)
def test_version_and_alias_queries(
    api: Server, store: Store, query: str, version: int, alias: str, kind: str
) -> None:
    body = post(api, query, json={"horizon": 7}).json()
    assert body["lineage"]["version"] == version and body["lineage"]["kind"] == kind
    assert alias in body["lineage"]["aliases"]
    assert body["forecasts"] == store.reference(version, 7)
    assert [f["date"] for f in body["forecasts"]] == next_days("2024-10-31", 7)


def test_horizon_is_recursive_and_bounded(api: Server) -> None:
    closes = [f["close"] for f in post(api, json={"horizon": 30}).json()["forecasts"]]
    assert len(closes) == 30 and all(math.isfinite(c) and c > 0 for c in closes)
    assert (
        post(api, json={"horizon": 30}).json()["forecasts"][0]
        == post(api, json={"horizon": 1}).json()["forecasts"][0]
    )
    for horizon in (0, 31, "soon"):
        assert_problem(post(api, json={"horizon": horizon}), 422, "validation-error", "horizon")


def test_explicit_rows(api: Server, store: Store) -> None:
    rows = store.rows(1)
    # The latest shipped rows sent explicitly give the default forecast; they are the history.
    same = post(api, json={"horizon": 7, "rows": rows[-11:]}).json()
    assert same["forecasts"] == store.reference(1, 7)
    assert [p["close"] for p in same["history"]] == [r["btc_close"] for r in rows[-11:]]
    # Other prices → another forecast, dated after the last row sent.
    cheaper = [
        {**r, **{c: r[c] / 2 for c in ("btc_open", "btc_high", "btc_low", "btc_close")}}
        for r in rows[-31:-20]
    ]
    body = post(api, json={"rows": cheaper, "horizon": 2}).json()
    assert [f["date"] for f in body["forecasts"]] == next_days(cheaper[-1]["date"], 2)
    assert body["forecasts"][0]["close"] < rows[-21]["btc_close"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda rows: rows[-10:], ["needs exactly 11", "got 10"]),
        (lambda rows: rows[-12:], ["needs exactly 11", "got 12"]),
        (lambda rows: rows[-12:-6] + rows[-5:], ["consecutive"]),
        (lambda rows: [*rows[-11:-1], {**rows[-1], "btc_close": -1.0}], ["btc_close", "greater"]),
        (lambda rows: [*rows[-11:-1], {**rows[-1], "gold_filled": 2}], ["gold_filled"]),
        (
            lambda rows: [*rows[-11:-1], {k: v for k, v in rows[-1].items() if k != "eth_close"}],
            ["eth_close", "required"],
        ),
        (lambda rows: list(reversed(rows[-11:])), ["consecutive"]),
    ],
)
def test_bad_rows_are_422_naming_the_rule(
    api: Server, store: Store, change: Any, words: list[str]
) -> None:
    rows = change(store.rows(1))
    response = post(api, json={"rows": rows})
    assert response.status_code == 422
    assert_problem(response, 422, response.json()["type"].rsplit(":", 1)[1], *words)


def dated(rows: list[dict[str, Any]], last: str) -> list[dict[str, Any]]:
    """The same rows re-dated to consecutive days ending on `last`."""
    end = dt.date.fromisoformat(last)
    n = len(rows)
    return [{**r, "date": str(end - dt.timedelta(days=n - 1 - i))} for i, r in enumerate(rows)]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        # numbers must be JSON numbers, not strings that look like them
        (lambda r: [*r[:-1], {**r[-1], "btc_close": str(r[-1]["btc_close"])}], ["btc_close"]),
        (lambda r: [*r[:-1], {**r[-1], "btc_volume": "1_0_0"}], ["btc_volume"]),
        # the data gate's OHLC rules
        (
            lambda r: [*r[:-1], {**r[-1], "btc_high": r[-1]["btc_low"] * 0.9}],
            ["OHLC", "High >= Low"],
        ),
        (
            lambda r: [*r[:-1], {**r[-1], "btc_high": r[-1]["btc_close"] * 1000}],
            ["OHLC", "High <= max_wick"],
        ),
        # dates no BTC price can have (pandas' nanosecond range ends 2262-04-11)
        (lambda r: dated(r, "2262-04-20"), ["outside"]),
        (lambda r: dated(r, "9999-12-31"), ["outside"]),
        (lambda r: dated(r, "2000-01-01"), ["outside", "2009-01-03"]),
        (lambda r: dated(r, str(dt.date.today() + dt.timedelta(days=5))), ["outside"]),
    ],
)
def test_strict_numbers_ohlc_rules_and_sane_dates(
    api: Server, store: Store, change: Any, words: list[str]
) -> None:
    response = post(api, json={"rows": change(store.rows(1)[-11:])})
    assert_problem(response, 422, "validation-error", *words)


def test_horizon_must_be_a_json_integer(api: Server) -> None:
    for horizon in ("7", 7.5, True):
        assert_problem(post(api, json={"horizon": horizon}), 422, "validation-error", "horizon")
    assert post(api, json={"horizon": 7}).status_code == 200


def test_non_finite_and_malformed_bodies_are_422(api: Server, store: Store) -> None:
    rows = store.rows(1)[-11:]
    text = json.dumps({"rows": rows}).replace(str(rows[-1]["btc_volume"]), "NaN", 1)
    headers = {"content-type": "application/json"}
    assert_problem(post(api, content=text, headers=headers), 422, "validation-error", "btc_volume")
    assert_problem(post(api, content=b"{bad json", headers=headers), 422, "validation-error")
    assert_problem(post(api, json=[1, 2]), 422, "validation-error")
    assert_problem(post(api, json={"horizon": 1, "horizn": 2}), 422, "validation-error", "horizn")


def test_unknown_version_unset_alias_and_both_queries(api: Server) -> None:
    assert_problem(post(api, "?version=999"), 404, "unknown-version", "999")
    assert_problem(post(api, "?alias=nobody"), 404, "alias-not-set", "nobody", "champion")
    assert_problem(post(api, "?version=1&alias=champion"), 422, "invalid-input", "not both")
    assert_problem(post(api, "?version=0"), 422, "validation-error", "version")
    assert_problem(post(api, "?alias=bad%20alias"), 422, "validation-error", "alias")


def test_oversize_bodies_are_413(api: Server) -> None:
    big = b'{"horizon": 1, "pad": "' + b"x" * 300_000 + b'"}'
    assert_problem(
        post(api, content=big, headers={"content-type": "application/json"}),
        413,
        "body-too-large",
        "262144",
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is only known by counting
        yield b'{"horizon": 1, "pad": "'
        for _ in range(40):
            yield b"y" * 10_000
        yield b'"}'

    response = post(api, content=chunks(), headers={"content-type": "application/json"})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert_problem(response, 413, "body-too-large")
    assert post(api).status_code == 200  # the server is fine afterwards


def test_a_partial_body_is_408_within_the_read_deadline(api: Server) -> None:
    """A client that declares 1000 bytes and sends 20 is answered and dropped after the body
    deadline (COINFLOW_BODY_TIMEOUT_S, 5 s), not held; other requests are served meanwhile."""
    import socket

    host, port = api.url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 1000\r\n\r\n" + b'{"horizon": 1, "pad"'
        )
        assert post(api).status_code == 200  # the stalled client blocks nobody
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"body-timeout" in answer and 4.5 < waited < 10, waited


def test_admin_reload_needs_the_bearer_token(api: Server) -> None:
    url = f"{api.url}/admin/reload"
    missing = httpx.post(url)
    assert_problem(missing, 401, "unauthorized", "Bearer")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_problem(httpx.post(url, headers={"Authorization": "Basic abc"}), 401, "unauthorized")
    assert_problem(
        httpx.post(url, headers={"Authorization": "Bearer wrong"}),
        403,
        "forbidden",
        "does not match",
    )
    ok = httpx.post(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
    assert ok.status_code == 200, ok.text
    assert ok.json()["changed"] == {} and ok.json()["aliases"]["champion"] == 1


def test_models_lists_versions_aliases_and_metrics(api: Server, store: Store) -> None:
    post(api, "?version=2")
    body = httpx.get(f"{api.url}/models").json()
    assert body["name"] == "btc-forecaster"
    assert body["aliases"] == {"champion": 1, "challenger": 2, "baseline": 3}
    versions = {v["version"]: v for v in body["versions"]}
    assert list(versions) == [3, 2, 1]
    assert versions[1]["aliases"] == ["champion"] and versions[1]["kind"] == "torch"
    assert versions[3]["kind"] == "persistence" and versions[2]["loaded"] is True
    assert versions[1]["run_id"] == store.manifest["versions"]["1"]["run_id"]
    assert versions[1]["dvc_md5"] == store.manifest["dvc_md5"]
    assert 0 < versions[1]["metrics"]["test_mase"] < 5 and versions[1]["metrics"]["test_mae"] > 0
    assert dt.datetime.fromisoformat(versions[1]["created_at"])


def test_latest_sweep_comes_from_mlflow_runs(api: Server, store: Store) -> None:
    body = httpx.get(f"{api.url}/sweeps/latest").json()
    assert body["parent_run_id"] == store.manifest["sweep_parent"]
    assert body["study_name"] == "serving-sweep"
    assert [t["trial_number"] for t in body["trials"]] == [0, 1, 2]
    first = body["trials"][0]
    assert (first["cell"], first["hidden_size"], first["num_layers"], first["lookback"]) == (
        "gru",
        16,
        1,
        10,
    )
    assert first["lr"] == pytest.approx(0.001) and first["val_loss"] == pytest.approx(0.5)
    assert first["test_mase"] == pytest.approx(0.99) and first["status"] == "FINISHED"


def test_health_ready_and_metrics(api: Server) -> None:
    assert httpx.get(f"{api.url}/health").json()["status"] == "ok"
    ready = httpx.get(f"{api.url}/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["serving_version"] == 1 and body["reasons"] == []
    assert body["registry"]["reachable"] is True and 1 in body["loaded_versions"]
    post(api)
    text = httpx.get(f"{api.url}/metrics").text
    assert 'coinflow_http_requests_total{method="POST",route="/predict",status="200"}' in text
    assert (
        'coinflow_http_request_duration_seconds_bucket{le="0.005",method="POST",'
        'route="/predict"}' in text
    )
    assert 'coinflow_model_version{alias="champion"} 1.0' in text
    assert 'coinflow_predictions_total{version="1"}' in text
    assert "coinflow_registry_up 1.0" in text
    assert_problem(httpx.get(f"{api.url}/nowhere"), 404, "not-found")


def test_without_token_or_model(store: Store, tmp_path: Any) -> None:
    """No admin token → admin disabled; a model name not in the registry → up but not ready."""
    with running_api(tmp_path, store.uri, "not-registered") as api:
        assert_problem(
            httpx.post(f"{api.url}/admin/reload", headers={"Authorization": "Bearer anything"}),
            403,
            "forbidden",
            "disabled",
            "COINFLOW_ADMIN_TOKEN",
        )
        assert httpx.get(f"{api.url}/health").status_code == 200
        ready = httpx.get(f"{api.url}/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
        assert "not set" in ready.json()["reasons"][0]
        assert_problem(post(api), 404, "alias-not-set", "not-registered")
        assert httpx.get(f"{api.url}/models").json() == {
            "name": "not-registered",
            "aliases": {},
            "versions": [],
        }

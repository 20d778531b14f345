"""Every /predict answer is logged off the request path (SQLite here, Postgres in the
integration tests), a shadow alias is forecast and logged after answering, and a failing
shadow or a down log database never changes an answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from serving_helpers import Server, Store, running_api

from serving import log_database, prediction_log

pytestmark = pytest.mark.serving


def log_engine(api: Server) -> sa.Engine:
    """The SQLite log of an API started by running_api."""
    return log_database.engine_for(f"sqlite:///{api.log.parent / f'predictions-{api.port}.db'}")


def logged(engine: sa.Engine, where: Any = None, n: int = 1) -> list[dict[str, Any]]:
    """Wait (bounded) until at least `n` matching records are written; return them all. The
    first record waits for the writer process to start (imports, migration): seconds when the
    machine is loaded."""
    deadline = time.monotonic() + 30
    query = prediction_log.answers.select().order_by(prediction_log.answers.c.created_at)
    if where is not None:
        query = query.where(where)
    while True:
        try:
            with engine.connect() as connection:
                rows = [dict(r) for r in connection.execute(query).mappings()]
        except sa.exc.OperationalError:  # the writer has not created the tables yet
            rows = []
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


@pytest.fixture(scope="module")
def shadow_api(tmp_path_factory: pytest.TempPathFactory, store: Store) -> Iterator[Server]:
    """An API serving @champion (v1) and shadowing @challenger (v2)."""
    tmp = tmp_path_factory.mktemp("shadow-api")
    with running_api(
        tmp, store.uri, "btc-forecaster", coinflow_shadow_alias="challenger"
    ) as server:
        yield server


def test_every_answer_has_an_id_and_a_complete_record(api: Server, store: Store) -> None:
    engine = log_engine(api)
    body = httpx.post(f"{api.url}/predict?alias=challenger", json={"horizon": 3}).json()
    pid = body["prediction_id"]
    assert len(pid) == 32
    (record,) = logged(engine, prediction_log.answers.c.id == pid)
    assert (record["model_name"], record["version"], record["alias"]) == (
        "btc-forecaster",
        2,
        "challenger",
    )
    assert (record["shadow"], record["horizon"], record["rows_source"]) == (False, 3, "dataset")
    last_row = store.rows(2)[-1]["date"]
    assert str(record["origin"]) == last_row and record["rows"] is None
    assert [p["close"] for p in record["forecast"]] == [p["close"] for p in body["forecasts"]]
    assert record["code_fingerprint"] == body["lineage"]["code_fingerprint"]
    with engine.connect() as connection:
        days = (
            connection.execute(
                prediction_log.forecast_days.select()
                .where(prediction_log.forecast_days.c.forecast_key == record["forecast_key"])
                .order_by(prediction_log.forecast_days.c.step)
            )
            .mappings()
            .all()
        )
    assert [d["step"] for d in days] == [1, 2, 3]
    bands = {b["level"]: b for b in body["forecasts"][0]["intervals"]}
    assert (
        days[0]["lower_80"] == bands[0.8]["lower"] and days[0]["upper_95"] == bands[0.95]["upper"]
    )
    assert len(days[0]["quantiles"]) == len(body["lineage"]["levels"])

    # Explicit rows: stored with the record; the same rows hash the same, whoever asks.
    rows = store.rows(1)[-11:]
    first = httpx.post(f"{api.url}/predict?version=1", json={"rows": rows}).json()
    again = httpx.post(f"{api.url}/predict", json={"rows": rows}).json()
    a, b = (
        logged(engine, prediction_log.answers.c.id == x["prediction_id"])[0] for x in (first, again)
    )
    assert a["rows_source"] == "request" and a["rows"] == rows
    assert a["rows_hash"] == b["rows_hash"] and a["id"] != b["id"]
    assert a["forecast_key"] == b["forecast_key"]  # the same answer: its forecast stored once
    assert a["alias"] is None and b["alias"] == "champion"  # ?version=N asks for no alias

    ready = httpx.get(f"{api.url}/ready").json()
    assert ready["status"] == "ready" and ready["prediction_log"]["healthy"]
    assert ready["prediction_log"]["written"] >= 3
    metrics = httpx.get(f"{api.url}/metrics").text
    assert "coinflow_prediction_log_written" in metrics
    assert "coinflow_prediction_log_dropped 0.0" in metrics


def test_the_shadow_alias_is_logged_and_never_returned(shadow_api: Server, store: Store) -> None:
    engine = log_engine(shadow_api)
    body = httpx.post(f"{shadow_api.url}/predict", json={"horizon": 2}).json()
    assert body["lineage"]["version"] == 1  # the champion answers
    records = logged(engine, n=2)
    served = [r for r in records if not r["shadow"]]
    shadows = [r for r in records if r["shadow"]]
    assert [r["id"] for r in served] == [body["prediction_id"]]
    (shadow,) = shadows
    assert (shadow["version"], shadow["alias"], shadow["horizon"]) == (2, "challenger", 2)
    assert shadow["forecast"] != served[0]["forecast"]


def test_a_failing_shadow_never_affects_the_answer(tmp_path: Path, store: Store) -> None:
    with running_api(
        tmp_path, store.uri, "btc-forecaster", coinflow_shadow_alias="no-such-alias"
    ) as api:
        for _ in range(3):
            response = httpx.post(f"{api.url}/predict", json={"horizon": 1})
            assert response.status_code == 200 and response.json()["lineage"]["version"] == 1
        deadline = time.monotonic() + 10
        while "coinflow_shadow_failures_total 3.0" not in httpx.get(f"{api.url}/metrics").text:
            assert time.monotonic() < deadline, "shadow failures were not counted"
            time.sleep(0.1)
        assert len(logged(log_engine(api), n=3)) == 3  # the answers themselves are all logged


def test_a_down_log_database_degrades_ready_and_answers_go_on(tmp_path: Path, store: Store) -> None:
    down = "postgresql+psycopg2://postgres@127.0.0.1:1/coinflow"  # nothing listens on port 1
    with running_api(
        tmp_path, store.uri, "btc-forecaster", coinflow_prediction_log_url=down
    ) as api:
        started = time.monotonic()
        for _ in range(20):
            response = httpx.post(f"{api.url}/predict", json={"horizon": 1})
            assert response.status_code == 200 and response.json()["prediction_id"]
        assert time.monotonic() - started < 10  # logging never waits for the database
        deadline = time.monotonic() + 15
        while (ready := httpx.get(f"{api.url}/ready").json())["status"] != "degraded":
            assert time.monotonic() < deadline, ready
            time.sleep(0.2)
        assert any("prediction log not written" in r for r in ready["reasons"])
        assert "postgres@127" not in str(ready)  # the URL's user is redacted
        assert ready["serving_version"] == 1  # still serving

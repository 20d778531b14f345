"""The prediction log on a real Postgres database: a real `coinflow serve` migrates it (alembic),
logs N concurrent answers exactly once each, `coinflow monitor score` scores them there,
`coinflow monitor replay` reproduces one of them, and GET /monitoring adds the champion's moves
from the registry's audit trail."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from core.params import MonitorParams
from forecasting.forecast import input_frame
from serving import log_database, prediction_log
from serving.monitoring import monitor, trusted
from tests.serving.serving_helpers import Server, Store, copy_store, running_api

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "btc-forecaster"
ORIGINS = pd.date_range("2024-09-01", "2024-09-24", freq="D").date  # v0.3 days: closes known
HORIZON = 2
WORKERS = 8  # concurrent keep-alive connections, loopback only
# No verdict on 24 days: this test is about the store, the rule has its own tests.
PARAMS = MonitorParams(
    window_days=30, min_days=60, max_mase=1.1, coverage_tol=0.1, auto_rollback=False
)


@pytest.fixture
def pg_store(tmp_path: Path, store: Store) -> Store:
    """A copy of the session store (tests/conftest.py): v1 (tiny torch, lookback 10) is
    @champion of MODEL; this test rolls it back there, not in the shared store."""
    return copy_store(store, tmp_path / "store")


@pytest.fixture
def api(tmp_path: Path, pg_store: Store, fresh_pg_db: str) -> Iterator[Server]:
    """The API serving MODEL, logging to the fresh Postgres database (not migrated yet)."""
    with running_api(
        tmp_path,
        pg_store.uri,
        MODEL,
        coinflow_prediction_log_url=fresh_pg_db,
        coinflow_refresh_s="0",
    ) as server:
        yield server


def requests_rows(real_versions: Path, rows_needed: int) -> dict[dt.date, list[dict[str, Any]]]:
    """Per origin day: the rows_needed v0.3 rows ending that day, as a client sends them."""
    frame = pd.read_parquet(real_versions / "v0.3.parquet")
    frame.index = pd.DatetimeIndex(frame.index).date
    out = {}
    for origin in ORIGINS:
        part = frame.loc[:origin].tail(rows_needed).rename_axis("date").reset_index()
        out[origin] = input_frame(part).to_dict(orient="records")
    return out


def written(engine: sa.Engine, n: int, timeout_s: float = 20.0) -> int:
    """Wait (bounded) until `n` predictions are in the database; how many there are."""
    deadline = time.monotonic() + timeout_s
    count = sa.select(sa.func.count()).select_from(prediction_log.predictions)
    while True:
        try:
            with engine.connect() as connection:
                got = int(connection.execute(count).scalar_one())
        except sa.exc.ProgrammingError:  # the writer has not migrated yet
            got = 0
        if got >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_the_prediction_log_on_postgres(
    api: Server,
    pg_store: Store,
    fresh_pg_db: str,
    real_versions: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from typer.testing import CliRunner

    from cli.main import app
    from registry.store import open_registry

    assert fresh_pg_db.startswith("postgresql+psycopg2://")
    rows = requests_rows(real_versions, int(pg_store.manifest["versions"]["1"]["rows_needed"]))

    # N concurrent answers of @champion (the default), each from rows ending on its own day.
    def ask(client: httpx.Client, origin: dt.date) -> dict[str, Any]:
        body = {"rows": rows[origin], "horizon": HORIZON}
        response = client.post(f"{api.url}/predict", json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    with (
        httpx.Client(timeout=30, limits=httpx.Limits(max_connections=WORKERS)) as client,
        ThreadPoolExecutor(WORKERS) as pool,
    ):
        answers = dict(zip(ORIGINS, pool.map(lambda o: ask(client, o), ORIGINS), strict=True))
    ids = {a["prediction_id"] for a in answers.values()}
    assert len(ids) == len(ORIGINS) and {a["lineage"]["version"] for a in answers.values()} == {1}

    # The API's writer migrated the empty database to exactly the declared schema.
    engine = log_database.engine_for(fresh_pg_db)
    try:
        assert written(engine, len(ORIGINS)) == len(ORIGINS)
        time.sleep(0.5)  # nothing beyond N arrives late
        with engine.connect() as connection:
            assert (
                compare_metadata(MigrationContext.configure(connection), prediction_log.metadata)
                == []
            )
            stored = {
                r["id"]: dict(r)
                for r in connection.execute(prediction_log.answers.select()).mappings()
            }
            days = connection.execute(
                sa.select(sa.func.count()).select_from(prediction_log.forecast_days)
            ).scalar_one()
        assert set(stored) == ids and days == len(ORIGINS) * HORIZON
        for origin, answer in answers.items():
            record = stored[answer["prediction_id"]]
            assert (record["origin"], record["alias"], record["rows_source"]) == (
                origin,
                "champion",
                "request",
            )
            assert record["rows"] == rows[origin]
            assert [p["close"] for p in record["forecast"]] == [
                p["close"] for p in answer["forecasts"]
            ]
        ready = httpx.get(f"{api.url}/ready").json()["prediction_log"]
        assert (ready["written"], ready["dropped"], ready["healthy"]) == (len(ORIGINS), 0, True)

        # `coinflow monitor score` on the Postgres log: next-day MAE as computed by hand.
        monkeypatch.setenv("MLFLOW_TRACKING_URI", pg_store.uri)
        monkeypatch.setenv("MLFLOW_REGISTRY_URI", pg_store.uri)  # never an earlier test's registry
        monkeypatch.setenv("COINFLOW_EXPERIMENT", "serving-tests")
        monkeypatch.setenv("COINFLOW_PREDICTION_LOG_URL", fresh_pg_db)
        monkeypatch.setenv("COINFLOW_MODEL_NAME", MODEL)
        registry = open_registry(MODEL)
        platform = trusted.version_rows(real_versions / "v0.3.parquet")  # the platform's rows
        report = monitor.score(engine, registry, platform, PARAMS)
        assert report.versions == [1] and report.scored_days == len(ORIGINS) + HORIZON - 1
        close = platform.closes()
        nxt = np.array([close[o + dt.timedelta(days=1)] for o in ORIGINS])
        served = np.array([answers[o]["forecasts"][0]["close"] for o in ORIGINS])
        mae = np.abs(served - nxt).mean()
        naive = np.abs(np.array([close[o] for o in ORIGINS]) - nxt).mean()
        scores = monitor.read_scores(engine, MODEL)
        newest_day = ORIGINS[-1] + dt.timedelta(days=1)
        last = scores[(scores["window"] == "30d") & (scores["day"] == newest_day)].iloc[0]
        assert (last["version"], last["role"], last["n"]) == (1, "champion", len(ORIGINS))
        assert last["mae"] == pytest.approx(mae, rel=1e-9)
        assert last["persistence_mae"] == pytest.approx(naive, rel=1e-9)
        assert not report.alert
        monitoring = httpx.get(f"{api.url}/monitoring").json()
        assert {(s["version"], s["role"]) for s in monitoring["series"]} == {(1, "champion")}

        # `coinflow monitor replay` of one answer: identical.
        pid = answers[ORIGINS[5]]["prediction_id"]
        replayed = CliRunner().invoke(app, ["monitor", "replay", pid])
        assert replayed.exit_code == 0, replayed.output
        assert f"identical: {HORIZON} day(s) of v1" in replayed.output

        # The champion's moves reach GET /monitoring (the Live tab marks them): a real guarded
        # rollback is one; an alert, in the same audit trail, moves nothing.
        from registry.aliases import record_alert, rollback

        assert monitoring["alias_moves"] == [] and monitoring["alias_moves_error"] is None
        registry.client.set_registered_model_alias(MODEL, "previous-champion", "2")
        record_alert(registry, 1, {"reason": "integration test"})
        back = rollback(registry, reason="integration test")
        moved = httpx.get(f"{api.url}/monitoring").json()
        assert moved["alias_moves_error"] is None
        assert [(m["action"], m["version"], m["record_run_id"]) for m in moved["alias_moves"]] == [
            ("rollback", 2, back.record_run_id)
        ]
        at = dt.datetime.fromisoformat(moved["alias_moves"][0]["at"])
        assert abs(at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    finally:
        engine.dispose()  # the database is dropped after the test: no connection may linger
        import mlflow

        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]

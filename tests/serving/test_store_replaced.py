"""SQLite files removed or replaced under a running API: a removed MLflow store makes /ready
degraded (cached models still answer), a restored copy with a new champion is read by
/admin/reload; a removed prediction log is reopened, migrated and written again."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from serving_helpers import ADMIN_TOKEN, Store, copy_store, running_api

from serving import log_database, prediction_log

pytestmark = [pytest.mark.serving, pytest.mark.slow]
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def ready_when(url: str, check: Any, timeout_s: float = 20.0) -> dict[str, Any]:
    """GET /ready until `check(body)` holds (bounded); the body."""
    deadline = time.monotonic() + timeout_s
    while not check(body := httpx.get(f"{url}/ready").json()):
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
    return dict(body)


def found(engine: sa.Engine, prediction_id: str) -> dict[str, Any] | None:
    """A logged answer, None until it is written (or while the log has no tables yet)."""
    try:
        return prediction_log.read_predictions(engine, prediction_id)
    except sa.exc.OperationalError:
        return None


def test_a_removed_then_restored_store_and_a_removed_log(tmp_path: Path, store: Store) -> None:
    served = copy_store(store, tmp_path / "store")
    restored = copy_store(store, tmp_path / "backup")
    with sqlite3.connect(restored.root / "mlflow.db") as db:  # the backup's champion is v2
        db.execute(
            "UPDATE registered_model_aliases SET version = 2 "
            "WHERE name = 'btc-forecaster' AND alias = 'champion'"
        )
    with running_api(
        tmp_path,
        served.uri,
        "btc-forecaster",
        coinflow_admin_token=ADMIN_TOKEN,
        coinflow_refresh_s="0",
        coinflow_ready_probe_s="0",  # every /ready probes the registry (in the background)
    ) as api:
        ready_when(api.url, lambda b: b["status"] == "ready" and b["serving_version"] == 1)

        (served.root / "mlflow.db").unlink()
        gone = ready_when(api.url, lambda b: b["status"] != "ready")
        assert gone["status"] == "degraded" and gone["serving_version"] == 1
        assert any("mlflow.db was removed" in r for r in gone["reasons"]), gone["reasons"]
        answer = httpx.post(f"{api.url}/predict", json={"horizon": 1})
        assert answer.status_code == 200 and answer.json()["lineage"]["version"] == 1  # cached

        os.replace(restored.root / "mlflow.db", served.root / "mlflow.db")  # a new inode
        reload = httpx.post(f"{api.url}/admin/reload", headers=AUTH)
        assert reload.status_code == 200, reload.text
        assert reload.json()["changed"] == {"champion": {"from": 1, "to": 2}}
        back = ready_when(api.url, lambda b: b["status"] == "ready")
        assert back["serving_version"] == 2

        # The prediction log's file removed (by hand, or by a cleanup): reopened, migrated.
        log = tmp_path / f"predictions-{api.port}.db"
        engine = log_database.engine_for(f"sqlite:///{log}")
        first = httpx.post(f"{api.url}/predict", json={"horizon": 1}).json()["prediction_id"]
        deadline = time.monotonic() + 30
        while found(engine, first) is None:
            assert time.monotonic() < deadline, api.log_tail()
            time.sleep(0.2)
        for path in log.parent.glob(f"{log.name}*"):
            path.unlink()
        later = httpx.post(f"{api.url}/predict", json={"horizon": 2}).json()["prediction_id"]
        deadline = time.monotonic() + 30
        while found(engine, later) is None:
            assert time.monotonic() < deadline, api.log_tail()
            time.sleep(0.2)
        assert found(engine, first) is None  # a new, empty log
        engine.dispose()
        assert "was removed or replaced: reopened" in api.log_tail()
        logged = httpx.get(f"{api.url}/ready").json()["prediction_log"]
        assert logged["healthy"] and logged["dropped"] == 0

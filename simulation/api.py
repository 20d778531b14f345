"""The replay's view of the platform: the real API in-process, and the audit trail by day.

`coinflow simulate` talks to serving.app.create_app exactly as a client would (POST /predict
with the day's rows, POST /admin/reload after an alias move, GET /ready for the prediction
log's writer), through Starlette's TestClient: lifespan, background tasks and all.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from simulation.workspace import SimulationError, workspace_env

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from forecasting.packaged import PackagedModel
    from registry.store import Registry


class Api:
    """The real FastAPI app (serving.app.create_app) on the workspace's registry and log,
    called in-process through Starlette's TestClient (lifespan, background tasks and all)."""

    def __init__(self, client: TestClient, token: str, registry: Registry) -> None:
        self.client, self.token, self.registry = client, token, registry
        self.submitted = 0
        self._packaged: dict[int, PackagedModel] = {}

    def packaged(self, version: int) -> PackagedModel:
        """A version as its kernel sees it (loaded once per version: a version never changes):
        how many rows it reads, and what the monitor advances its calibration state with."""
        from registry.store import load_packaged

        if version not in self._packaged:
            self._packaged[version] = load_packaged(self.registry, version)
        return self._packaged[version]

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until /ready says a champion is served."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.client.get("/ready").status_code == 200:
                return
            time.sleep(0.1)
        raise SimulationError(
            f"the API was not ready within {timeout_s:.0f} s: "
            f"{self.client.get('/ready').json().get('reasons')}"
        )

    def reload(self) -> None:
        """POST /admin/reload: the served aliases and calibration states follow the registry and
        the state store now."""
        answer = self.client.post(
            "/admin/reload", headers={"Authorization": f"Bearer {self.token}"}
        )
        if answer.status_code != 200:
            raise SimulationError(f"/admin/reload answered {answer.status_code}: {answer.text}")

    def forecast(
        self, alias: str, version: int, frame: pd.DataFrame, horizon: int
    ) -> dict[str, Any]:
        """POST /predict?alias=… with the version's last rows of `frame` (rows <= the day)."""
        from forecasting.features import INPUT_COLUMNS

        rows = frame[INPUT_COLUMNS].tail(self.packaged(version).rows_needed).astype("float64")
        payload = [
            {"date": day.date().isoformat(), **values}
            for day, values in zip(rows.index, rows.to_dict("records"), strict=True)
        ]
        answer = self.client.post(
            "/predict", params={"alias": alias}, json={"horizon": horizon, "rows": payload}
        )
        if answer.status_code != 200:
            raise SimulationError(
                f"/predict?alias={alias} answered {answer.status_code}: {answer.text[:500]}"
            )
        self.submitted += 1
        body: dict[str, Any] = answer.json()
        return body

    def wait_logged(self, timeout_s: float = 30.0) -> None:
        """Until the prediction log's writer has written every answer (as /ready reports)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.client.get("/ready").json().get("prediction_log") or {}
            if state.get("dropped"):
                raise SimulationError(f"the prediction log dropped records: {state}")
            if state.get("written", 0) >= self.submitted:
                return
            time.sleep(0.01)
        raise SimulationError(
            f"the prediction log did not write {self.submitted} records within {timeout_s:.0f} s"
        )


@contextlib.contextmanager
def running_api(root: Path, registry: Registry) -> Iterator[Api]:
    """The app on the workspace's registry and prediction log."""
    env = workspace_env(root)
    with api_on(
        registry,
        env["MLFLOW_TRACKING_URI"],
        env["MLFLOW_REGISTRY_URI"],
        env["COINFLOW_PREDICTION_LOG_URL"],
    ) as api:
        yield api


@contextlib.contextmanager
def api_on(registry: Registry, tracking_uri: str, registry_uri: str, log_url: str) -> Iterator[Api]:
    """The app on a registry and a prediction log (no periodic alias refresh: the replay
    reloads after every alias move, as a deploy hook would)."""
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from serving.app import create_app
    from serving.settings import ServingSettings

    token = secrets.token_hex(16)
    settings = ServingSettings(
        mlflow_tracking_uri=tracking_uri,
        mlflow_registry_uri=registry_uri,
        coinflow_model_name=registry.name,
        coinflow_default_alias="champion",
        coinflow_refresh_s=0,
        coinflow_admin_token=SecretStr(token),
        coinflow_prediction_log_url=log_url,
        coinflow_shadow_alias=None,
        coinflow_history_days=0,
        coinflow_rate_limit_per_s=0,  # the replay posts days as fast as it can, from one client
    )
    with TestClient(create_app(settings)) as client:
        api = Api(client, token, registry)
        api.wait_ready()
        yield api


# --- the audit trail, in simulated time ---------------------------------------------------
def new_records(registry: Registry, seen: set[str]) -> list[dict[str, Any]]:
    """Decision records (promote, refuse, rollback, alert, ...) written since the last call,
    oldest first, with the simulated day each was dated (registry.records.decided_on)."""
    from core import tags
    from registry.records import read_record, record_runs
    from registry.store import get_version

    out = []
    for run in reversed(record_runs(registry)):
        if run.info.run_id in seen or run.info.status != "FINISHED":
            continue
        seen.add(run.info.run_id)
        record = read_record(registry, run.info.run_id)
        version = int(record["version"])
        kind = (get_version(registry, version).tags or {}).get(tags.KIND, "")
        out.append(
            {
                "day": dt.datetime.fromisoformat(str(record["decided_at"])).date().isoformat(),
                "action": record.get("action"),
                "version": version,
                "kind": kind,
                "champion_before": record.get("champion_before"),
                "champion_after": record.get("champion_after"),
                "reason": record.get("reason", ""),
                "record_run_id": run.info.run_id,
            }
        )
    return out

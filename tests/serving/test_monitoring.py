"""`coinflow monitor`: live scores of logged forecasts with known answers, the monitor rule
(alert, guarded rollback) on a real registry, GET /monitoring, and replaying served answers."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from serving_helpers import Server, Store
from typer.testing import CliRunner

from core.params import MonitorParams
from registry.records import record_runs
from registry.store import Registry, aliases
from serving import log_database, prediction_log
from serving.monitoring import monitor, trusted

pytestmark = pytest.mark.serving
LEVELS = [0.025, 0.1, 0.5, 0.9, 0.975]
ORIGINS = pd.date_range("2024-09-01", "2024-09-30", freq="D").date  # v0.3 days: closes known
PARAMS = MonitorParams(
    window_days=30, min_days=20, max_mase=1.1, coverage_tol=0.1, auto_rollback=False
)


@pytest.fixture
def registry(store: Store) -> Iterator[Any]:
    """MLflow's global URIs on the session store (read_record and model loading use them)."""
    mlflow.set_tracking_uri(store.uri)
    mlflow.set_registry_uri(store.uri)
    client = MlflowClient(tracking_uri=store.uri, registry_uri=store.uri)
    experiment = client.get_experiment_by_name("serving-tests")
    assert experiment is not None

    def open_reg(name: str) -> Registry:
        return Registry(name, client, experiment.experiment_id)

    yield open_reg
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]


def platform(real_versions: Path) -> trusted.PlatformRows:
    """The platform's rows: v0.3, cut from the repository's raw exports."""
    return trusted.version_rows(real_versions / "v0.3.parquet")


def closes(real_versions: Path) -> pd.Series:
    return platform(real_versions).closes()


def record(model: str, version: int, origin: dt.date, median: float, **kw: Any) -> dict[str, Any]:
    """A logged next-day forecast: median, 80% band ±3%, 95% band ±6% around it."""
    q = [median * 0.94, median * 0.97, median, median * 1.03, median * 1.06]
    day = origin + dt.timedelta(days=1)
    return {
        "id": prediction_log.new_id(),
        "created_at": dt.datetime.now(dt.UTC),
        "model_name": model,
        "version": version,
        "alias": kw.get("alias", "champion"),
        "shadow": kw.get("shadow", False),
        "origin": origin,
        "horizon": 1,
        "rows_source": "dataset",
        "rows_hash": f"{origin}-{version}",
        "rows": None,
        "data_md5": None,
        "code_fingerprint": None,
        "levels": LEVELS,
        "forecast": [
            {
                "date": str(day),
                "close": median,
                "quantiles": q,
                "intervals": [
                    {"level": 0.95, "lower": q[0], "upper": q[4]},
                    {"level": 0.8, "lower": q[1], "upper": q[3]},
                ],
            }
        ],
    }


def expected(close: pd.Series, bias: float) -> dict[str, float]:
    """The live scores of `median = close_t x (1 + bias)` over ORIGINS, computed directly."""
    c = np.array([close[d] for d in ORIGINS])
    nxt = np.array([close[d + dt.timedelta(days=1)] for d in ORIGINS])
    med = c * (1 + bias)
    inside80 = (med * 0.97 <= nxt) & (nxt <= med * 1.03)
    return {
        "mae": float(np.mean(np.abs(med - nxt))),
        "persistence_mae": float(np.mean(np.abs(c - nxt))),
        "mase": float(np.mean(np.abs(med - nxt)) / np.mean(np.abs(c - nxt))),
        "coverage_80": float(inside80.mean()),
    }


def write(engine: sa.Engine, records: list[dict[str, Any]]) -> None:
    log_database.migrate(engine)
    prediction_log.write_records(engine, records)


def test_live_scores_alert_and_guarded_rollback(
    tmp_path: Path, store: Store, registry: Any, real_versions: Path
) -> None:
    registry = registry("monitoring")
    registry.client.set_registered_model_alias(registry.name, "champion", "1")
    registry.client.set_registered_model_alias(registry.name, "previous-champion", "3")
    close = closes(real_versions)
    engine = log_database.engine_for(f"sqlite:///{tmp_path / 'log.db'}")
    # v1 (champion) forecasts 5% too high; v3 (previous-champion) is shadowed as persistence.
    bad = [record(registry.name, 1, d, close[d] * 1.05) for d in ORIGINS]
    good = [
        record(registry.name, 3, d, close[d], alias="previous-champion", shadow=True)
        for d in ORIGINS
    ]
    again = [{**r, "id": prediction_log.new_id()} for r in bad[:5]]  # the same answer served twice
    write(engine, bad + good + again)  # counts once

    report = monitor.score(engine, registry, platform(real_versions), PARAMS)
    assert report.scored_days == 30 and report.versions == [1, 3]
    scores = monitor.read_scores(engine, registry.name)
    last = scores[(scores["window"] == "30d") & (scores["day"] == dt.date(2024, 10, 1))]
    champion = last[last["version"] == 1].iloc[0]
    shadow = last[last["version"] == 3].iloc[0]
    want = expected(close, 0.05)
    assert champion["role"] == "champion" and champion["n"] == 30
    for key, value in want.items():
        assert champion[key] == pytest.approx(value, rel=1e-9), key
    assert shadow["role"] == "shadow" and shadow["mase"] == pytest.approx(1.0, rel=1e-12)
    assert shadow["coverage_80"] == pytest.approx(expected(close, 0.0)["coverage_80"])
    seven = scores[(scores["window"] == "7d") & (scores["day"] == dt.date(2024, 10, 1))]
    assert set(seven["n"]) == {7}

    # The alert: recorded in the audit trail and on the version; no alias moved (auto off).
    assert report.alert and not report.rolled_back and "live MASE" in report.reason
    assert aliases(registry) == {
        "champion": 1,
        "previous-champion": 3,
        "challenger": 2,
        "baseline": 3,
    }
    version = registry.client.get_model_version(registry.name, "1")
    assert "live MASE" in version.tags["coinflow.live.alert"]
    assert float(version.tags["coinflow.live.mase_30d"]) == pytest.approx(want["mase"], rel=1e-3)
    alerts = [  # the audit trail, wherever records live (registry.records)
        r for r in record_runs(registry) if r.data.tags.get("coinflow.action") == "alert"
    ]
    assert len(alerts) == 1 and alerts[0].info.status == "FINISHED"
    # One monitoring run per version, next-day scores stepped by day.
    history = registry.client.get_metric_history(report.runs[1], "live_champion_30d_mase")
    assert history[-1].step == dt.date(2024, 10, 1).toordinal()
    assert history[-1].value == pytest.approx(want["mase"], rel=1e-9)

    # auto_rollback: previous-champion scored better over the same days, so it comes back.
    rolled = monitor.score(
        engine,
        registry,
        platform(real_versions),
        PARAMS.model_copy(update={"auto_rollback": True}),
    )
    assert rolled.alert and rolled.rolled_back and "rolling back" in rolled.reason
    assert aliases(registry)["champion"] == 3 and aliases(registry)["previous-champion"] == 1
    decided = registry.client.get_model_version(registry.name, "3").tags["coinflow.decision"]
    assert decided == "restored"


def test_a_healthy_champion_is_left_alone_and_monitoring_serves_the_scores(
    api: Server, store: Store, registry: Any, real_versions: Path, tmp_path: Path
) -> None:
    registry = registry("btc-forecaster")  # the API's model; its champion is v1
    close = closes(real_versions)
    mine = [record(registry.name, 1, d, close[d]) for d in ORIGINS]
    # The verdict on a log holding only these persistence-median forecasts (MASE 1); their
    # ±3% 80% band covered 70% of these days, within a lenient 0.3.
    private = log_database.engine_for(f"sqlite:///{tmp_path / 'log.db'}")
    write(private, mine)
    before = aliases(registry)
    lenient = PARAMS.model_copy(update={"auto_rollback": True, "coverage_tol": 0.3})
    report = monitor.score(private, registry, platform(real_versions), lenient)
    assert not report.alert and "healthy" in report.reason and aliases(registry) == before

    # The API's own log (other tests' answers are in it too) serves what scoring wrote.
    engine = log_database.engine_for(f"sqlite:///{api.log.parent / f'predictions-{api.port}.db'}")
    write(engine, mine)
    monitor.score(engine, registry, platform(real_versions), PARAMS)
    body = httpx.get(f"{api.url}/monitoring?window=30d").json()
    assert body["model_name"] == "btc-forecaster" and body["computed_at"].endswith(("Z", "+00:00"))
    month = {(s["version"], s["role"], s["day"]): s for s in body["series"]}
    point = month[(1, "champion", "2024-10-01")]
    assert point["n"] == 30 and point["mase"] == pytest.approx(1.0, rel=1e-12)
    assert point["coverage_80"] == pytest.approx(expected(close, 0.0)["coverage_80"])
    assert {s["window"] for s in body["series"]} == {"30d"}
    assert {(s["version"], s["role"], s["window"]) for s in body["latest"]} >= {
        (1, "champion", w) for w in ("7d", "30d", "90d")
    }
    from ui.client import Monitoring  # the UI reads exactly this answer

    assert Monitoring.model_validate(body).series
    assert httpx.get(f"{api.url}/monitoring?window=1y").status_code == 422


def logged(engine: sa.Engine, pid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (found := prediction_log.read_predictions(engine, pid)) is None:
        assert time.monotonic() < deadline, pid
        time.sleep(0.1)
    return found


def test_replay_is_identical_and_a_tampered_input_fails(
    api: Server, store: Store, registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = registry("btc-forecaster")
    url = f"sqlite:///{api.log.parent / f'predictions-{api.port}.db'}"
    engine = log_database.engine_for(url)
    rows = store.rows(2)[-13:]
    explicit = httpx.post(f"{api.url}/predict?version=2", json={"rows": rows, "horizon": 5})
    shipped = httpx.post(f"{api.url}/predict?version=3", json={"horizon": 7})
    ids = [r.json()["prediction_id"] for r in (explicit, shipped)]
    for pid in ids:
        logged(engine, pid)
        same, why = monitor.replay(engine, registry, pid)
        assert same, why

    from cli.main import app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.setenv("COINFLOW_PREDICTION_LOG_URL", url)
    monkeypatch.setenv("COINFLOW_MODEL_NAME", "btc-forecaster")
    ok = CliRunner().invoke(app, ["monitor", "replay", ids[0]])
    assert ok.exit_code == 0 and "identical: 5 day(s) of v2" in ok.output, ok.output

    tampered = [*rows[:-1], {**rows[-1], "btc_close": rows[-1]["btc_close"] * 1.01}]
    p, f, sent = prediction_log.predictions, prediction_log.forecasts, prediction_log.inputs
    its_input = (
        sa.select(f.c.input_key)
        .join(p, p.c.forecast_key == f.c.key)
        .where(p.c.id == ids[0])
        .scalar_subquery()
    )
    with engine.begin() as connection:  # the stored rows, as one tampering with the file would
        connection.execute(sent.update().where(sent.c.key == its_input).values(rows=tampered))
    same, why = monitor.replay(engine, registry, ids[0])
    assert not same and "were changed" in why
    failed = CliRunner().invoke(app, ["monitor", "replay", ids[0]])
    assert failed.exit_code == 1 and "were changed" in failed.output
    missing = CliRunner().invoke(app, ["monitor", "replay", "0" * 32])
    assert missing.exit_code == 1 and "no logged prediction" in missing.output

"""The calibration state store, end to end: `coinflow monitor score` advances every served
version's state from the platform's rows and writes it; a running API swaps it in without a
restart (on its refresh loop) and its intervals move by exactly the state's multipliers; every
answer names its state, the log records it, and `coinflow monitor replay` reproduces the answer
with it. One calibrator everywhere: for the same model, day and state the API's interval is
PackagedModel.calibrated_run's (the backtest and promotion re-score path) and the replay's."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from serving_helpers import Server, Store, running_api
from test_trusted_scores import MODEL, log_file, monitor_cli, platform, project_root, rows_at

from forecasting.features import CLOSE
from forecasting.quantiles import interval_pairs
from registry.store import Registry, load_packaged
from serving import calibration_states, log_database, prediction_log

pytestmark = pytest.mark.serving
VERSIONS = (1, 3)  # a torch model (the champion) and the persistence baseline


@pytest.fixture(scope="module")
def refreshing(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The API on `btc-forecaster`, re-reading aliases and calibration states every second."""
    with running_api(
        tmp_path_factory.mktemp("calibration-api"), store.uri, MODEL, coinflow_refresh_s="1"
    ) as server:
        yield server


def answer(api: Server, version: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    got = httpx.post(f"{api.url}/predict?version={version}", json={"rows": rows})
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def usd(close: float, quantiles: np.ndarray, levels: tuple[float, ...]) -> dict[str, Any]:
    """Next-day log-return quantiles as the API's forecast day shows them."""
    closes = close * np.exp(quantiles)
    return {
        "close": float(closes[levels.index(0.5)]),
        "intervals": [
            {"level": level, "lower": float(closes[lo]), "upper": float(closes[hi])}
            for level, (lo, hi) in interval_pairs(levels).items()
        ],
    }


def half_width(day: dict[str, Any], level: float) -> float:
    """The log-return distance from the median to the lower bound of one interval."""
    (band,) = [b for b in day["intervals"] if b["level"] == level]
    return math.log(day["close"] / band["lower"])


def test_a_new_state_reaches_the_running_api_and_every_path_agrees(
    refreshing: Server, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = platform()
    last = rows.last_day
    frame = rows.frame
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    mlflow.set_tracking_uri(store.uri)
    mlflow.set_registry_uri(store.uri)
    registry = Registry(MODEL, MlflowClient(tracking_uri=store.uri, registry_uri=store.uri))
    try:
        packaged = {v: load_packaged(registry, v) for v in VERSIONS}
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    sent = {v: rows_at(frame, last, packaged[v].rows_needed) for v in VERSIONS}

    # Nothing stored yet: each version answers with the state it shipped, and says so.
    before = {v: answer(refreshing, v, sent[v]) for v in VERSIONS}
    for v, body in before.items():
        calibration = body["lineage"]["calibration"]
        shipped = packaged[v].state
        assert (calibration["source"], calibration["digest"]) == ("shipped", shipped.digest())
        assert calibration["as_of"] == shipped.as_of < last.isoformat()

    root = project_root(tmp_path / "project")
    said = monitor_cli(["monitor", "score"], log_file(refreshing), root, store, monkeypatch)
    assert f"v1: calibration state as of {last}" in said.output, said.output
    engine = log_database.engine_for(f"sqlite:///{log_file(refreshing)}")
    stored = calibration_states.newest(engine, MODEL, list(VERSIONS))
    for v in VERSIONS:
        (audit,) = calibration_states.history(engine, MODEL, v)  # one state written per version
        shipped = packaged[v].state
        folded = (last - dt.date.fromisoformat(str(shipped.as_of))).days  # a close a day
        assert (audit["as_of"], audit["updates"]) == (last, shipped.updates + folded)
        assert audit["digest"] == stored[v].digest and audit["state"] == stored[v].state
        assert audit["data_md5"] == rows.md5(last)  # the platform rows it learned from
        listed = monitor_cli(
            ["monitor", "states", str(v)], log_file(refreshing), root, store, monkeypatch
        )
        assert f"v{v} as of {last} after {audit['updates']} updates" in listed.output
        assert audit["digest"] in listed.output and audit["data_md5"] in listed.output

    # The running API swaps the new states in on its refresh loop: no restart, no reload call.
    deadline = time.monotonic() + 30
    after = {v: answer(refreshing, v, sent[v]) for v in VERSIONS}
    while any(a["lineage"]["calibration"]["source"] != "stored" for a in after.values()):
        assert time.monotonic() < deadline, "the API never served the stored states"
        time.sleep(0.5)
        after = {v: answer(refreshing, v, sent[v]) for v in VERSIONS}

    dates, values = rows.arrays()
    end = np.flatnonzero(dates == np.datetime64(last))
    for v in VERSIONS:
        py, state = packaged[v], packaged[v].load_state(stored[v].state)
        calibration = after[v]["lineage"]["calibration"]
        assert (calibration["as_of"], calibration["digest"]) == (last.isoformat(), state.digest())
        day = {k: after[v]["forecasts"][0][k] for k in ("close", "intervals")}
        # The backtest / promotion re-score path, for the same model, day and state.
        quantiles, _ = py.calibrated_run(dates, values, end, state)
        assert day == usd(float(values[end[0], CLOSE]), quantiles[0], py.levels)
        # The intervals moved by the state's multipliers, the median not at all.
        old = before[v]["forecasts"][0]
        assert day["close"] == old["close"]
        for level in interval_pairs(py.levels):
            ratio = state.multipliers[level] / py.state.multipliers[level]
            assert half_width(day, level) / half_width(old, level) == pytest.approx(ratio)

    # The log records the state each answer used; the replay reproduces each answer with it.
    for body in (*before.values(), *after.values()):
        pid = body["prediction_id"]
        deadline = time.monotonic() + 10
        while (record := prediction_log.read_predictions(engine, pid)) is None:
            assert time.monotonic() < deadline, pid
            time.sleep(0.1)
        calibration = body["lineage"]["calibration"]
        assert (
            record["calibration_source"],
            str(record["calibration_as_of"]),
            record["calibration_digest"],
        ) == (calibration["source"], calibration["as_of"], calibration["digest"])
        replayed = monitor_cli(
            ["monitor", "replay", pid], log_file(refreshing), root, store, monkeypatch
        )
        assert replayed.exit_code == 0, replayed.output
        assert f"{calibration['source']} state {calibration['digest']}" in replayed.output
    engine.dispose()

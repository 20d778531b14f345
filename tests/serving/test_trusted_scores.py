"""Trusted data only: forecasts made on rows other than the platform's are logged and replay, but
never count as live performance, never move a calibration state or raise an alert.

The real API answers 60 requests whose rows are the platform's own (data/raw, as every dataset
version is cut), then 60 for the same days with every BTC price halved: those pass every
request check. `coinflow monitor score` (the command itself, on a project whose data/raw is the
repository's) then writes exactly the live scores, calibration states and verdict it writes for
the genuine 60 alone.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
from serving_helpers import REPO, Server, Store, running_api
from typer.testing import CliRunner, Result

from forecasting.features import INPUT_COLUMNS
from serving import log_database, prediction_log
from serving.monitoring import trusted

pytestmark = pytest.mark.serving
MODEL = "btc-forecaster"
ORIGINS = pd.date_range("2024-08-01", periods=60, freq="D").date  # closes known in data/raw
PRICES = ["btc_open", "btc_high", "btc_low", "btc_close"]


@pytest.fixture(scope="module")
def served(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The API on the session store's `btc-forecaster`, logging to its own SQLite file."""
    with running_api(
        tmp_path_factory.mktemp("trusted-api"), store.uri, MODEL, coinflow_refresh_s="0"
    ) as server:
        yield server


def project_root(tmp: Path) -> Path:
    """A project root whose params.yaml and data/raw are the repository's (read only)."""
    (tmp / "data").mkdir(parents=True)
    (tmp / "data" / "raw").symlink_to(REPO / "data" / "raw")
    shutil.copy(REPO / "params.yaml", tmp / "params.yaml")
    return tmp


def platform() -> trusted.PlatformRows:
    from core.params import load_params

    return trusted.platform_rows(
        REPO / "data" / "raw", load_params(REPO / "params.yaml").data.start
    )


def rows_at(frame: pd.DataFrame, origin: dt.date, days: int) -> list[dict[str, Any]]:
    """The `days` rows ending at `origin`, as a client sends them."""
    part = frame.loc[: pd.Timestamp(origin), INPUT_COLUMNS].tail(days).astype("float64")
    return [
        {"date": day.date().isoformat(), **values}
        for day, values in zip(part.index, part.to_dict("records"), strict=True)
    ]


def log_file(api: Server) -> Path:
    return api.log.parent / f"predictions-{api.port}.db"


def wait_logged(api: Server, n: int) -> None:
    deadline = time.monotonic() + 30
    while httpx.get(f"{api.url}/ready").json()["prediction_log"]["written"] < n:
        assert time.monotonic() < deadline, f"fewer than {n} records written"
        time.sleep(0.1)


def snapshot(api: Server, path: Path) -> Path:
    """A consistent copy of the API's log as it stands (SQLite's online backup)."""
    source, target = sqlite3.connect(log_file(api)), sqlite3.connect(path)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return path


def monitor_cli(
    args: list[str], log: Path, root: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> Result:
    """`coinflow monitor ...` as a user types it, on the project `root` and the log `log`."""
    import mlflow

    from cli.main import app

    for key, value in {
        "COINFLOW_WORKDIR": str(root),
        "MLFLOW_TRACKING_URI": store.uri,
        "MLFLOW_REGISTRY_URI": store.uri,
        "COINFLOW_EXPERIMENT": "serving-tests",
        "COINFLOW_MODEL_NAME": MODEL,
        "COINFLOW_PREDICTION_LOG_URL": f"sqlite:///{log}",
    }.items():
        monkeypatch.setenv(key, value)
    try:
        return CliRunner().invoke(app, args)
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]


def monitor_score(
    log: Path, root: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, dict[str, pd.DataFrame]]:
    """`coinflow monitor score` on one log: its output and the tables it wrote."""
    result = monitor_cli(["monitor", "score"], log, root, store, monkeypatch)
    assert result.exit_code == 0, result.output
    engine = log_database.engine_for(f"sqlite:///{log}")
    tables = {}
    with engine.connect() as connection:
        for table, drop, keys in (
            (
                prediction_log.live_scores,
                ["computed_at"],
                ["version", "role", "horizon", "window", "day"],
            ),
            (prediction_log.calibration_states, ["id", "written_at"], ["version", "as_of"]),
        ):
            frame = pd.DataFrame(connection.execute(table.select()).mappings().all())
            tables[table.name] = frame.drop(columns=drop).sort_values(keys)
    engine.dispose()
    return result.output, tables


def test_forecasts_on_other_rows_change_no_score_state_or_alert(
    served: Server, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = platform().frame
    need = store.manifest["versions"]["1"]["rows_needed"]  # the champion's
    genuine = {o: rows_at(frame, o, need) for o in ORIGINS}
    for rows in genuine.values():
        answer = httpx.post(f"{served.url}/predict", json={"rows": rows})
        assert answer.status_code == 200, answer.text
        assert answer.json()["lineage"]["version"] == 1
    wait_logged(served, len(ORIGINS))
    only_genuine = snapshot(served, tmp_path / "genuine.db")

    # The same days with BTC at half its price: consistent OHLC, positive, consecutive, dated in
    # the data's range: every request check passes, and the forecast is logged.
    halved = {
        o: [{**r, **{c: r[c] * 0.5 for c in PRICES}} for r in rows] for o, rows in genuine.items()
    }
    for origin, rows in halved.items():
        answer = httpx.post(f"{served.url}/predict", json={"rows": rows})
        assert answer.status_code == 200, answer.text
        assert answer.json()["forecasts"][0]["close"] < 0.75 * genuine[origin][-1]["btc_close"]
    wait_logged(served, 2 * len(ORIGINS))
    with_halved = snapshot(served, tmp_path / "halved.db")
    engine = log_database.engine_for(f"sqlite:///{with_halved}")
    with engine.connect() as connection:
        logged = connection.execute(
            sa.select(prediction_log.answers.c.rows_source, prediction_log.answers.c.rows)
        ).all()
    engine.dispose()
    assert len(logged) == 2 * len(ORIGINS) and {r.rows_source for r in logged} == {"request"}

    root = project_root(tmp_path / "project")
    said, wrote = monitor_score(only_genuine, root, store, monkeypatch)
    assert f"scored {len(ORIGINS)} forecast day(s) of versions [1]" in said
    champion = wrote["live_scores"]
    champion = champion[(champion["role"] == "champion") & (champion["window"] == "90d")]
    assert champion["n"].max() == len(ORIGINS)
    assert not wrote["calibration_states"].empty  # the served versions' states advanced

    said_after, wrote_after = monitor_score(with_halved, root, store, monkeypatch)
    assert said_after == said  # the same verdict (alert or none), the same states
    for name, table in wrote.items():
        pd.testing.assert_frame_equal(
            wrote_after[name].reset_index(drop=True), table.reset_index(drop=True)
        )

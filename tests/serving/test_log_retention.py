"""The prediction log stores each distinct answer once and keeps within its retention: by age
and by size, from `coinflow monitor prune` and from the writer itself, on SQLite and Postgres;
a log written before (revision 0002) reads back the same after the upgrade."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from serving import log_database, prediction_log
from serving.log_writer import PredictionLog
from serving.retention import MB, Retention, live_bytes, prune

pytestmark = pytest.mark.serving
LEVELS = [0.05, 0.1, 0.5, 0.9, 0.95]
NOW = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)


def record(n: int, days_ago: float = 0.0, rows: int = 0, **kw: Any) -> dict[str, Any]:
    """A logged answer: content `n` (equal n, equal answer), `rows` sent rows, made days ago."""
    origin = dt.date(2024, 10, 1) + dt.timedelta(days=n % 300)
    sent = [{"date": str(origin), "btc_close": 60_000.0 + n + i / 7} for i in range(rows)]
    forecast = [
        {
            "date": str(origin + dt.timedelta(days=step)),
            "close": 61_000.0 + n + step,
            "quantiles": [60_000.0 + n + step + q for q in (-900.5, -600.25, 0.0, 600.75, 900.125)],
            "intervals": [{"level": 0.8, "lower": 60_400.0, "upper": 61_600.0}],
        }
        for step in (1, 2, 3)
    ]
    return {
        "id": prediction_log.new_id(),
        "created_at": NOW - dt.timedelta(days=days_ago),
        "model_name": "m",
        "version": 1,
        "alias": "champion",
        "shadow": False,
        "origin": origin,
        "horizon": 3,
        "rows_source": "request" if rows else "dataset",
        "rows_hash": f"{n:064x}",
        "rows_days": rows or None,
        "rows": sent or None,
        "data_md5": "0" * 32,
        "code_fingerprint": "abc",
        "levels": LEVELS,
        "forecast": forecast,
        "calibration_source": "fixed",
        "calibration_as_of": None,
        "calibration_digest": None,
    } | kw


def counts(engine: sa.Engine) -> dict[str, int]:
    tables = ("predictions", "forecasts", "forecast_days", "inputs")
    with engine.connect() as connection:
        return {
            t: int(connection.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one())  # noqa: S608
            for t in tables
        }


def sqlite_log(tmp_path: Path) -> sa.Engine:
    engine = log_database.engine_for(f"sqlite:///{tmp_path / 'log.db'}")
    log_database.migrate(engine)
    return engine


def test_identical_answers_are_stored_once(tmp_path: Path) -> None:
    engine = sqlite_log(tmp_path)
    same = [record(1, rows=40) for _ in range(200)]
    prediction_log.write_records(engine, same[:100])
    prediction_log.write_records(engine, same[100:])  # known content: not encoded again
    other = record(2, rows=40)
    shadow = record(1, rows=40, version=2, alias="challenger", shadow=True)  # same rows
    prediction_log.write_records(engine, [other, shadow])
    assert counts(engine) == {"predictions": 202, "forecasts": 3, "forecast_days": 9, "inputs": 2}
    got = prediction_log.read_predictions(engine, same[150]["id"])
    assert got is not None
    assert {k: got[k] for k in same[150]} == same[150] | {"created_at": got["created_at"]}
    assert got["created_at"].replace(tzinfo=dt.UTC) == NOW
    # A second writer (process) storing the same content at the same moment: no error.
    with engine.begin() as connection:
        answer, forecast, stored_input = prediction_log.split(same[0])
        prediction_log.insert_new(connection, prediction_log.forecasts, [forecast])
        assert stored_input is not None
        prediction_log.insert_new(connection, prediction_log.inputs, [stored_input])
    assert counts(engine)["forecasts"] == 3


def test_retention_by_age_keeps_what_newer_answers_use(tmp_path: Path) -> None:
    engine = sqlite_log(tmp_path)
    old = [record(n, days_ago=400, rows=10) for n in range(20)]
    shared_old = record(99, days_ago=400, rows=10)
    shared_new = {**shared_old, "id": prediction_log.new_id(), "created_at": NOW}
    new = [record(100 + n, days_ago=1, rows=10) for n in range(5)]
    prediction_log.write_records(engine, [*old, shared_old, shared_new, *new])
    done = prune(engine, Retention(max_age_days=365, max_bytes=None), now=NOW)
    assert (done.by_age, done.by_size, done.orphans) == (21, 0, 40)  # 20 forecasts, 20 inputs
    assert counts(engine) == {"predictions": 6, "forecasts": 6, "forecast_days": 18, "inputs": 6}
    assert prediction_log.read_predictions(engine, shared_new["id"]) is not None
    assert prediction_log.read_predictions(engine, old[0]["id"]) is None


def test_retention_by_size_keeps_the_newest_under_the_cap(tmp_path: Path) -> None:
    engine = sqlite_log(tmp_path)
    records = [record(n, days_ago=(300 - n) / 24, rows=60) for n in range(300)]
    prediction_log.write_records(engine, records)
    before = live_bytes(engine)
    cap = before // 3
    done = prune(engine, Retention(max_age_days=None, max_bytes=cap), now=NOW)
    assert done.bytes_before == before and done.bytes_after == live_bytes(engine) <= cap
    assert done.bytes_after > cap * 0.5  # the oldest went, not everything
    left = counts(engine)
    assert 0 < left["predictions"] < 300 and left["inputs"] == left["forecasts"]
    assert prediction_log.read_predictions(engine, records[-1]["id"]) is not None  # the newest
    assert prediction_log.read_predictions(engine, records[0]["id"]) is None  # the oldest

    # Freed pages are reused: writing as much again grows the file by far less than it holds.
    def file_size() -> int:
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return (tmp_path / "log.db").stat().st_size

    size = file_size()
    prediction_log.write_records(engine, [record(1000 + n, rows=60) for n in range(50)])
    assert file_size() == size


def test_coinflow_monitor_prune(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.main import app

    engine = sqlite_log(tmp_path)
    today = dt.datetime.now(dt.UTC)
    prediction_log.write_records(
        engine,
        [{**record(n, rows=5), "created_at": today - dt.timedelta(days=n * 10)} for n in range(10)],
    )
    monkeypatch.setenv("COINFLOW_PREDICTION_LOG_URL", f"sqlite:///{tmp_path / 'log.db'}")
    monkeypatch.setenv("COINFLOW_MODEL_NAME", "m")
    result = CliRunner().invoke(app, ["monitor", "prune", "--max-age-days", "45"])
    assert result.exit_code == 0, result.output
    assert "5 answer(s) past the maximum age and 0 oldest for size deleted" in result.output
    result = CliRunner().invoke(app, ["monitor", "prune", "--max-mb", "0.001"])
    assert result.exit_code == 0 and "0 answer(s) past" in result.output, result.output
    assert counts(engine)["predictions"] == 0
    refused = CliRunner().invoke(app, ["monitor", "prune", "--max-mb", "-1"])
    assert refused.exit_code != 0 and "max-mb" in refused.output


@pytest.mark.slow  # a writer process
def test_the_writer_applies_the_size_cap(tmp_path: Path) -> None:
    engine = sqlite_log(tmp_path)
    cap = MB // 4
    writer = PredictionLog(
        engine, batch=50, flush_s=0.02, retention=Retention(None, cap, every_s=0.0)
    ).start()
    for n in range(400):  # ~1.5 MB of distinct 60-row inputs
        assert writer.submit(record(n, rows=60, created_at=dt.datetime.now(dt.UTC)))
    deadline = time.monotonic() + 60
    while writer.snapshot().written < 400:
        assert time.monotonic() < deadline, writer.snapshot()
        time.sleep(0.1)
    writer.close()
    assert writer.snapshot().dropped == 0
    # Pruned after each batch: never more than a batch over the cap.
    assert live_bytes(engine) <= cap + 50 * 6000
    assert counts(engine)["predictions"] < 400


def test_an_older_log_reads_back_the_same_after_the_upgrade(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    engine = log_database.engine_for(f"sqlite:///{tmp_path / 'log.db'}")
    config = Config()
    config.set_main_option("script_location", str(log_database.MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
    types = {
        c.name: c.type
        for t in (prediction_log.forecasts, prediction_log.predictions, prediction_log.inputs)
        for c in t.c
    }
    old = sa.table("predictions", *(sa.column(c, types[c]) for c in record(0)))
    days = sa.table(
        "forecast_days",
        *(sa.column(c, types.get(c, sa.String())) for c in ("prediction_id", "step", "median")),
        sa.column("day", sa.Date()),
        sa.column("quantiles", sa.JSON()),
    )
    records = [record(1, rows=8), record(1, rows=8), record(2), record(3, rows=8, days_ago=2)]
    with engine.begin() as connection:  # as revision 0002's writer stored them
        connection.execute(old.insert(), records)
        connection.execute(
            days.insert(),
            [
                {"prediction_id": r["id"], "step": step, "median": point["close"]}
                | {"day": dt.date.fromisoformat(point["date"]), "quantiles": [float(step)]}
                for r in records
                for step, point in enumerate(r["forecast"], start=1)
            ],
        )
    log_database.migrate(engine)
    for r in records:
        got = prediction_log.read_predictions(engine, r["id"])
        assert got is not None
        assert {k: got[k] for k in r if k != "created_at"} == {
            k: v for k, v in r.items() if k != "created_at"
        }
    assert counts(engine) == {"predictions": 4, "forecasts": 3, "forecast_days": 9, "inputs": 2}
    with engine.connect() as connection:
        quantiles = connection.execute(
            sa.select(prediction_log.forecast_days.c.quantiles)
        ).scalars()
        assert sorted(quantiles) == [[1.0]] * 3 + [[2.0]] * 3 + [[3.0]] * 3  # moved as stored


@pytest.mark.integration  # the machine's Postgres
def test_retention_on_postgres(fresh_pg_db: str) -> None:
    engine = log_database.engine_for(fresh_pg_db)
    try:
        log_database.migrate(engine)
        prediction_log.write_records(
            engine,
            [record(n, days_ago=n * 50, rows=30) for n in range(10)],
        )
        same = record(77, rows=30)
        prediction_log.write_records(engine, [same, {**same, "id": prediction_log.new_id()}])
        assert counts(engine)["forecasts"] == 11 and counts(engine)["predictions"] == 12
        done = prune(engine, Retention(max_age_days=365, max_bytes=None), now=NOW)
        assert done.by_age == 2 and done.bytes_after < done.bytes_before  # 400 and 450 days
        size = live_bytes(engine)
        done = prune(engine, Retention(max_age_days=None, max_bytes=size // 2), now=NOW)
        assert done.by_size > 0 and live_bytes(engine) <= size // 2
        assert prediction_log.read_predictions(engine, same["id"]) is not None  # the newest
    finally:
        engine.dispose()

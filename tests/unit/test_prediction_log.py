"""The prediction log's schema (alembic) and its queue + writer process, on a real SQLite file."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from serving import log_database, prediction_log
from serving.log_writer import PredictionLog

pytestmark = pytest.mark.unit


def record(n: int) -> dict[str, Any]:
    return {
        "id": prediction_log.new_id(),
        "created_at": dt.datetime.now(dt.UTC),
        "model_name": "m",
        "version": 1,
        "alias": "champion",
        "shadow": False,
        "origin": dt.date(2024, 10, 31),
        "horizon": 2,
        "rows_source": "dataset",
        "rows_hash": f"{n:064x}",
        "rows": None,
        "data_md5": "0" * 32,
        "code_fingerprint": "abc",
        "levels": [0.1, 0.5, 0.9],
        "forecast": [
            {
                "date": "2024-11-01",
                "close": 70000.0 + n,
                "quantiles": [69000.0, 70000.0, 71000.0],
                "intervals": [{"level": 0.8, "lower": 69000.0, "upper": 71000.0}],
            },
            {
                "date": "2024-11-02",
                "close": 70100.0,
                "quantiles": [68000.0, 70100.0, 72000.0],
                "intervals": [{"level": 0.8, "lower": 68000.0, "upper": 72000.0}],
            },
        ],
    }


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_migrations_create_exactly_the_declared_schema(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = log_database.engine_for(f"sqlite:///{tmp_path / 'log.db'}")
    log_database.migrate(engine)
    log_database.migrate(engine)  # idempotent
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), prediction_log.metadata)
    assert diff == []  # tables, columns and indexes as prediction_log.py declares them


def test_the_second_revision_fills_in_what_older_records_hold(tmp_path: Path) -> None:
    """Upgrading a log written at revision 0001: a request's row count comes from its stored
    rows, and every older answer was computed with its version's fixed offsets."""
    from alembic import command
    from alembic.config import Config

    engine = log_database.engine_for(f"sqlite:///{tmp_path / 'log.db'}")
    config = Config()
    config.set_main_option("script_location", str(log_database.MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    old_columns = [  # revision 0001's predictions table
        *("id", "created_at", "model_name", "version", "alias", "shadow", "origin", "horizon"),
        *("rows_source", "rows_hash", "rows", "data_md5", "code_fingerprint", "levels", "forecast"),
    ]
    sent = {**record(1), "rows_source": "request", "rows": [{"date": "2024-10-31"}] * 3}
    shipped = record(2)
    with engine.begin() as connection:
        for r in (sent, shipped):
            r["levels"], r["forecast"] = json.dumps(r["levels"]), json.dumps(r["forecast"])
            r["rows"] = None if r["rows"] is None else json.dumps(r["rows"])
            connection.execute(
                sa.text(
                    f"INSERT INTO predictions ({', '.join(old_columns)}) VALUES "
                    f"({', '.join(':' + c for c in old_columns)})"
                ),
                {c: r.get(c) for c in old_columns},
            )
    log_database.migrate(engine)
    got = {pid: prediction_log.read_predictions(engine, pid) for pid in (sent["id"], shipped["id"])}
    assert got[sent["id"]]["rows_days"] == 3 and got[shipped["id"]]["rows_days"] is None
    assert {g["calibration_source"] for g in got.values()} == {"fixed"}


def test_every_record_is_written_under_load(tmp_path: Path) -> None:
    engine = log_database.engine_for(f"sqlite:///{tmp_path / 'log.db'}")
    log_database.migrate(engine)
    writer = PredictionLog(engine, capacity=5000, batch=100, flush_s=0.05).start()
    records = [record(i) for i in range(2000)]
    assert all(writer.submit(r) for r in records)
    writer.close(timeout_s=30)
    assert (
        count(engine, prediction_log.predictions) == 2000
        and count(engine, prediction_log.forecast_days) == 4000
    )
    status = writer.snapshot()
    assert (status.written, status.dropped, status.healthy) == (2000, 0, True)
    stored = prediction_log.read_predictions(engine, records[7]["id"])
    assert stored is not None and stored["forecast"][0]["close"] == 70007.0


def test_a_database_that_is_down_drops_and_says_so_without_blocking(tmp_path: Path) -> None:
    # Nothing listens on port 1: every connection is refused, as by a database that is down.
    engine = log_database.engine_for("postgresql+psycopg2://postgres@127.0.0.1:1/coinflow")
    writer = PredictionLog(engine, capacity=50, batch=10, flush_s=0.01).start()
    accepted = [writer.submit(record(i)) for i in range(500)]  # put_nowait: never waits
    # The queue holds 50; none leaves it: the writer asks for a batch only once it has a schema.
    assert accepted.count(True) == 50
    deadline = time.monotonic() + 10
    while writer.snapshot().last_error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    status = writer.snapshot()
    assert not status.healthy and status.dropped == 450
    assert any("not written" in r and "127.0.0.1" in r for r in status.reasons), status.reasons
    writer.close(timeout_s=1)  # gives up on the 50 queued: counted, nothing written anywhere
    assert writer.snapshot().dropped == 500


def test_a_writer_process_that_dies_is_restarted_and_the_log_says_so(tmp_path: Path) -> None:
    import os
    import signal

    engine = log_database.engine_for(f"sqlite:///{tmp_path / 'log.db'}")
    writer = PredictionLog(engine, batch=10, flush_s=0.05, linger_s=0.01).start()
    assert writer.submit(record(0))
    wait_until(lambda: writer.snapshot().written == 1)
    first = writer._process.pid
    os.kill(first, signal.SIGKILL)  # as the OOM killer would
    wait_until(lambda: not writer.snapshot().healthy)
    status = writer.snapshot()
    assert any("writer" in r and "exited" in r for r in status.reasons), status.reasons
    assert writer.submit(record(1))  # queued meanwhile, written by the new process
    wait_until(lambda: writer.snapshot().written == 2, timeout_s=20)
    assert writer._process.pid != first and writer.snapshot().healthy
    os.kill(writer._process.pid, signal.SIGKILL)  # again, and the API shuts down meanwhile
    assert all(writer.submit(record(n)) for n in range(2, 12))
    started = time.monotonic()
    writer.close(timeout_s=10)
    assert time.monotonic() - started < 5  # no restart while closing, no wait for a dead writer
    status = writer.snapshot()
    assert (status.written, status.dropped) == (2, 10)  # every record written or counted
    assert count(engine, prediction_log.predictions) == 2


def wait_until(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def served(n: int, from_request: bool = True) -> prediction_log.Served:
    """What the request path hands over: arrays it already has (2 rows, 2 days, 3 levels)."""
    import numpy as np

    values = np.arange(16, dtype="float64").reshape(2, 8) + n
    return prediction_log.Served(
        prediction_log.new_id(),
        dt.datetime.now(dt.UTC),
        "m",
        1,
        "champion",
        False,
        (0.1, 0.5, 0.9),
        np.array(["2024-11-01", "2024-11-02"], dtype="datetime64[D]"),
        np.array([[69_000.0, 70_000.0, 71_000.0], [68_000.0, 70_100.0, 72_000.0]]) + n,
        np.array(["2024-10-30", "2024-10-31"], dtype="datetime64[D]"),
        values,
        from_request,
        "0" * 32,
        "abc",
        prediction_log.CalibrationUsed("stored", "2024-10-31", "d" * 64),
    )


def test_the_writer_builds_the_stored_record_of_a_served_forecast(tmp_path: Path) -> None:
    engine = log_database.engine_for(f"sqlite:///{tmp_path / 'log.db'}")
    writer = PredictionLog(engine, batch=10, flush_s=0.05, linger_s=0.01).start()
    sent, shipped = served(0), served(1, from_request=False)
    broken = prediction_log.Served(**{**served(2).__dict__, "quantiles": None})  # cannot be built
    assert all(writer.submit(r) for r in (sent, broken, shipped))
    wait_until(lambda: writer.snapshot().written == 2, timeout_s=30)  # close() flushes 10 s at most
    writer.close(timeout_s=10)
    status = writer.snapshot()
    # Counted as dropped; the error clears with the next good write (the log is healthy again).
    assert (status.written, status.dropped, status.healthy) == (2, 1, True)
    assert status.last_error_at is not None
    stored = prediction_log.read_predictions(engine, sent.id)
    assert stored is not None
    assert (stored["origin"], stored["horizon"], stored["rows_source"]) == (
        dt.date(2024, 10, 31),
        2,
        "request",
    )
    assert stored["rows_hash"] == prediction_log.rows_hash(
        sent.values
    )  # the rows the forecast read
    assert stored["rows_days"] == 2  # how many: the monitor compares that many platform rows
    assert (
        stored["calibration_source"],
        stored["calibration_as_of"],
        stored["calibration_digest"],
    ) == ("stored", dt.date(2024, 10, 31), "d" * 64)
    assert stored["rows"][1] == {
        "date": "2024-10-31",
        "btc_open": 8.0,
        "btc_high": 9.0,
        "btc_low": 10.0,
        "btc_close": 11.0,
        "btc_volume": 12.0,
        "eth_close": 13.0,
        "gold_close": 14.0,
        "gold_filled": 15.0,
    }
    assert stored["forecast"][1] == {
        "date": "2024-11-02",
        "close": 70_100.0,
        "quantiles": [68_000.0, 70_100.0, 72_000.0],
        "intervals": [{"level": 0.8, "lower": 68_000.0, "upper": 72_000.0}],
    }
    other = prediction_log.read_predictions(engine, shipped.id)
    assert other is not None and other["rows"] is None and other["rows_source"] == "dataset"
    assert count(engine, prediction_log.forecast_days) == 4
    with engine.connect() as connection:  # SQLite logs run in WAL mode (cheap commits)
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"

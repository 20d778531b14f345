"""The prediction log's database: engines (SQLite with WAL and a reopen when its file is
replaced, Postgres with bounded connects and statements), the schema's migrations, and one-line
error names. What is stored, and how records are shaped: serving/prediction_log.py.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from core.files import file_id

MIGRATIONS = Path(__file__).with_name("migrations")

# Postgres: a connection attempt, a statement and a lock wait each end in bounded time, so a
# database that accepts and never answers fails a write (retried) instead of hanging the writer.
PG_CONNECT_TIMEOUT_S = 5
PG_STATEMENT_TIMEOUT_MS = 15_000


def short_error(exc: BaseException) -> str:
    """One line naming a database error, credentials redacted."""
    from core.tracking import redact

    text = (str(exc).splitlines() or [""])[0][:200]
    return redact(f"{type(exc).__name__}: {text}")


def _sqlite_wal(connection: Any, _record: Any) -> None:
    # Write-ahead log, synced at checkpoints: a commit costs ~0.4 ms of the writer's CPU instead
    # of ~0.8-1.4 ms (no journal file made and deleted per transaction), readers never block the
    # writer; a power cut (not a crash of the API) may lose the last few records.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _json(value: Any) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()


def sqlite_path(engine: sa.Engine) -> Path | None:
    """The file of a SQLite engine (None: another database, or in memory)."""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return None
    return Path(engine.url.database)


def _watch_file(engine: sa.Engine, path: Path) -> None:
    """Each pooled SQLite connection remembers the file it opened; checked out after the file
    was removed or replaced (`rm predictions.db`, a restored copy), it is discarded and a new
    one opens the path again: a process never keeps writing to, or reading, a deleted file."""

    @sa.event.listens_for(engine, "connect")
    def opened(_connection: Any, record: Any) -> None:
        record.info["file_id"] = file_id(path)

    @sa.event.listens_for(engine, "checkout")
    def check(_connection: Any, record: Any, _proxy: Any) -> None:
        if record.info.get("file_id") != file_id(path):
            raise sa.exc.DisconnectionError(f"{path.name} was removed or replaced")


def engine_for(url: str) -> sa.Engine:
    """An engine for the log's URL: SQLite files get their folder, a busy timeout, WAL and a
    reopen when the file is replaced; Postgres gets connect and statement timeouts.

    JSON columns go through orjson: the same text as the json module (shortest round-trip
    floats), in a fifth of its CPU: the writer spends most of a record's time encoding rows."""
    import orjson

    codec: dict[str, Any] = {"json_serializer": _json, "json_deserializer": orjson.loads}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 5}, **codec)
        sa.event.listen(engine, "connect", _sqlite_wal)
        if (path := sqlite_path(engine)) is not None:
            _watch_file(engine, path)
        return engine
    connect: dict[str, Any] = {}
    if sa.engine.make_url(url).get_backend_name() == "postgresql":
        connect = {
            "connect_timeout": PG_CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS} "
            f"-c lock_timeout={PG_STATEMENT_TIMEOUT_MS}",
        }
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=2,
        max_overflow=2,
        pool_timeout=PG_CONNECT_TIMEOUT_S,
        connect_args=connect,
        **codec,
    )


def _alembic_chatter(record: logging.LogRecord) -> bool:
    """False for alembic's per-run lines ("Context impl SQLiteImpl.", "Will assume ... DDL.");
    an actual upgrade still logs "Running upgrade ..."."""
    return not record.getMessage().startswith(("Context impl", "Will assume"))


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest alembic revision (idempotent)."""
    # alembic logs each of its plugins at import ("setup plugin ..."): noise in every command.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    migration_log = logging.getLogger("alembic.runtime.migration")
    if _alembic_chatter not in migration_log.filters:
        migration_log.addFilter(_alembic_chatter)
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

"""Helpers tests and benchmarks share: child process groups, free ports, throwaway databases."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from typing import Any


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_group(proc: subprocess.Popen[Any], grace_s: float = 15.0) -> None:
    """SIGTERM the child's process group, SIGKILL it after `grace_s`; reap whatever is left.

    The child must have been started with `start_new_session=True` (its pid is its group id),
    so workers it forked (uvicorn, LocalExecutor) go down with it.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # grandchildren that outlived their parent


@contextlib.contextmanager
def pg_database(postgres_url: str, stem: str) -> Iterator[str]:
    """A new, empty Postgres database named cf_<stem>_<random>; dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    stem = "".join(ch if ch.isalnum() else "_" for ch in stem[:20].lower())
    name = f"cf_{stem}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(f"{postgres_url}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{postgres_url}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

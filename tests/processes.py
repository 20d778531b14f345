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


# Children a test starts carry this variable (value: a token of that test's own); whatever they
# spawn inherits it, even processes that left the process group (Airflow's task runner calls
# setpgid), so `tagged()` finds every process a test left behind.
TAG = "COINFLOW_TEST_PROCS"


def tagged(token: str) -> dict[int, str]:
    """pid → command line of every live process whose environment holds TAG=token."""
    marker = f"{TAG}={token}".encode()
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as env:
                if marker not in env.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                if stat.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                    continue  # a zombie holds nothing; its parent (or init) reaps it
            with open(f"/proc/{entry.name}/cmdline", "rb") as cmd:
                found[int(entry.name)] = cmd.read().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def leftovers(token: str, wait_s: float = 5.0) -> dict[int, str]:
    """The processes tagged with `token` still alive after `wait_s`, SIGKILLed (so nothing leaks
    into the next test) and returned, so the caller can fail on them."""
    import time

    deadline = time.monotonic() + wait_s
    while (left := tagged(token)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left

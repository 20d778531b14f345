"""Who a process is, and whether it still runs: for dead sweep workers and stale registry locks.

An identity is {"host", "pid", "started"}: the host name plus PID namespace (containers sharing
a host name never judge each other's pids), the pid, and the process's start time (a reused
pid is another process). Liveness can only be told on the same host; elsewhere it is assumed.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any


def _started(pid: int) -> str | None:
    """Process start time (clock ticks since boot) from /proc, to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]  # a zombie is dead; field 22 is starttime


def host() -> str:
    """Hostname plus PID namespace."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{namespace}"


def process_identity() -> dict[str, Any]:
    """This process: host (and PID namespace), pid and start time."""
    return {"host": host(), "pid": os.getpid(), "started": _started(os.getpid())}


def process_alive(identity: dict[str, Any]) -> bool:
    """False only when we can tell: same host, and that process is gone (or the pid reused)."""
    if identity.get("host") != host():
        return True
    started = _started(int(identity["pid"]))
    if started is None and Path("/proc/self/stat").exists():
        return False
    if started is None:  # no /proc (macOS): signal 0 checks existence only
        try:
            os.kill(int(identity["pid"]), 0)
        except ProcessLookupError:
            return False
        return True
    return identity.get("started") in (None, started)

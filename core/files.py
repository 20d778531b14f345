"""File helpers every stage shares: content hashes and atomic JSON writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes: the hash DVC 3 records for the same output."""
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _umask() -> int:
    """The process's umask, read without setting it where Linux says it (threads race on a set)."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, then rename: readers see old or new, never half.
    The file keeps its mode (a new one gets the umask's, e.g. 0644), not the temp file's 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.is_file() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: Any) -> None:
    """Indented JSON (dates and paths as text), written atomically."""
    write_atomic(path, (json.dumps(payload, indent=2, default=str) + "\n").encode())


def file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a file: what changes when it is removed and replaced (a restored
    copy, a new store at the same path); None when it is gone."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino

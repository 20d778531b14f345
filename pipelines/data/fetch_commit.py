"""The all-or-nothing half of `coinflow data fetch`: what it needs, checked before anything is
read; the changed raw files replaced and `dvc add`ed (and pushed), or everything put back.

DVC runs as `python -m dvc` of this interpreter (coinflow depends on it), so a PATH without
`dvc` changes nothing. Every file a fetch may touch is snapshotted (bytes and mode) first: the
three exports, data.dvc and data/.gitignore (which `dvc add` may write).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from core.files import write_atomic
from core.paths import ASSETS, Project, project
from pipelines.data.fetch_source import FetchError

PUSH_REMOTE_ENV = "COINFLOW_DVC_PUSH_REMOTE"
DVC_TIMEOUT_S = 600


def preflight(proj: Project, dvc: bool | None) -> bool:
    """Refuse before reading anything what a fetch could not finish; whether to `dvc add`."""
    for asset in ASSETS:
        raw = proj.raw / f"{asset}.csv"
        if not raw.is_file():
            raise FetchError(f"{raw} not found: run `dvc pull data.dvc` first")
    if not os.access(proj.raw, os.W_OK | os.X_OK):
        raise FetchError(f"{proj.raw} is not writable: nothing was fetched")
    is_dvc = (proj.root / ".dvc").is_dir()
    if dvc is None:
        dvc = is_dvc
    if not dvc:
        return False
    if not is_dvc:
        raise FetchError(
            f"{proj.root} is not a DVC project (no .dvc): `dvc init`, or fetch with --no-dvc"
        )
    if importlib.util.find_spec("dvc") is None:
        raise FetchError(f"dvc is not installed in {sys.executable}: `make install`, or --no-dvc")
    for path in (proj.root / "data.dvc", proj.root / "data" / ".gitignore"):
        if path.exists() and not (path.is_file() and os.access(path, os.W_OK)):
            raise FetchError(f"{path} is not a writable file: `dvc add` could not update it")
    if not os.access(proj.root, os.W_OK):
        raise FetchError(f"{proj.root} is not writable: `dvc add` could not write data.dvc")
    return True


def _dvc(proj: Project, *args: str) -> None:
    # The dvc of this Python (a dependency of coinflow), whatever PATH holds.
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=proj.root,
        capture_output=True,
        text=True,
        timeout=DVC_TIMEOUT_S,
        env={**os.environ, "DVC_NO_ANALYTICS": "1"},
    )
    if done.returncode != 0:
        raise FetchError(f"dvc {' '.join(args)} failed: {done.stderr.strip()[-500:]}")


def dvc_add(proj: Project | None = None) -> str:
    """`dvc add data/raw` (data.dvc records the new hash) and `dvc push` to the writable
    remote named by COINFLOW_DVC_PUSH_REMOTE when set; what was done, in words."""
    proj = proj or project()
    _dvc(proj, "add", "data/raw")
    said = "dvc add data/raw: data.dvc updated"
    remote = os.environ.get(PUSH_REMOTE_ENV)
    if remote:
        _dvc(proj, "push", "-r", remote, "data.dvc")
        said += f"; pushed to remote {remote!r}"
    return said


Snapshot = dict[Path, tuple[bytes, int] | None]  # a file's bytes and mode; None: absent


def snapshot(paths: list[Path]) -> Snapshot:
    return {p: (p.read_bytes(), p.stat().st_mode) if p.is_file() else None for p in paths}


def _put(path: Path, data: bytes, mode: int) -> None:
    write_atomic(path, data)  # a new inode: a DVC cache file linked here is never written
    os.chmod(path, mode & 0o7777)


def _restore(before: Snapshot) -> list[str]:
    """Put every snapshotted file back as it was; what could not be, in words."""
    failed = []
    for path, was in before.items():
        try:
            if was is None:
                path.unlink(missing_ok=True)
            elif not path.is_file() or path.read_bytes() != was[0]:
                _put(path, *was)
        except OSError as exc:
            failed.append(f"{path}: {exc.strerror}")
    return failed


def commit(proj: Project, texts: dict[Path, str], before: Snapshot, dvc: bool) -> str:
    """Replace files with `texts`, then `dvc add`; on any failure put back `before` (a snapshot
    holding every path written) and raise a FetchError saying so. What was done, in words."""
    try:
        for path, text in texts.items():
            was = before[path]
            assert was is not None
            _put(path, text.encode(), was[1])
        return dvc_add(proj) if dvc else "data.dvc not updated (--no-dvc, or not a DVC project)"
    except BaseException as exc:
        failed = _restore(before)  # also on Ctrl-C: never leave raw files and data.dvc apart
        if not isinstance(exc, Exception):
            raise
        if failed:  # the one case a person must repair: say exactly what and how
            raise FetchError(
                f"{exc}; restoring FAILED ({'; '.join(failed)}): data/raw may disagree with "
                "data.dvc, `dvc checkout data.dvc` puts back what data.dvc records"
            ) from exc
        raise FetchError(
            f"{exc}; data/raw, data.dvc and data/.gitignore restored byte for byte: "
            "nothing was changed"
        ) from exc

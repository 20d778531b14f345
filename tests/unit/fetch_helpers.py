"""A small DVC workspace for `coinflow data fetch` tests: real exports in a git + DVC project.

The template is built once per worker with no dvc command (a dvc run costs seconds of CPU): the
repository's .dvc/config, .gitignore files and data.dvc, with data/raw lacking the newest 5 days
of every (shortened) real export. Each test copies it (~100 KB) and points COINFLOW_WORKDIR at
the copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.paths import ASSETS, Project

REPO = Path(__file__).resolve().parents[2]
HISTORY = 400  # rows of each export kept (BTC and ETH: from 2023-09-27; gold: from mid-2023)
NEW_DAYS = 5  # the workspace lacks the newest 5 days of every real export (10/27 .. 10/31/2024)


def export(asset: str, drop_newest: int = 0) -> str:
    """The newest HISTORY rows of an asset's real export, without its newest `drop_newest`
    (BOM, header kept): every rule and format of the full file, at a tenth of the parsing."""
    lines = (REPO / "data" / "raw" / f"{asset}.csv").read_text(encoding="utf-8").splitlines()
    return "\n".join([lines[0], *lines[1 + drop_newest : 1 + HISTORY]]) + "\n"


@pytest.fixture(scope="session")
def fetch_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git + DVC project whose data/raw lacks the newest 5 days (data.dvc: the repo's, as is)."""
    root = tmp_path_factory.mktemp("fetch-template") / "project"
    raw = Project(root).raw
    raw.mkdir(parents=True)
    for asset in ASSETS:
        (raw / f"{asset}.csv").write_text(export(asset, drop_newest=NEW_DAYS), encoding="utf-8")
    (root / ".dvc").mkdir()
    for name in (
        "params.yaml",
        "data.dvc",
        ".gitignore",
        ".dvcignore",
        ".dvc/config",
        ".dvc/.gitignore",
    ):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, root / name)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, capture_output=True, timeout=60)
    return root


@pytest.fixture(scope="session")
def dvc_template(fetch_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template after a real `dvc add data/raw`: data.dvc records its (short) data/raw."""
    root = tmp_path_factory.mktemp("fetch-dvc-template") / "project"
    shutil.copytree(fetch_template, root, symlinks=True)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    args = [sys.executable, "-m", "dvc", "add", "-q", "data/raw"]
    subprocess.run(args, cwd=root, env=env, check=True, capture_output=True, timeout=300)
    return root


def copy_project(template: Path, dest: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A private copy of the template, made the project root."""
    shutil.copytree(template, dest, symlinks=True)
    monkeypatch.setenv("COINFLOW_WORKDIR", str(dest))
    monkeypatch.delenv("COINFLOW_DATA_SOURCE", raising=False)
    monkeypatch.delenv("COINFLOW_DVC_PUSH_REMOTE", raising=False)
    return Project(dest)


def full_source(folder: Path) -> Path:
    """The full real exports, as a newer download would bring them."""
    folder.mkdir()
    for asset in ASSETS:
        (folder / f"{asset}.csv").write_text(export(asset), encoding="utf-8")
    return folder


def state(proj: Project) -> dict[str, bytes | int | None]:
    """Every file a fetch may change, byte for byte (and the raw files' modes)."""
    files = [proj.raw / f"{a}.csv" for a in ASSETS]
    files += [proj.root / n for n in ("data.dvc", "params.yaml", "data/.gitignore")]
    out: dict[str, bytes | int | None] = {}
    for path in files:
        out[str(path)] = path.read_bytes() if path.is_file() else None
        out[f"{path} mode"] = path.stat().st_mode if path.is_file() else None
    out["data/raw listing"] = len(list(proj.raw.iterdir()))  # no temp file left behind
    return out


def cli(*args: str) -> tuple[int, str]:
    """`coinflow data fetch ARGS` in process: exit code and output; a traceback fails the test."""
    from cli.main import app

    result = CliRunner().invoke(app, ["data", "fetch", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {result.exception!r}:\n{result.output}")
    return result.exit_code, result.output


@pytest.fixture
def project_copy(fetch_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A fresh copy of the fetch template, the project every fetch test works on."""
    return copy_project(fetch_template, tmp_path / "project", monkeypatch)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A source folder holding the three full exports."""
    return full_source(tmp_path / "source")

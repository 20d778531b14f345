"""Data-test fixtures: the real dataset versions, rebuilt from data/raw in tmp dirs."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from core.params import load_params
from core.paths import ASSETS, WORKDIR_ENV, Project
from pipelines.data import ingest, version

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def built_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace where ingest + version ran on the real data/raw (params.yaml, data/...)."""
    raw = Project(REPO).raw
    missing = [a for a in ASSETS if not (raw / f"{a}.csv").is_file()]
    if missing:
        pytest.fail(f"{raw} lacks {missing}: run `.venv/bin/dvc pull` at the repository root")
    root = tmp_path_factory.mktemp("built")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    shutil.copytree(raw, Project(root).raw)
    ingest.main(Project(root))
    for name in load_params(root / "params.yaml").data.versions:
        version.main(name, Project(root))
    return root


@pytest.fixture
def raw_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project root (and cwd) holding params.yaml and a copy of the real data/raw."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(Project(REPO).raw, Project(tmp_path).raw)
    monkeypatch.setenv(WORKDIR_ENV, str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def workspace(built_versions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project root (and cwd): params.yaml and the built data/versions (not validated)."""
    shutil.copy(built_versions / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(Project(built_versions).versions, Project(tmp_path).versions)
    monkeypatch.setenv(WORKDIR_ENV, str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def docs_status() -> Callable[..., str]:
    """Reads the status ('Succeeded'/'Failed') off the one validation page of a Data Docs site."""

    def status(index: Path, suite: str = "") -> str:
        """`suite`: a suffix of the rows suite's name ("_drift": the drift report's page)."""
        assert index.is_file(), f"no Data Docs index at {index}"
        name = f"coinflow_{index.parent.name.replace('.', '_')}{suite}"
        pages = sorted((index.parent / "validations" / name).glob("**/*.html"))
        assert len(pages) == 1, f"expected one validation page, found {pages}"
        found = re.search(
            r"Status:</span>\s*<i [^>]*></i>\s*(Succeeded|Failed)",
            pages[0].read_text(encoding="utf-8"),
        )
        assert found, f"no status on {pages[0]}"
        return found.group(1)

    return status

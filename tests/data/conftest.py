"""Data-test fixtures: the real dataset versions, rebuilt from data/raw in tmp dirs."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines import ingest, version
from pipelines.paths import ASSETS, INTERIM_DIR, RAW_DIR, VERSIONS_DIR

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def built_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace where ingest + version ran on the real data/raw (params.yaml, data/...)."""
    raw = REPO / RAW_DIR
    missing = [a for a in ASSETS if not (raw / f"{a}.csv").is_file()]
    if missing:
        pytest.fail(f"{raw} lacks {missing}: run `.venv/bin/dvc pull` at the repository root")
    root = tmp_path_factory.mktemp("built")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        ingest.main(raw_dir=raw, out_dir=INTERIM_DIR)
        version.main()
    return root


@pytest.fixture
def raw_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cwd holding params.yaml and a copy of the real data/raw, nothing derived."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / RAW_DIR, tmp_path / RAW_DIR)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def workspace(built_versions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cwd holding params.yaml and the freshly built data/versions (nothing validated)."""
    shutil.copy(built_versions / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(built_versions / VERSIONS_DIR, tmp_path / VERSIONS_DIR)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def docs_status() -> Callable[[Path], str]:
    """Reads the status ('Succeeded'/'Failed') off the one validation page of a Data Docs site."""

    def status(index: Path) -> str:
        assert index.is_file(), f"no Data Docs index at {index}"
        pages = sorted(index.parent.glob("validations/**/*.html"))
        assert len(pages) == 1, f"expected one validation page, found {pages}"
        found = re.search(r"Status:</span>\s*<i [^>]*></i>\s*(Succeeded|Failed)",
                          pages[0].read_text(encoding="utf-8"))
        assert found, f"no status on {pages[0]}"
        return found.group(1)

    return status

"""`coinflow data versions` on a fresh clone (nothing built) and a half-built workspace."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from core.paths import Project

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def proj(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A fresh clone: the repository's params.yaml, no data/raw, no data/versions."""
    proj = Project(tmp_path)
    proj.params_file.write_text((REPO / "params.yaml").read_text())
    monkeypatch.setenv("COINFLOW_WORKDIR", str(tmp_path))
    return proj


def versions() -> tuple[int, str]:
    from cli.main import app

    result = CliRunner().invoke(app, ["data", "versions"])
    return result.exit_code, result.output


def test_a_fresh_clone_is_told_once_what_to_run(proj: Project) -> None:
    code, out = versions()
    assert code == 1
    assert out.strip().splitlines() == [
        "versions refused: no dataset version is built yet (v0.1, v0.2, v0.3): run "
        "`dvc pull data.dvc`, then `dvc repro validate` (or `make demo`)"
    ]
    (proj.raw).mkdir(parents=True)
    (proj.raw / "btc.csv").write_text("")  # pulled: only the repro is left to run
    code, out = versions()
    assert code == 1 and "built yet (v0.1, v0.2, v0.3): run `dvc repro validate`" in out


def test_the_built_versions_are_listed_and_the_others_named(proj: Project) -> None:
    days = pd.date_range("2016-01-01", periods=3, freq="D", name="date")
    proj.versions.mkdir(parents=True)
    pd.DataFrame({"btc_close": [1.0, 2.0, 3.0]}, index=days).to_parquet(proj.version_file("v0.3"))
    code, out = versions()
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].split() == ["version", "rows", "first", "last", "md5"]
    assert lines[1].split()[:5] == ["v0.3", "*", "3", "2016-01-01", "2016-01-03"]
    assert lines[2:] == [
        "not built yet: v0.1, v0.2: run `dvc pull data.dvc`, then `dvc repro validate` "
        "(or `make demo`)"
    ]

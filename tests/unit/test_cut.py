"""`coinflow data cut`: the next version in params.yaml, comments kept; bad cuts refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from core.params import load_params
from core.paths import Project
from pipelines.data.cut import next_name

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def proj(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project with the repository's params.yaml and interim frames: BTC and ETH to
    2024-12-15 (a Sunday), gold to Friday 2024-12-13."""
    proj = Project(tmp_path)
    proj.params_file.write_text((REPO / "params.yaml").read_text())
    proj.interim.mkdir(parents=True)
    for asset, last in (("btc", "2024-12-15"), ("eth", "2024-12-15"), ("gold", "2024-12-13")):
        days = pd.date_range("2024-01-01", last, freq="D", name="date")
        pd.DataFrame({"close": 1.0}, index=days).to_parquet(proj.interim / f"{asset}.parquet")
    monkeypatch.setenv("COINFLOW_WORKDIR", str(tmp_path))
    return proj


def cli(*args: str) -> tuple[int, str]:
    from cli.main import app

    result = CliRunner().invoke(app, ["data", "cut", *args])
    return result.exit_code, result.output


def test_next_names() -> None:
    assert next_name(["v0.1", "v0.2", "v0.9"]) == "v0.10"
    assert next_name(["v1"]) == "v2" and next_name([]) == "v0.1"
    assert next_name(["2024-q3"]) == "2024-q4"


def test_cut_appends_the_next_version_keeping_comments(proj: Project) -> None:
    before = proj.params_file.read_text()
    code, out = cli()
    assert code == 0, out
    assert "v0.4: cut-off 2024-12-13" in out  # gold's last real day, not BTC's
    params = load_params(proj.params_file)
    assert params.data.versions["v0.4"] == dt.date(2024, 12, 13)
    assert params.data.version == "v0.3"  # training keeps its version without --use
    # One line added, right after v0.3's and quoted like it; every other line byte for byte.
    lines = before.split("\n")
    after = proj.params_file.read_text().split("\n")
    at = lines.index('    v0.3: "2024-10-31"') + 1
    assert after == [*lines[:at], '    v0.4: "2024-12-13"', *lines[at:]]

    code, out = cli("--until", "2024-12-14", "--name", "v0.5", "--use")
    assert code == 1 and "past the data" in out and "2024-12-13" in out
    code, out = cli("--until", "2024-11-30", "--use")
    assert code == 1 and "not after the newest version's (2024-12-13)" in out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--name", "v0.3"], "exists already"),
        (["--until", "2024-10-01"], "not after the newest version's (2024-10-31)"),
        (["--until", "2025-01-01"], "past the data"),
        (["--until", "31/12/2024"], "not an ISO date"),
        (["--name", "v 1"], "version name"),
    ],
)
def test_bad_cuts_are_refused_and_change_nothing(
    proj: Project, args: list[str], words: str
) -> None:
    before = proj.params_file.read_bytes()
    code, out = cli(*args)
    assert code == 1 and "cut refused" in out and words in out, out
    assert proj.params_file.read_bytes() == before


def test_use_makes_it_the_training_version(proj: Project) -> None:
    before = proj.params_file.read_text().split("\n")
    proj.params_file.chmod(0o644)
    code, out = cli("--until", "2024-12-01", "--use")
    assert code == 0 and "(now data.version)" in out
    params = load_params(proj.params_file)
    assert params.data.version == "v0.4" and params.data.cutoff == dt.date(2024, 12, 1)
    # The file compared line by line: data.version's value changed in place (its spacing and
    # comment kept), the new version after the last one, quoted like it; nothing else moved.
    after = proj.params_file.read_text().split("\n")
    at = before.index('    v0.3: "2024-10-31"') + 1
    assert after[at] == '    v0.4: "2024-12-01"' and after[at + 1] == ""  # the blank line stays
    del after[at]
    changed = [(b, a) for b, a in zip(before, after, strict=True) if a != b]
    assert changed == [
        (
            "  version: v0.3            # the dataset version features/training use",
            "  version: v0.4            # the dataset version features/training use",
        )
    ]
    assert proj.params_file.stat().st_mode & 0o777 == 0o644  # not a temp file's 0600

"""The real dataset versions: sizes and date ranges, and every one passes the gate."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from core.files import file_md5
from core.params import load_params
from core.paths import Project, project
from pipelines.data.version import describe_version
from pipelines.gate import validate
from pipelines.training import features

pytestmark = pytest.mark.data

EXPECTED = {  # version -> rows, first day, last day
    "v0.1": (2922, "2016-01-01", "2023-12-31"),
    "v0.2": (2982, "2016-01-01", "2024-02-29"),
    "v0.3": (3227, "2016-01-01", "2024-10-31"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_version_has_its_rows_and_date_range(built_versions: Path, name: str) -> None:
    info = describe_version(name, Project(built_versions))
    assert (info.rows, str(info.first), str(info.last)) == EXPECTED[name]


def test_every_real_version_passes_the_gate_and_features_runs(
    workspace: Path, docs_status: Callable[[Path], str]
) -> None:
    validate.main()
    records = json.loads(Path("metrics/validation.json").read_text())
    assert sorted(records) == sorted(EXPECTED)
    for name, record in records.items():
        assert record["success"] is True, record["failures"]
        assert record["failed"] == [] and record["evaluated"] >= 30
        assert record["n_rows"] == EXPECTED[name][0]
        assert record["md5"] == file_md5(project().version_file(name))
        assert record["docs"] == f"reports/validation/{name}/index.html"
        assert docs_status(Path(record["docs"])) == "Succeeded"
    features.main()  # the gate opens for params' data.version
    assert Path("metrics/baseline.json").is_file() and Path("data/features/table.parquet").is_file()


def test_real_data_needs_the_ohlc_tolerance(built_versions: Path, tmp_path: Path) -> None:
    """Source rounding puts Open/Close up to 0.46% outside [Low, High]: no slack, no pass."""
    params = load_params(built_versions / "params.yaml")
    frame = validate.read_version(Project(built_versions).version_file("v0.3"))
    strict = params.validate_.model_copy(update={"ohlc_tolerance": 0.0})
    outcome = validate.validate_version(
        frame, "v0.3", params.data.versions["v0.3"], strict, tmp_path / "docs"
    )
    assert not outcome.success
    assert {f.column for f in outcome.failed} <= {"btc_high_slack", "btc_low_slack"}
    assert all(f.examples and f.examples[0]["date"] < "2017-05-01" for f in outcome.failed)
    assert outcome.docs_path.is_file()

"""A rewritten past fails the gate against what git HEAD published (real git, DVC, dvc repro)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.repo_copy import pulled_copy, run

pytestmark = [pytest.mark.data, pytest.mark.slow]

DAY, ISO = "06/01/2019", "2019-06-01"  # inside every version


def _rewrite_close(path: Path, day: str, close: str) -> str:
    """Set one day's Price in an investing.com export; the old value."""
    text = path.read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    (row,) = [r for r in rows if r[0] == day]
    old, row[1] = row[1], close
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    path.write_text("\ufeff" + out.getvalue(), encoding="utf-8")
    return old


def test_rewritten_close_fails_every_published_version_and_stops_features(
    tmp_path: Path,
) -> None:
    work, env = pulled_copy(tmp_path / "repo", tmp_path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    run([*git, "add", "-A"], work, env)
    run([*git, "commit", "-qm", "published"], work, env)
    old = _rewrite_close(work / "data" / "raw" / "btc.csv", DAY, "8,600.0")  # within its range

    out = run(["dvc", "repro", "features"], work, env, ok=False)

    records = json.loads((work / "metrics" / "validation.json").read_text())
    assert set(records) == {"v0.1", "v0.2", "v0.3"}
    for version, record in records.items():
        assert not record["success"]
        assert record["failed"] == ["expect_column_values_to_be_null[history_change]"]
        (failure,) = record["failures"]
        assert f"{version} as published at git HEAD" in failure["description"]
        (example,) = failure["examples"]
        assert example["date"] == ISO
        assert example["history_change"] == f"btc_close {old.replace(',', '')} → 8600"
    assert "history_change" in out and ISO in out
    assert not (work / "data" / "features").exists()

"""metrics/validation.json is committed: it names what the gate compared with, never HEAD's sha
(which would dirty the tree after every commit); the Data Docs keep the sha."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.data.history import Reference
from pipelines.gate import validate
from tests.unit.test_validate_unit import CUTOFF, PARAMS, _frame

pytestmark = pytest.mark.unit
SHA = "1a2b3c4d"


def test_the_record_names_the_reference_without_the_sha(tmp_path: Path) -> None:
    published = _frame()
    changed = published.copy()
    changed.iloc[5, changed.columns.get_loc("btc_close")] *= 1.001  # a rewritten past
    reference = Reference(f"v9.9 as published at git HEAD {SHA}", published, whole=True)
    outcome = validate.validate_version(
        changed, "v9.9", CUTOFF, PARAMS, tmp_path / "docs", reference
    )
    assert not outcome.success and SHA in outcome.history

    record = validate.outcome_record(outcome, "md5")
    assert SHA not in json.dumps(record, default=str)
    assert record["history"].startswith(
        "history is immutable: every day identical to v9.9 as published at git HEAD; no day"
    )
    (failure,) = record["failures"]
    assert "v9.9 as published at git HEAD" in failure["description"]
    pages = [p.read_text(errors="replace") for p in (tmp_path / "docs").rglob("*.html")]
    assert any(SHA in page for page in pages)  # the Data Docs still say which commit

"""History immutability on hand-made frames: what each kind of rewrite is reported as."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pipelines.data.history import Published, Reference, references, row_changes

pytestmark = pytest.mark.unit


def _frame(start: str = "2020-01-01", n: int = 6) -> pd.DataFrame:
    dates = pd.date_range(start, periods=n, freq="D", name="date")
    return pd.DataFrame(
        {"btc_close": 100.0 + np.arange(n), "eth_close": np.nan, "gold_filled": np.int8(0)},
        index=dates,
    )


def _notes(frame: pd.DataFrame, ref: Reference) -> dict[str, str]:
    out = row_changes(frame, ref)
    return {str(frame.index[i].date()): out[i] for i in np.flatnonzero(out != None)}  # noqa: E711


def test_identical_history_has_no_notes_and_missing_equals_missing() -> None:
    frame = _frame()
    assert _notes(frame.copy(), Reference("v0.1", frame, whole=True)) == {}


def test_changed_value_names_day_column_old_and_new() -> None:
    old, new = _frame(), _frame()
    new.loc["2020-01-03", "btc_close"] = 999.5
    assert _notes(new, Reference("v0.1", old, whole=True)) == {
        "2020-01-03": "btc_close 102 → 999.5"
    }


def test_deleted_days_are_noted_on_the_next_day_kept_or_the_last_row() -> None:
    old = _frame()
    new = old.drop(index=[pd.Timestamp("2020-01-02"), pd.Timestamp("2020-01-06")])
    assert _notes(new, Reference("v0.1", old, whole=True)) == {
        "2020-01-03": "deleted day(s) 2020-01-02",
        "2020-01-05": "deleted day(s) 2020-01-06",
    }


def test_new_days_after_the_reference_only_count_against_the_same_version() -> None:
    old, new = _frame(n=4), _frame(n=6)
    assert _notes(new, Reference("v0.1", old, whole=False)) == {}
    assert set(_notes(new, Reference("v0.1", old, whole=True))) == {"2020-01-05", "2020-01-06"}


def test_a_day_inserted_into_the_past_is_noted() -> None:
    old = _frame().drop(index=pd.Timestamp("2020-01-03"))
    assert _notes(_frame(), Reference("v0.1", old, whole=False)) == {
        "2020-01-03": "day not in the reference"
    }


def test_repeated_dates_do_not_crash_and_are_noted_once() -> None:
    old = _frame()
    new = pd.concat([old.iloc[:3], old.iloc[2:]])
    new.iloc[2, 0] = 1.0  # the first 2020-01-03 row changed
    out = row_changes(new, Reference("v0.1", old, whole=True))
    assert list(out != None).count(True) == 1  # noqa: E711


def test_references_prefer_the_published_version_then_the_newest_earlier_one() -> None:
    day = dt.date
    pub = Published({"v0.1": (day(2020, 1, 4), _frame(n=4))}, "abc1234")
    cutoffs = {"v0.1": day(2020, 1, 4), "v0.2": day(2020, 1, 6)}
    frames = {"v0.1": _frame(n=4), "v0.2": _frame()}
    refs = references(frames, cutoffs, pub)
    assert isinstance(refs["v0.1"], Reference) and refs["v0.1"].whole
    assert isinstance(refs["v0.2"], Reference) and not refs["v0.2"].whole
    assert refs["v0.2"].label == "v0.1 as published at git HEAD abc1234"

    unpublished = references(frames, cutoffs, Published({}, "", "no git"))
    assert unpublished["v0.1"] == "no git"
    assert isinstance(unpublished["v0.2"], Reference)
    assert unpublished["v0.2"].label.startswith("v0.1 (the previous version in params.yaml")

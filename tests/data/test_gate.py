"""Each corruption class is stopped before features, by a message naming the broken rule."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.paths import project
from pipelines.data import ingest, version
from pipelines.gate import validate
from pipelines.training import features

pytestmark = pytest.mark.data

ROW = 1000  # 2018-09-27 in every version: inside BTC's and ETH's history
Corruption = Callable[[pd.DataFrame], pd.DataFrame]


def _set(column: str, value: Callable[[float], float]) -> Corruption:
    def corrupt(frame: pd.DataFrame) -> pd.DataFrame:
        frame.iloc[ROW, frame.columns.get_loc(column)] = value(frame[column].iloc[ROW])
        return frame

    return corrupt


def _swap_high_low(frame: pd.DataFrame) -> pd.DataFrame:
    frame.iloc[ROW, [frame.columns.get_loc("btc_high"), frame.columns.get_loc("btc_low")]] = [
        frame["btc_low"].iloc[ROW],
        frame["btc_high"].iloc[ROW],
    ]
    return frame


def _future_row(frame: pd.DataFrame) -> pd.DataFrame:
    extra = frame.iloc[[-1]].set_axis(frame.index[[-1]] + pd.Timedelta(days=1)).rename_axis("date")
    return pd.concat([frame, extra])


# name -> (corruption of v0.3, the expectation that must name it, its column)
CASES: dict[str, tuple[Corruption, str, str | None]] = {
    "missing_column": (
        lambda f: f.drop(columns="btc_close"),
        "expect_table_columns_to_match_set",
        None,
    ),
    "null_price": (
        _set("btc_close", lambda v: np.nan),
        "expect_column_values_to_not_be_null",
        "btc_close",
    ),
    "negative_price": (
        _set("btc_low", lambda v: -v),
        "expect_column_values_to_be_between",
        "btc_low",
    ),
    "high_below_low": (
        _swap_high_low,
        "expect_column_pair_values_a_to_be_greater_than_b",
        "btc_high, btc_low",
    ),
    "duplicate_date": (
        lambda f: pd.concat([f.iloc[: ROW + 1], f.iloc[ROW:]]),
        "expect_column_values_to_be_unique",
        "date",
    ),
    "future_row": (_future_row, "expect_column_values_to_be_between", "date"),
    "shuffled_order": (
        lambda f: f.sample(frac=1.0, random_state=0),
        "expect_column_values_to_be_increasing",
        "date",
    ),
    "close_spike_10x": (
        _set("btc_close", lambda v: v * 10),
        "expect_column_values_to_be_between",
        "btc_log_move",
    ),
    "missing_day": (
        lambda f: f.drop(index=f.index[ROW]),
        "expect_column_values_to_be_between",
        "date_gap_days",
    ),
    "too_few_rows": (lambda f: f.iloc[:500], "expect_table_row_count_to_be_between", None),
    "wrong_dtype": (
        lambda f: f.astype({"gold_filled": "float64"}),
        "expect_column_values_to_be_of_type",
        "gold_filled",
    ),
}


def _assert_nothing_downstream() -> None:
    assert not Path("data/features").exists()
    assert not Path("metrics/baseline.json").exists()


@pytest.mark.parametrize("case", list(CASES))
def test_gate_blocks_corrupt_version(
    workspace: Path, docs_status: Callable[[Path], str], case: str
) -> None:
    corrupt, expectation, column = CASES[case]
    path = project().version_file("v0.3")
    corrupt(pd.read_parquet(path)).to_parquet(path)

    with pytest.raises(validate.DataValidationError) as caught:
        validate.main()

    message = str(caught.value)
    assert "dataset version v0.3 failed" in message and "v0.1" not in message
    assert expectation + (f" [{column}]" if column else "") in message
    failed = {(f.expectation, f.column): f for f in caught.value.outcome.failed}
    assert (expectation, column) in failed
    assert failed[(expectation, column)].examples, "a failure must show what was wrong"
    records = json.loads(Path("metrics/validation.json").read_text())
    assert {v: r["success"] for v, r in records.items()} == {
        "v0.1": True,
        "v0.2": True,
        "v0.3": False,
    }
    assert docs_status(Path(records["v0.3"]["docs"])) == "Failed"
    assert docs_status(Path(records["v0.1"]["docs"])) == "Succeeded"
    _assert_nothing_downstream()
    with pytest.raises(features.GateNotPassedError, match="v0.3"):
        features.main()
    _assert_nothing_downstream()


def test_failure_examples_point_at_the_corrupt_row(workspace: Path) -> None:
    path = project().version_file("v0.3")
    frame = pd.read_parquet(path)
    day = str(frame.index[ROW].date())
    _set("btc_close", lambda v: np.nan)(frame).to_parquet(path)
    with pytest.raises(validate.DataValidationError) as caught:
        validate.main()
    (failure,) = [f for f in caught.value.outcome.failed if f.column == "btc_close"]
    assert failure.examples == [{"row_number": ROW, "date": day, "btc_close": None}]
    assert day in str(caught.value)


RAW_GARBAGE = {
    "empty_file": b"",
    "binary_file": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    "html_page": b"<!DOCTYPE html><html><body>Just a moment...</body></html>\n",
}


@pytest.mark.parametrize("case", list(RAW_GARBAGE))
def test_ingest_stops_a_raw_file_that_is_not_the_csv(raw_workspace: Path, case: str) -> None:
    bad = project().raw / "btc.csv"
    bad.write_bytes(RAW_GARBAGE[case])
    with pytest.raises(ingest.IngestError, match=str(bad)):
        ingest.main()
    assert not project().interim.exists() and not project().versions.exists()
    with pytest.raises(validate.VersionFileError, match=str(project().version_file("v0.1"))):
        validate.main()
    assert not Path("metrics/validation.json").exists()
    with pytest.raises(features.GateNotPassedError, match="missing"):
        features.main()
    _assert_nothing_downstream()


@pytest.mark.parametrize("content", [b"", b"date,btc_close\n2024-01-01,1\n"], ids=["empty", "csv"])
def test_unreadable_version_file_is_named_and_writes_nothing(
    workspace: Path, content: bytes
) -> None:
    bad = project().version_file("v0.2")
    bad.write_bytes(content)
    with pytest.raises(validate.VersionFileError, match=f"{bad} is not a readable parquet"):
        validate.main()
    assert not Path("metrics/validation.json").exists() and not Path("reports").exists()
    with pytest.raises(features.GateNotPassedError):
        features.main()
    _assert_nothing_downstream()


def test_eth_export_stopping_60_days_early_fails_the_gate_naming_asset_and_days(
    raw_workspace: Path,
) -> None:
    """A real later export whose ETH series stops before BTC's: carried flat, refused."""
    eth = project().raw / "eth.csv"
    lines = eth.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    dropped = lines[1:61]  # newest first: ETH's last 60 days (2024-09-02 .. 2024-10-31)
    eth.write_text("\ufeff" + lines[0] + "".join(lines[61:]), encoding="utf-8")
    ingest.main()
    for name in ("v0.1", "v0.2", "v0.3"):
        version.main(name)

    with pytest.raises(validate.DataValidationError) as caught:
        validate.main()

    (outcome,) = caught.value.outcomes
    assert outcome.version == "v0.3"
    (stale,) = [f for f in outcome.failed if f.column == "eth_stale_run"]
    assert "ETH carried forward at most 1 day(s) in a row" in stale.description
    assert "59 offending rows" in stale.description  # day 1 of the run is a tolerated holiday
    assert stale.examples[0]["date"] == "2024-09-03" and len(dropped) == 60
    _assert_nothing_downstream()
    with pytest.raises(features.GateNotPassedError, match="v0.3"):
        features.main()
    _assert_nothing_downstream()

"""Parsing investing.com exports: BOM, newest-first, thousands separators, volume suffixes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.data.ingest import IngestError, load_prices, parse_investing_csv

pytestmark = pytest.mark.unit

HEADER = '\ufeff"Date","Price","Open","High","Low","Vol.","Change %"'
SAMPLE = "\n".join(
    [
        HEADER,
        '"01/03/2024","42,850.5","42,500.0","43,100.2","42,300.1","1.25M","0.82%"',
        '"01/02/2024","42,502.1","41,000.0","42,900.0","40,950.0","101.41K","3.66%"',
        '"01/01/2024","41,002.0","40,500.0","41,200.0","40,400.0","","-0.78%"',
    ]
)


def test_parses_every_format_quirk() -> None:
    frame = parse_investing_csv(SAMPLE, "btc.csv")
    assert list(frame.columns) == ["open", "high", "low", "close", "volume", "change_pct"]
    assert frame.index.is_monotonic_increasing  # newest-first file, oldest-first frame
    assert str(frame.index[0].date()) == "2024-01-01"
    assert frame.loc["2024-01-03", "close"] == pytest.approx(42850.5)
    assert frame.loc["2024-01-03", "volume"] == pytest.approx(1.25e6)
    assert frame.loc["2024-01-02", "volume"] == pytest.approx(101410.0)
    assert np.isnan(frame.loc["2024-01-01", "volume"])  # gold-style empty volume
    assert frame.loc["2024-01-01", "change_pct"] == pytest.approx(-0.78)
    assert set(frame.dtypes.astype(str)) == {"float64"}


def test_billion_suffix() -> None:
    text = SAMPLE.replace('"1.25M"', '"2.5B"')
    assert parse_investing_csv(text).iloc[-1]["volume"] == pytest.approx(2.5e9)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ('"13/45/2024","1","1","1","1","","0%"', "column 'Date'"),
        ('"01/04/2024","abc","1","1","1","","0%"', "column 'Price'"),
        ('"01/04/2024","1","1","1","1","12Q","0%"', "column 'Vol.'"),
        ('"01/04/2024","1","1"', "expected 7 columns"),
        # only investing.com's number format: Python's float() would take all of these
        ('"01/04/2024","2_5_8_0_0.1","1","1","1","","0%"', "column 'Price'"),
        ('"01/04/2024","1","inf","1","1","","0%"', "column 'Open'"),
        ('"01/04/2024","1","1","1e9","1","","0%"', "column 'High'"),
        ('"01/04/2024","1","1","1","NaN","","0%"', "column 'Low'"),
        ('"01/04/2024","1","1","1","1","1_0K","0%"', "column 'Vol.'"),
        ('"01/04/2024","1","1","1","1","","1,2%"', "column 'Change %'"),
    ],
)
def test_malformed_row_names_file_row_and_column(row: str, expected: str) -> None:
    lines = SAMPLE.split("\n")
    text = "\n".join([lines[0], lines[1], row, *lines[2:]])
    with pytest.raises(IngestError) as err:
        parse_investing_csv(text, "data/raw/btc.csv")
    message = str(err.value)
    assert "data/raw/btc.csv" in message and "row 3" in message and expected in message


def test_wrong_header_and_empty_and_binary(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="header"):
        parse_investing_csv('"Day","Close"\n"01/01/2024","1"', "x.csv")
    with pytest.raises(IngestError, match="header"):
        parse_investing_csv("", "empty.csv")
    with pytest.raises(IngestError, match="no data rows"):
        parse_investing_csv(HEADER, "only-header.csv")
    blob = tmp_path / "btc.csv"
    blob.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    with pytest.raises(IngestError, match="btc.csv"):
        load_prices(blob)
    with pytest.raises(IngestError, match="not found"):
        load_prices(tmp_path / "missing.csv")


def test_a_duplicated_day_names_file_date_and_both_rows() -> None:
    lines = SAMPLE.split("\n")
    again = '"01/02/2024","42,600.0","41,000.0","42,900.0","40,950.0","99.00K","3.90%"'
    text = "\n".join([*lines, again])
    with pytest.raises(IngestError) as err:
        parse_investing_csv(text, "data/raw/btc.csv")
    message = str(err.value)
    assert "data/raw/btc.csv" in message and "2024-01-02 appears twice" in message
    assert "row 3 01/02/2024,42,502.1" in message and "row 5 01/02/2024,42,600.0" in message


def test_a_day_after_today_is_refused() -> None:
    import datetime as dt

    with pytest.raises(IngestError, match=r"row 2: date 2024-01-03 is in the future"):
        parse_investing_csv(SAMPLE, "btc.csv", today=dt.date(2024, 1, 2))
    assert len(parse_investing_csv(SAMPLE, "btc.csv", today=dt.date(2024, 1, 3))) == 3

"""Stage 1: parse investing.com CSV exports into tidy frames (one per asset)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import CoinflowError
from core.paths import ASSETS, Project, project

log = logging.getLogger(__name__)

EXPECTED_HEADER = ["Date", "Price", "Open", "High", "Low", "Vol.", "Change %"]
TIDY_COLUMNS = ["open", "high", "low", "close", "volume", "change_pct"]
_SUFFIX = {"K": 1e3, "M": 1e6, "B": 1e9}
# investing.com's number format only: digits with optional thousands commas and decimals.
# (Python's float() would also take "2_5_8_0_0.1", "inf", "1e9" or " 1 ".)
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


class IngestError(CoinflowError, ValueError):
    """A raw file that cannot be parsed; the message names file, row and column."""


_DAY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")  # what strptime's %m/%d/%Y takes, 10x faster


def parse_day(text: str) -> dt.datetime:
    """An export's MM/DD/YYYY date; ValueError for anything else (DD/MM with a day > 12)."""
    match = _DAY.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not MM/DD/YYYY")
    month, day, year = (int(g) for g in match.groups())
    return dt.datetime(year, month, day)


def _number(text: str) -> float:
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"{text!r} is not a number like 63,205.1")
    return float(text.replace(",", ""))


def _volume(text: str) -> float:
    if text == "":
        return np.nan  # gold (spot) has no volume; some ETH days are blank
    scale = _SUFFIX.get(text[-1].upper(), 1.0)
    return _number(text[:-1] if text[-1].upper() in _SUFFIX else text) * scale


def _percent(text: str) -> float:
    return _number(text.rstrip("%"))


_PARSERS = {
    "Price": _number,
    "Open": _number,
    "High": _number,
    "Low": _number,
    "Vol.": _volume,
    "Change %": _percent,
}


def shown(value: str, limit: int = 40) -> str:
    """A field quoted as in a refusal, cut to `limit` characters (never a whole file's content)."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _joined(row: list[str], limit: int = 40) -> str:
    return ",".join(f if len(f) <= limit else f[:limit] + "…" for f in row)


def read_rows(text: str, source: str) -> list[list[str]]:
    """The CSV rows of an export's text; a malformed CSV is an IngestError naming the line."""
    reader = csv.reader(io.StringIO(text))
    try:
        return list(reader)
    except csv.Error as exc:
        why = str(exc)
        if "field limit" in why:  # the csv module's default: 131072 characters per field
            why = f"a field longer than {csv.field_size_limit()} characters (the CSV field limit)"
        raise IngestError(
            f"{source}: line {reader.line_num}: {why}: not an investing.com export"
        ) from None


def parse_investing_csv(
    text: str, source: str = "<text>", today: dt.date | None = None
) -> pd.DataFrame:
    """Parse one investing.com export into a Date-indexed frame sorted oldest first.

    Refused, naming file and row: a bad header or column count, a value not in investing.com's
    number format, a day that appears twice, and a day after `today` (default: today, UTC).
    """
    today = today or dt.datetime.now(dt.UTC).date()
    text = text.lstrip("\ufeff")
    if "\x00" in text:
        raise IngestError(f"{source}: not a CSV text file (binary content)")
    rows = read_rows(text, source)
    if not rows or rows[0] != EXPECTED_HEADER:
        got = [shown(f) for f in rows[0][:10]] if rows else "nothing"
        raise IngestError(f"{source}: row 1: header must be {EXPECTED_HEADER}, got {got}")
    if len(rows) == 1:
        raise IngestError(f"{source}: no data rows after the header")
    records = []
    seen: dict[dt.datetime, tuple[int, list[str]]] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) != len(EXPECTED_HEADER):
            raise IngestError(
                f"{source}: row {line_no}: expected {len(EXPECTED_HEADER)} columns, got {len(row)}"
            )
        record: dict[str, dt.datetime | float] = {}
        for column, value in zip(EXPECTED_HEADER, row, strict=True):
            try:
                if column == "Date":
                    record[column] = parse_day(value)
                else:
                    record[column] = _PARSERS[column](value.strip())
            except (ValueError, IndexError) as exc:
                what = " as MM/DD/YYYY (unparseable or ambiguous date)" if column == "Date" else ""
                raise IngestError(
                    f"{source}: row {line_no}, column {column!r}: cannot parse {shown(value)}{what}"
                ) from exc
        day = record["Date"]
        assert isinstance(day, dt.datetime)
        if day.date() > today:
            raise IngestError(
                f"{source}: row {line_no}: date {day.date()} is in the future (today is {today})"
            )
        if day in seen:
            first, other = seen[day]
            raise IngestError(
                f"{source}: date {day.date()} appears twice: row {first} {_joined(other)} "
                f"and row {line_no} {_joined(row)}"
            )
        seen[day] = (line_no, row)
        records.append(record)
    frame = pd.DataFrame.from_records(records).rename(
        columns={
            "Price": "close",
            "Open": "open",
            "High": "high",
            "Low": "low",
            "Vol.": "volume",
            "Change %": "change_pct",
        }
    )
    frame["Date"] = pd.to_datetime(frame["Date"])
    frame = frame.set_index("Date").rename_axis("date").sort_index()
    return frame[TIDY_COLUMNS].astype("float64")


def load_prices(path: Path) -> pd.DataFrame:
    """Read and parse one raw CSV file."""
    if not path.is_file():
        raise IngestError(f"{path}: file not found (did you run `dvc pull`?)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not a UTF-8 CSV file ({exc.reason})") from exc
    return parse_investing_csv(text, source=str(path))


def load_assets(raw: Path) -> dict[str, pd.DataFrame]:
    """Every asset's raw export in `raw`, parsed (nothing is written)."""
    return {asset: load_prices(raw / f"{asset}.csv") for asset in ASSETS}


def main(proj: Project | None = None) -> None:
    """Parse every asset's CSV in data/raw and write data/interim/<asset>.parquet."""
    proj = proj or project()
    frames = load_assets(proj.raw)
    proj.interim.mkdir(parents=True, exist_ok=True)
    for asset, frame in frames.items():  # parse all first: a bad file writes nothing
        frame.to_parquet(proj.interim / f"{asset}.parquet")
        log.info(
            "%s: %d rows %s → %s", asset, len(frame), frame.index[0].date(), frame.index[-1].date()
        )

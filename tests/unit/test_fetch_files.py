"""`coinflow data fetch` refuses an unreadable export with a clear message and no traceback,
naming the file and never echoing its content beyond the offending field (cut short): an
over-long field, UTF-16 or other non-UTF-8 bytes, DD/MM dates, a symbolic link, a FIFO or a
directory, a file over the size limit; data/raw, data.dvc and params.yaml stay byte-identical."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core.paths import Project
from pipelines.data.fetch import MAX_EXPORT_BYTES
from tests.unit import fetch_helpers
from tests.unit.fetch_helpers import cli, export, state

pytestmark = pytest.mark.unit
fetch_template = fetch_helpers.fetch_template  # a session fixture: the workspace copied
SECRET = "root:x:0:0:SECRET-FIRST-LINE:/root:/bin/bash"

proj = fetch_helpers.project_copy  # a fresh copy of the template per test
source = fetch_helpers.source  # a full source folder per test


def btc_lines() -> list[str]:
    return export("btc").splitlines()


def write_btc(source: Path, lines: list[str]) -> None:
    (source / "btc.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def volume_of_row_4(source: Path, volume: str) -> None:
    lines = btc_lines()
    head, _, change = lines[3].rsplit('","', 2)
    lines[3] = f'{head}","{volume}","{change}'
    write_btc(source, lines)


def long_field(source: Path) -> None:
    volume_of_row_4(source, "9" * 200_000)


def long_but_parseable_length(source: Path) -> None:  # under the CSV limit: shown cut short
    volume_of_row_4(source, "x" * 100_000)


def dd_mm_dates(source: Path) -> None:  # the new rows re-saved by a spreadsheet: 31/10/2024
    lines = btc_lines()
    for i in range(1, 6):
        month, day, year = lines[i][1:11].split("/")
        lines[i] = f'"{day}/{month}/{year}"' + lines[i][12:]
    write_btc(source, lines)


def ambiguous_dates(source: Path) -> None:  # new days 1-3 November typed DD/MM: read as MM/DD
    lines = btc_lines()
    added = [f'"0{d}/11/2024"' + lines[1][12:] for d in (3, 2, 1)]
    write_btc(source, [lines[0], *added, *lines[1:]])


def utf16(source: Path) -> None:
    (source / "btc.csv").write_text(export("btc"), encoding="utf-16")


def latin1(source: Path) -> None:
    text = export("btc").lstrip("\ufeff").replace("Vol.", "Vol\u00e9")  # é: one byte, 0xe9
    (source / "btc.csv").write_bytes(text.encode("latin-1"))


def symlink(source: Path) -> None:
    secret = source.parent / "secret.txt"
    secret.write_text(SECRET + "\n")
    (source / "btc.csv").unlink()
    (source / "btc.csv").symlink_to(secret)


def fifo(source: Path) -> None:
    (source / "btc.csv").unlink()
    os.mkfifo(source / "btc.csv")


def directory(source: Path) -> None:
    (source / "btc.csv").unlink()
    (source / "btc.csv").mkdir()


def too_big(source: Path) -> None:
    with (source / "btc.csv").open("r+b") as handle:  # sparse: costs no disk and no time
        handle.truncate(MAX_EXPORT_BYTES + 1)


def not_a_csv_header(source: Path) -> None:  # /etc/passwd-like content: only its cut 1st field
    (source / "btc.csv").write_text(SECRET + "\nSECRET-SECOND-LINE\n")


CASES: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "a field over 128 KB": (
        long_field,
        ["btc.csv: line 4: a field longer than 131072 characters (the CSV field limit)"],
    ),
    "a 100 KB field": (
        long_but_parseable_length,
        ["btc.csv: row 4, column 'Vol.': cannot parse 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…'"],
    ),
    "DD/MM dates on new rows": (
        dd_mm_dates,
        ["btc.csv: row 2, column 'Date': cannot parse '31/10/2024' as MM/DD/YYYY", "ambiguous"],
    ),
    "ambiguous DD/MM dates on new rows": (
        ambiguous_dates,
        ["btc.csv: rows 4 and 5: date '01/11/2024' (read as MM/DD/YYYY: 2024-01-11)", "ambiguous"],
    ),
    "UTF-16": (utf16, ["btc.csv: UTF-16 encoded", "wrong encoding"]),
    "Latin-1": (latin1, ["btc.csv: not UTF-8 encoded (byte 0xe9 at offset 39)", "encoding"]),
    "a symbolic link": (symlink, ["btc.csv: a symbolic link: refused"]),
    "a FIFO": (fifo, ["btc.csv: not a regular file (a directory, FIFO or device): refused"]),
    "a directory": (
        directory,
        ["btc.csv: not a regular file (a directory, FIFO or device): refused"],
    ),
    "over the size limit": (too_big, [f"btc.csv: {MAX_EXPORT_BYTES + 1} bytes, over the"]),
    "not an export": (not_a_csv_header, ["btc.csv: row 1: header must be", "'root:x:0:0:SECRET"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_unreadable_export_is_refused_naming_the_file(
    proj: Project, source: Path, case: str
) -> None:
    change, expected = CASES[case]
    change(source)
    before = state(proj)
    started = time.monotonic()
    code, out = cli("--source", str(source))  # no traceback: cli() fails the test on one
    assert code == 1 and out.startswith(f"fetch refused: {source}/btc.csv: "), out
    for words in expected:
        assert words in out, out
    assert "history was rewritten" not in out
    assert len(out) < 800 and "SECRET-SECOND-LINE" not in out  # at most the offending field
    if case == "a symbolic link":
        assert "SECRET" not in out  # what the link points to is never read
    assert state(proj) == before
    if case == "over the size limit":
        assert time.monotonic() - started < 5  # refused from its size, before reading it

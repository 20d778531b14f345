"""`coinflow data fetch`: merge newer investing.com exports into data/raw, then `dvc add` it.

A source holds one export per asset (btc.csv, eth.csv, gold.csv, the format pipelines.data.ingest
parses): a local directory or an http(s) base URL (`COINFLOW_DATA_SOURCE` or `--source`), read
by pipelines.data.fetch_source (regular files only, at most MAX_EXPORT_BYTES, UTF-8). Merging
keeps every existing row as it is; on every day both files hold, Open/High/Low/Close must agree,
except on the newest existing day, whose row may be an intraday snapshot: that revision is taken
and reported. Every new or revised row must pass the gate's row rules (fetch_rules) and the
export must list its days newest first (a DD/MM date is refused as ambiguous, not taken).

All or nothing: what the fetch needs is checked first (data/raw writable, a DVC project, dvc
installed), the three merges are computed and checked, and only then are the changed files
replaced (temp file + rename) and `dvc add data/raw` run (and `dvc push` when
COINFLOW_DVC_PUSH_REMOTE is set). Any failure after the first write puts the raw files,
data.dvc and data/.gitignore back byte for byte and says so. A fetch that brings nothing new
writes nothing.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field

import pandas as pd

from core.params import ValidateParams, load_params
from core.paths import ASSETS, Project, project
from pipelines.data.fetch_commit import PUSH_REMOTE_ENV, commit, dvc_add, preflight, snapshot
from pipelines.data.fetch_rules import row_problems
from pipelines.data.fetch_source import MAX_EXPORT_BYTES, FetchError, decode, read_export
from pipelines.data.ingest import (
    EXPECTED_HEADER,
    IngestError,
    parse_day,
    parse_investing_csv,
    read_rows,
    shown,
)

__all__ = [  # dvc_add and read_export: the DAG's and older callers' names
    "MAX_EXPORT_BYTES",
    "PUSH_REMOTE_ENV",
    "FetchError",
    "Fetched",
    "Merge",
    "dvc_add",
    "fetch",
    "merge_export",
    "read_export",
]

PRICE_FIELDS = ("Price", "Open", "High", "Low")
SOURCE_ENV = "COINFLOW_DATA_SOURCE"
MAX_LISTED = 3  # broken rules spelled out in one refusal


@dataclass
class Merge:
    """One asset's merge: the new file text, the days it adds, the revised newest day."""

    asset: str
    text: str
    added: list[dt.date] = field(default_factory=list)
    revised: dt.date | None = None
    revision: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.added) or bool(self.revision)


class Fetched(list[Merge]):
    """Every asset's merge, and what was done with DVC, in words ("" when nothing changed)."""

    dvc: str = ""


def _newest_first(rows: list[list[str]], where: str) -> None:
    """Refuse an export whose parseable dates are not newest first: a DD/MM date read as MM/DD
    lands out of order. (Unparseable rows, duplicates and bad headers: ingest names them.)"""
    if not rows or rows[0] != EXPECTED_HEADER:
        return
    before: tuple[int, str, dt.date] | None = None
    seen: set[dt.date] = set()
    for line_no, row in enumerate(rows[1:], start=2):
        try:
            day = parse_day(row[0]).date()
        except (ValueError, IndexError):
            continue
        if day in seen:
            continue  # a repeated day: ingest names both rows
        seen.add(day)
        if before is not None and day > before[2]:
            raise FetchError(
                f"{where}: rows {before[0]} and {line_no}: date {shown(before[1])} (read as "
                f"MM/DD/YYYY: {before[2]}) is listed before {shown(row[0])} ({day}), but an "
                "export lists its days newest first: an unparseable or ambiguous date (DD/MM, "
                "as a spreadsheet may save it?); nothing was written"
            )
        before = (line_no, row[0], day)


def _rows(text: str, where: str) -> tuple[dict[dt.date, list[str]], pd.DataFrame]:
    """The export's raw CSV rows by day and its parsed frame (every ingest refusal first)."""
    rows = read_rows(text.lstrip("\ufeff"), where)
    _newest_first(rows, where)
    frame = parse_investing_csv(text, where)  # format, duplicates, future days
    return {parse_day(r[0]).date(): r for r in rows[1:]}, frame


def _csv(rows: dict[dt.date, list[str]]) -> str:
    """Rows as an investing.com export: the header, newest day first, every field quoted."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(EXPECTED_HEADER)
    for day in sorted(rows, reverse=True):
        writer.writerow(rows[day])
    return out.getvalue()


def _value(text: str) -> float:
    return float(text.replace(",", ""))


def merge_export(
    asset: str, old_text: str, new_text: str, source: str, rules: ValidateParams
) -> Merge:
    """Merge one asset's fetched export (named `source`) into its raw file (see the module doc)."""
    try:
        old, old_frame = _rows(old_text, f"data/raw/{asset}.csv")
        new, new_frame = _rows(new_text, source)
    except IngestError as exc:
        raise FetchError(str(exc)) from exc
    newest = max(old)
    merged = dict(old)
    merge = Merge(asset, old_text)
    for day in sorted(set(old) & set(new)):
        for column in PRICE_FIELDS:
            i = EXPECTED_HEADER.index(column)
            was, now = _value(old[day][i]), _value(new[day][i])
            if was == now:
                continue
            if day != newest:
                raise FetchError(
                    f"{asset} {day} {column}: the data has {old[day][i]}, the fetched export "
                    f"{shown(new[day][i])}: history was rewritten (only the newest day, "
                    f"{newest}, may be revised); nothing was written"
                )
            merge.revision[column] = (was, now)
        if day == newest and merge.revision:
            merged[day] = new[day]
            merge.revised = day
    merge.added = sorted(set(new) - set(old))
    stale = [d for d in merge.added if d < newest]
    if stale:
        raise FetchError(
            f"{asset}: the fetched export has {len(stale)} day(s) inside the data's range that "
            f"the data lacks (first {stale[0]}): a hole in history is not a new day; nothing "
            "was written"
        )
    for day in merge.added:
        merged[day] = new[day]
    checked = ([merge.revised] if merge.revised else []) + merge.added
    if checked:  # the gate's row rules on every row this merge brings, before any write
        days = pd.DatetimeIndex([pd.Timestamp(d) for d in checked])
        kept = old_frame.drop(index=days, errors="ignore")
        frame = pd.concat([kept, new_frame.loc[days]]).sort_index()
        problems = row_problems(asset, frame, merged, checked, rules)
        if problems:
            more = f" (+{len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
            raise FetchError(
                f"{source}: the export breaks the gate's row rules, refused whole (nothing was "
                f"written): {'; '.join(problems[:MAX_LISTED])}{more}"
            )
    if merge.changed:  # keep the export's byte-order mark, as investing.com writes it
        merge.text = ("\ufeff" if old_text.startswith("\ufeff") else "") + _csv(merged)
    return merge


def fetch(
    source: str | None = None, proj: Project | None = None, dvc: bool | None = None
) -> Fetched:
    """Check, read and merge every asset, then write them and `dvc add` (all or nothing).

    `dvc`: True runs `dvc add data/raw` (refused outside a DVC project), False never, None
    when the project is a DVC project."""
    proj = proj or project()
    source = source or os.environ.get(SOURCE_ENV, "")
    if not source:
        raise FetchError(f"no source: pass --source DIR|URL or set {SOURCE_ENV}")
    dvc = preflight(proj, dvc)
    rules = load_params(proj.params_file).validate_
    tracked = [proj.raw / f"{a}.csv" for a in ASSETS]
    tracked += [proj.root / "data.dvc", proj.root / "data" / ".gitignore"]
    before = snapshot(tracked)
    fetched = Fetched()
    for asset in ASSETS:
        raw = proj.raw / f"{asset}.csv"
        was = before[raw]
        assert was is not None
        where = f"{source.rstrip('/')}/{asset}.csv"
        old = decode(was[0], str(raw))
        fetched.append(merge_export(asset, old, read_export(source, asset), where, rules))
    texts = {proj.raw / f"{m.asset}.csv": m.text for m in fetched if m.changed}
    if texts:
        fetched.dvc = commit(proj, texts, before, dvc)
    return fetched

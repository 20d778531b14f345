"""`coinflow data fetch`: merge newer investing.com exports into data/raw, then `dvc add` it.

A source holds one export per asset (btc.csv, eth.csv, gold.csv, the format pipelines.data.ingest
parses): a local directory or an http(s) base URL (`COINFLOW_DATA_SOURCE` or `--source`),
fetched with httpx (timeouts, retries). Merging keeps every existing row as it is; on every day
both files hold, Open/High/Low/Close must agree, except on the newest existing day, whose row
may be an intraday snapshot: that revision is taken and reported. Any other disagreement is an
error naming asset, day, column, old and new value, and nothing is written. The three files
are checked first and written after (each atomically), so a refused fetch changes nothing; a
fetch that brings nothing new writes nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import CoinflowError
from core.files import write_atomic
from core.paths import ASSETS, Project, project
from pipelines.data.ingest import EXPECTED_HEADER, IngestError, parse_investing_csv

PRICE_FIELDS = {"Price": "close", "Open": "open", "High": "high", "Low": "low"}
SOURCE_ENV = "COINFLOW_DATA_SOURCE"
PUSH_REMOTE_ENV = "COINFLOW_DVC_PUSH_REMOTE"


class FetchError(CoinflowError, ValueError):
    """A fetch that cannot be merged; nothing was written."""


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


def read_export(source: str, asset: str, timeout_s: float = 10.0) -> str:
    """One asset's export from a local directory or an http(s) base URL."""
    name = f"{asset}.csv"
    if source.startswith(("http://", "https://")):
        import httpx

        url = f"{source.rstrip('/')}/{name}"
        transport = httpx.HTTPTransport(retries=3)
        try:
            with httpx.Client(timeout=timeout_s, transport=transport) as client:
                response = client.get(url)
                response.raise_for_status()
        except httpx.HTTPError as exc:
            raise FetchError(f"{url}: {type(exc).__name__}: {exc}") from exc
        return response.text
    path = Path(source) / name
    if not path.is_file():
        raise FetchError(f"{path}: no export for {asset} in the source directory")
    return path.read_text(encoding="utf-8")


def _rows(text: str, source: str) -> dict[dt.date, list[str]]:
    """The export's raw CSV rows by day (checked by the ingest parser first)."""
    parse_investing_csv(text, source)  # every refusal of ingest (format, duplicates, future)
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    return {dt.datetime.strptime(r[0], "%m/%d/%Y").date(): r for r in rows[1:]}


def _csv(rows: dict[dt.date, list[str]]) -> str:
    """Rows as an investing.com export: the header, newest day first, every field quoted."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(EXPECTED_HEADER)
    for day in sorted(rows, reverse=True):
        writer.writerow(rows[day])
    return out.getvalue()


def merge_export(asset: str, old_text: str, new_text: str, source: str) -> Merge:
    """Merge one asset's fetched export into its existing raw file (see the module doc)."""
    try:
        old = _rows(old_text, f"data/raw/{asset}.csv")
        new = _rows(new_text, source)
    except IngestError as exc:
        raise FetchError(str(exc)) from exc
    newest = max(old)
    merged = dict(old)
    merge = Merge(asset, old_text)
    for day in sorted(set(old) & set(new)):
        for column, _ in PRICE_FIELDS.items():
            i = EXPECTED_HEADER.index(column)
            was, now = _value(old[day][i]), _value(new[day][i])
            if was == now:
                continue
            if day != newest:
                raise FetchError(
                    f"{asset} {day} {column}: the data has {old[day][i]}, the fetched export "
                    f"{new[day][i]}: history was rewritten (only the newest day, {newest}, may "
                    "be revised); nothing was written"
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
    if merge.changed:  # keep the export's byte-order mark, as investing.com writes it
        merge.text = ("\ufeff" if old_text.startswith("\ufeff") else "") + _csv(merged)
    return merge


def _value(text: str) -> float:
    return float(text.replace(",", ""))


def fetch(source: str | None = None, proj: Project | None = None) -> list[Merge]:
    """Read every asset from the source, check every merge, then write the changed files."""
    proj = proj or project()
    source = source or os.environ.get(SOURCE_ENV, "")
    if not source:
        raise FetchError(f"no source: pass --source DIR|URL or set {SOURCE_ENV}")
    merges = []
    for asset in ASSETS:
        raw = proj.raw / f"{asset}.csv"
        if not raw.is_file():
            raise FetchError(f"{raw} not found: run `dvc pull data.dvc` first")
        merges.append(
            merge_export(asset, raw.read_text(encoding="utf-8"), read_export(source, asset), source)
        )
    for merge in merges:  # every merge checked: now write, each file atomically
        if merge.changed:
            write_atomic(proj.raw / f"{merge.asset}.csv", merge.text.encode())
    return merges


def dvc_add(proj: Project | None = None) -> str:
    """`dvc add data/raw` (data.dvc records the new hash) and `dvc push` to the writable
    remote named by COINFLOW_DVC_PUSH_REMOTE when set; what was done, in words."""
    proj = proj or project()

    def dvc(*args: str) -> None:
        done = subprocess.run(["dvc", *args], cwd=proj.root, capture_output=True, text=True)
        if done.returncode != 0:
            raise FetchError(f"dvc {' '.join(args)} failed: {done.stderr.strip()[-500:]}")

    dvc("add", "data/raw")
    said = "dvc add data/raw: data.dvc updated"
    remote = os.environ.get(PUSH_REMOTE_ENV)
    if remote:
        dvc("push", "-r", remote, "data.dvc")
        said += f"; pushed to remote {remote!r}"
    return said

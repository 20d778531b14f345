"""`coinflow data cut`: the next dataset version, appended to params.yaml with no hand edit.

The version's name follows the last one (v0.3 → v0.4); its cut-off defaults to the last day on
which every required series (BTC, ETH, gold) has a real observation, so a version never ends on
carried-forward values. params.yaml keeps every other line byte for byte: the version is one
line added after the last one, quoted like it (ruamel.yaml only finds the lines), and dvc.yaml's
`foreach` stage makes the new version a DVC output with its own hash.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import pandas as pd
import yaml as safe_yaml

from core.errors import CoinflowError
from core.files import write_atomic
from core.params import Params, load_params
from core.paths import ASSETS, Project, project


class CutError(CoinflowError, ValueError):
    """A version that cannot be cut; the message says why."""


@dataclass(frozen=True)
class Cut:
    name: str
    cutoff: dt.date
    used: bool  # made the data.version training uses


def next_name(names: list[str]) -> str:
    """The name after the last one: its last number incremented (v0.3 → v0.4, v9 → v10)."""
    if not names:
        return "v0.1"
    last = names[-1]
    match = re.search(r"(\d+)(\D*)$", last)
    if not match:
        raise CutError(f"cannot name the version after {last!r}: give --name")
    digits = str(int(match.group(1)) + 1)
    return f"{last[: match.start(1)]}{digits}{match.group(2)}"


def last_common_day(frames: dict[str, pd.DataFrame]) -> dt.date:
    """The last day on which every series has a real (not carried-forward) row of its own."""
    last: dt.date = min(pd.Timestamp(frame.index.max()).date() for frame in frames.values())
    return last


def last_complete_day(proj: Project) -> dt.date:
    """last_common_day of the assets in data/interim, ingested from data/raw first when an
    interim file is missing or older than its export (a fresh clone, a fetch since)."""
    from pipelines.data import ingest

    paths = {asset: proj.interim / f"{asset}.parquet" for asset in ASSETS}
    for asset, path in paths.items():
        raw = proj.raw / f"{asset}.csv"
        if not path.is_file() or (raw.is_file() and raw.stat().st_mtime > path.stat().st_mtime):
            ingest.main(proj)  # refuses, naming the file, when data/raw lacks an export
            break
    return last_common_day({asset: pd.read_parquet(path) for asset, path in paths.items()})


def cut(
    until: dt.date | None = None,
    name: str | None = None,
    use: bool = False,
    proj: Project | None = None,
) -> Cut:
    """Append the next version to params.yaml `data.versions` (and make it data.version)."""
    proj = proj or project()
    params = load_params(proj.params_file)
    versions = params.data.versions
    name = name or next_name(list(versions))
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
        raise CutError(f"version name {name!r}: use 1-40 letters, digits, '_', '.', '-'")
    if name in versions:
        raise CutError(f"version {name} exists already (cut-off {versions[name]})")
    latest = last_complete_day(proj)
    cutoff = until or latest
    previous = max(versions.values()) if versions else None
    if previous is not None and cutoff <= previous:
        raise CutError(
            f"cut-off {cutoff} is not after the newest version's ({previous}): a new version "
            "must hold new days"
        )
    if cutoff > latest:
        raise CutError(
            f"cut-off {cutoff} is past the data: the last day every series has is {latest}"
        )
    # bytes, not read_text(): universal newlines would turn a CRLF file into LF
    text = with_version(proj.params_file.read_bytes().decode(), name, cutoff, use)
    Params.model_validate(safe_yaml.safe_load(text))  # still valid, before writing
    write_atomic(proj.params_file, text.encode())
    return Cut(name, cutoff, use)


def _scalar(name: str, quote: str) -> str:
    """A version name as a YAML scalar in the given quote style ('' plain, unless plain would
    not read back as this string, e.g. a name like 1.0)."""
    if not quote and safe_yaml.safe_load(f"k: {name}")["k"] != name:
        quote = '"'
    return f"{quote}{name}{quote}"


def with_version(text: str, name: str, cutoff: dt.date, use: bool) -> str:
    """params.yaml's text with `name: "cutoff"` on the line after the last version (its indent
    and quoting), and with `use` data.version's value set to `name` (its quoting and comment
    kept); every other line byte for byte as it was."""
    from ruamel.yaml import YAML

    data = YAML().load(text)["data"]  # only to find the lines: the text is edited, not dumped
    versions = data["versions"]
    if versions.fa.flow_style():
        raise CutError("params.yaml data.versions is a {...} mapping: write one version a line")
    lines = text.split("\n")
    last = list(versions)[-1]
    key_row, key_col = versions.lc.key(last)
    row, col = versions.lc.value(last)

    def quote(row: int, col: int) -> str:
        return lines[row][col] if lines[row][col] in "\"'" else ""

    end = "\r" if lines[row].endswith("\r") else ""  # a CRLF file stays CRLF
    added = (
        f"{' ' * key_col}{_scalar(name, quote(key_row, key_col))}: "
        f"{quote(row, col)}{cutoff.isoformat()}{quote(row, col)}{end}"
    )
    if use:
        vrow, vcol = data.lc.value("version")
        line = lines[vrow]
        vquote = quote(vrow, vcol)
        # the old value: through its closing quote, or up to a space or comment when plain
        vend = (
            line.index(vquote, vcol + 1) + 1
            if vquote
            else vcol + len(re.split(r"[\s#]", line[vcol:], maxsplit=1)[0])
        )
        lines[vrow] = line[:vcol] + _scalar(name, vquote) + line[vend:]
    lines.insert(row + 1, added)
    return "\n".join(lines)

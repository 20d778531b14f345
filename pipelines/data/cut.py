"""`coinflow data cut`: the next dataset version, appended to params.yaml with no hand edit.

The version's name follows the last one (v0.3 → v0.4); its cut-off defaults to the last day on
which every required series (BTC, ETH, gold) has a real observation, so a version never ends on
carried-forward values. params.yaml keeps its comments and layout (ruamel.yaml round-trip), and
dvc.yaml's `foreach` stage makes the new version a DVC output with its own hash.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from io import StringIO

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
    """last_common_day of the assets in data/interim."""
    frames = {}
    for asset in ASSETS:
        path = proj.interim / f"{asset}.parquet"
        if not path.is_file():
            raise CutError(f"{path} not found: run `coinflow data ingest` first")
        frames[asset] = pd.read_parquet(path)
    return last_common_day(frames)


def cut(
    until: dt.date | None = None,
    name: str | None = None,
    use: bool = False,
    proj: Project | None = None,
) -> Cut:
    """Append the next version to params.yaml `data.versions` (and make it data.version)."""
    from ruamel.yaml import YAML

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
    yaml = YAML()  # round-trip: comments, order and quoting survive
    yaml.preserve_quotes = True
    doc = yaml.load(proj.params_file.read_text())
    doc["data"]["versions"][name] = cutoff.isoformat()
    if use:
        doc["data"]["version"] = name
    out = StringIO()
    yaml.dump(doc, out)
    Params.model_validate(safe_yaml.safe_load(out.getvalue()))  # still valid, before writing
    write_atomic(proj.params_file, out.getvalue().encode())
    return Cut(name, cutoff, use)

"""History is immutable: a dataset version, once published (committed), never changes.

What git HEAD holds is published: its params.yaml names the versions and their cut-offs, its
data.dvc the raw exports (read through DVC, from the cache or a remote). Each published version
is rebuilt from them with the version stage's own code, and the gate compares it day by day and
column by column with what the workspace holds now:

- a published version against itself: every day identical, none added or deleted;
- a new version against the newest published one before it: every day the published one holds
  is in the new one, identical (new days may only come after it).

Without a published reference (no git, HEAD without data.dvc, its data in no cache or remote) a
version is compared with the previous version of params.yaml, and the record says why.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import dataclass

import numpy as np
import pandas as pd
import yaml

from core.params import DataParams
from core.paths import ASSETS, Project
from pipelines.data.ingest import parse_investing_csv
from pipelines.data.version import VERSION_COLUMNS, align_assets

CHANGE = "history_change"  # None on an identical day, else what changed, in words
MAX_LISTED = 3  # changed columns spelled out per day


@dataclass(frozen=True)
class Reference:
    """What one version is compared with: a frame and its name in words."""

    label: str  # e.g. "v0.3 as published at git HEAD 1a2b3c4"
    frame: pd.DataFrame
    whole: bool  # the same version: days after the reference's last day are changes too


@dataclass(frozen=True)
class Published:
    """The versions git HEAD published, rebuilt; or why there are none to compare with."""

    versions: dict[str, tuple[dt.date, pd.DataFrame]]
    commit: str
    reason: str = ""  # non-empty: nothing published could be read


def _git(proj: Project, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=proj.root, capture_output=True, text=True, check=True, timeout=30
    ).stdout


def published(proj: Project) -> Published:
    """Rebuild every version git HEAD published from HEAD's params.yaml and raw data."""
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        commit = _git(proj, "rev-parse", "--short", "HEAD").strip()
        params = yaml.safe_load(_git(proj, "show", "HEAD:./params.yaml"))
        _git(proj, "cat-file", "-e", "HEAD:./data.dvc")
    except (OSError, subprocess.SubprocessError) as exc:
        why = getattr(exc, "stderr", "") or str(exc)
        return Published({}, "", f"no published history to compare with (git: {why.strip()})")
    data = DataParams.model_validate(params["data"])
    raw = {}
    for asset in ASSETS:
        path = f"data/raw/{asset}.csv"
        try:
            with dvc.api.open(path, repo=str(proj.root), rev="HEAD", encoding="utf-8") as f:
                raw[asset] = parse_investing_csv(f.read(), source=f"{path}@{commit}")
        except (DvcException, OSError) as exc:
            return Published(
                {},
                commit,
                f"git HEAD {commit}'s {path} is in no DVC cache or remote "
                f"({type(exc).__name__}: {exc}); `dvc pull` or `dvc push` it",
            )
    versions = {
        name: (cutoff, align_assets(**raw, start=data.start, cutoff=cutoff))
        for name, cutoff in data.versions.items()
    }
    return Published(versions, commit)


def references(
    frames: dict[str, pd.DataFrame], cutoffs: dict[str, dt.date], history: Published
) -> dict[str, Reference | str]:
    """For each current version: what it is compared with, or why nothing (as text)."""
    out: dict[str, Reference | str] = {}
    order = sorted(cutoffs, key=lambda v: cutoffs[v])
    at = f"git HEAD {history.commit}"
    for i, version in enumerate(order):
        if version in history.versions:
            out[version] = Reference(
                f"{version} as published at {at}", history.versions[version][1], whole=True
            )
            continue
        earlier = [v for v, (c, _) in history.versions.items() if c <= cutoffs[version]]
        if earlier:
            ref = max(earlier, key=lambda v: history.versions[v][0])
            out[version] = Reference(
                f"{ref} as published at {at}", history.versions[ref][1], whole=False
            )
        elif i:
            prev = order[i - 1]
            label = f"{prev} (the previous version in params.yaml"
            why = f"; {history.reason}" if history.reason else ""
            out[version] = Reference(f"{label}{why})", frames[prev], whole=False)
        else:
            out[version] = history.reason or f"no version published at {at} precedes it"
    return out


def _words(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "missing"
    return f"{value:.10g}" if isinstance(value, (float, int, np.number)) else str(value)


def row_changes(frame: pd.DataFrame, ref: Reference | None) -> np.ndarray:
    """What differs from the reference, per row of `frame` (None where nothing does).

    A changed value is noted on its day; a day the reference lacks on that day (inserted into
    the past; or, for the same version, added after it); a deleted day on the next day the
    frame still holds (its last row when the deletion is at the end). Repeated dates are noted
    once (the row checks name the duplicate)."""
    out = np.full(len(frame), None, dtype=object)
    if ref is None or not len(frame):
        return out
    if not all(isinstance(f.index, pd.DatetimeIndex) for f in (frame, ref.frame)):
        return out  # not a version frame: the row checks say what it is
    kept = frame[~frame.index.duplicated()]
    reference = ref.frame[~ref.frame.index.duplicated()]
    old_days = reference.index
    notes: dict[pd.Timestamp, list[str]] = {}
    common = kept.index.intersection(old_days)
    cols = [c for c in VERSION_COLUMNS if c in kept.columns and c in reference.columns]
    old, new = reference.loc[common, cols], kept.loc[common, cols]
    differ = (old != new) & ~(old.isna() & new.isna())
    for day in common[differ.to_numpy().any(axis=1)]:
        diffs = [
            f"{c} {_words(old.at[day, c])} → {_words(new.at[day, c])}"
            for c in cols
            if differ.at[day, c]
        ]
        more = f" (+{len(diffs) - MAX_LISTED} more)" if len(diffs) > MAX_LISTED else ""
        notes[day] = ["; ".join(diffs[:MAX_LISTED]) + more]
    extra = kept.index.difference(old_days)
    for day in extra if ref.whole else extra[extra <= old_days.max()]:
        notes[day] = ["day not in the reference"]
    days = kept.index.sort_values()
    deleted: dict[pd.Timestamp, list[str]] = {}
    for day in old_days.difference(kept.index):
        anchor = days[min(days.searchsorted(day), len(days) - 1)]
        deleted.setdefault(anchor, []).append(str(day.date()))
    for anchor, gone in deleted.items():
        more = f" (+{len(gone) - MAX_LISTED} more)" if len(gone) > MAX_LISTED else ""
        notes.setdefault(anchor, []).append(f"deleted day(s) {', '.join(gone[:MAX_LISTED])}{more}")
    first = ~frame.index.duplicated()
    for i, day in enumerate(frame.index):
        if first[i] and day in notes:
            out[i] = "; ".join(notes[day])
    return out


def rule(ref: Reference | str) -> str:
    """The gate's immutability expectation in words: what it compares with, or why not."""
    if isinstance(ref, Reference):
        grows = "; no day added" if ref.whole else "; new days only after its last"
        return f"history is immutable: every day identical to {ref.label}{grows}"
    return f"history is immutable (not checked: {ref})"

"""Stage 2: cut each dataset version of params.yaml as an aligned frame on the BTC calendar."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import pandas as pd

from core.errors import CoinflowError
from core.files import file_md5
from core.params import load_params
from core.paths import ASSETS, Project, project

log = logging.getLogger(__name__)

BTC_COLUMNS = ["btc_open", "btc_high", "btc_low", "btc_close", "btc_volume"]
VERSION_COLUMNS = [
    *BTC_COLUMNS,
    *("eth_close", "eth_volume", "eth_filled", "gold_close", "gold_filled"),
]
# Exogenous series carried forward onto the BTC calendar, and the flag marking filled days.
FILLED = {"eth": "eth_filled", "gold": "gold_filled"}


@dataclass(frozen=True)
class VersionInfo:
    """One row of `coinflow data versions`."""

    version: str
    rows: int
    first: dt.date
    last: dt.date
    md5: str


def _carry_forward(series: pd.Series, dates: pd.DatetimeIndex) -> pd.Series:
    """Value of `series` on each date, taken from the latest day at or before it (never later)."""
    return series.reindex(series.index.union(dates)).ffill().reindex(dates)


def align_assets(
    btc: pd.DataFrame, eth: pd.DataFrame, gold: pd.DataFrame, start: dt.date, cutoff: dt.date
) -> pd.DataFrame:
    """One frame per day on the BTC calendar in [start, cutoff]; ETH/gold carried forward only."""
    frame = btc.loc[pd.Timestamp(start) : pd.Timestamp(cutoff)]
    dates = pd.DatetimeIndex(frame.index)
    out = frame[["open", "high", "low", "close", "volume"]].add_prefix("btc_")
    # ETH starts 2016-03-10: earlier days stay NaN (no back-fill from the future).
    out["eth_close"] = _carry_forward(eth["close"], dates)
    out["eth_volume"] = eth["volume"].reindex(dates)
    # A day ETH has no row of its own, after its series started: carried, flagged (the gate
    # bounds how many such days may follow each other).
    out["eth_filled"] = ((~dates.isin(eth.index)) & (dates > eth.index.min())).astype("int8")
    out["gold_close"] = _carry_forward(gold["close"], dates)
    # Weekends and market holidays carry Friday's gold close; flag them.
    out["gold_filled"] = (~dates.isin(gold.index)).astype("int8")
    return out[VERSION_COLUMNS]


def rows_after(assets: dict[str, pd.DataFrame], cutoff: dt.date) -> list[str]:
    """What the newest cut-off leaves out, per asset, in words (rows are never dropped unsaid)."""
    out = []
    for asset, frame in assets.items():
        later = frame.index[frame.index > pd.Timestamp(cutoff)]
        if len(later):
            out.append(
                f"{asset} has {len(later)} row(s) after the newest cut-off {cutoff} "
                f"({later[0].date()} .. {later[-1].date()}): in no version yet "
                "(`coinflow data cut` makes the next one)"
            )
    return out


def describe_version(version: str, proj: Project | None = None) -> VersionInfo:
    """Rows, date range and content hash of one written version."""
    path = (proj or project()).version_file(version)
    if not path.is_file():
        raise FileNotFoundError(f"dataset version {version} not found at {path}: run `dvc repro`")
    frame = pd.read_parquet(path)
    return VersionInfo(
        version, len(frame), frame.index[0].date(), frame.index[-1].date(), file_md5(path)
    )


class NotBuiltError(CoinflowError, FileNotFoundError):
    """No dataset version is built in this workspace yet (a fresh clone)."""


def versions_table(proj: Project | None = None) -> list[str]:
    """`coinflow data versions`: a header and one row per built version (* marks data.version),
    then one line naming the versions not built yet; refused, once, when none is built."""
    proj = proj or project()
    params = load_params(proj.params_file)
    built = [v for v in params.data.versions if proj.version_file(v).is_file()]
    todo = [v for v in params.data.versions if v not in built]
    pull = "" if (proj.raw / "btc.csv").is_file() else "`dvc pull data.dvc`, then "
    run = f"run {pull}`dvc repro validate` (or `make demo`)"
    if not built:
        raise NotBuiltError(f"no dataset version is built yet ({', '.join(todo)}): {run}")
    lines = [f"{'version':<8} {'rows':>6}  {'first':<10}  {'last':<10}  md5"]
    for version in built:
        info = describe_version(version, proj)
        marker = "*" if version == params.data.version else " "
        lines.append(f"{version:<7}{marker} {info.rows:>6}  {info.first}  {info.last}  {info.md5}")
    if todo:
        lines.append(f"not built yet: {', '.join(todo)}: {run}")
    return lines


def main(version: str, proj: Project | None = None) -> VersionInfo:
    """Write data/versions/<version>.parquet (its cut-off from params.yaml `data.versions`)."""
    proj = proj or project()
    params = load_params(proj.params_file)
    if version not in params.data.versions:
        known = ", ".join(params.data.versions)
        raise ValueError(f"{version!r} is not in params.yaml data.versions ({known})")
    assets = {a: pd.read_parquet(proj.interim / f"{a}.parquet") for a in ASSETS}
    cutoff = params.data.versions[version]
    if cutoff == max(params.data.versions.values()):
        for line in rows_after(assets, cutoff):
            log.info("%s: %s", version, line)
    frame = align_assets(**assets, start=params.data.start, cutoff=cutoff)
    proj.versions.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(proj.version_file(version))
    info = describe_version(version, proj)
    log.info("%s: %d rows %s → %s md5 %s", version, info.rows, info.first, info.last, info.md5)
    return info

"""Stage 2: cut the dataset versions v0.1/v0.2/v0.3 as aligned frames on the BTC calendar."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipelines.config import load_params
from pipelines.paths import INTERIM_DIR, VERSIONS_DIR, version_path

log = logging.getLogger(__name__)

BTC_COLUMNS = ["btc_open", "btc_high", "btc_low", "btc_close", "btc_volume"]
VERSION_COLUMNS = [*BTC_COLUMNS, "eth_close", "eth_volume", "gold_close", "gold_filled"]


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
    out["gold_close"] = _carry_forward(gold["close"], dates)
    # Weekends and market holidays carry Friday's gold close; flag them.
    out["gold_filled"] = (~dates.isin(gold.index)).astype("int8")
    return out[VERSION_COLUMNS]


def build_versions(
    btc: pd.DataFrame,
    eth: pd.DataFrame,
    gold: pd.DataFrame,
    start: dt.date,
    cutoffs: dict[str, dt.date],
) -> dict[str, pd.DataFrame]:
    """Every dataset version named in params, keyed by version."""
    return {v: align_assets(btc, eth, gold, start, cut) for v, cut in cutoffs.items()}


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes: the hash DVC 3 records for the same output."""
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_version(version: str, root: Path = VERSIONS_DIR) -> VersionInfo:
    """Rows, date range and content hash of one written version."""
    path = version_path(version, root)
    if not path.is_file():
        raise FileNotFoundError(f"dataset version {version} not found at {path}: run `dvc repro`")
    frame = pd.read_parquet(path)
    return VersionInfo(
        version, len(frame), frame.index[0].date(), frame.index[-1].date(), file_md5(path)
    )


def load_version(version: str, root: Path = VERSIONS_DIR) -> pd.DataFrame:
    """Read one dataset version written by this stage."""
    path = version_path(version, root)
    if not path.is_file():
        raise FileNotFoundError(f"dataset version {version} not found at {path}: run `dvc repro`")
    return pd.read_parquet(path)


def main(interim: Path = INTERIM_DIR, out_dir: Path = VERSIONS_DIR) -> None:
    """Write data/versions/<version>.parquet for every version in params.yaml."""
    params = load_params()
    assets = {a: pd.read_parquet(interim / f"{a}.parquet") for a in ("btc", "eth", "gold")}
    versions = build_versions(**assets, start=params.data.start, cutoffs=params.data.versions)
    out_dir.mkdir(parents=True, exist_ok=True)
    for version, frame in versions.items():
        frame.to_parquet(version_path(version, out_dir))
        info = describe_version(version, out_dir)
        log.info("%s: %d rows %s → %s md5 %s", version, info.rows, info.first, info.last, info.md5)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()

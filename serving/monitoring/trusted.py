"""What the platform itself holds, and which logged forecasts were made on it.

The platform's rows are its raw exports (data/raw, as `coinflow data fetch` merges them),
parsed by pipelines.data.ingest and aligned on the BTC calendar exactly as every dataset version
is cut (pipelines.data.version.align_assets, up to the last day every series has a row of its
own). Live scores and the calibrator learn only from them: realised closes come from these rows,
and a logged forecast counts only when it was made on them: a request without rows (the
version's shipped rows, cut from the platform's data) or one whose rows equal the platform's
rows of the same days, compared when scoring (a forecast made before its days were fetched is
judged once they are). A forecast on other rows stays in the log and replays, but never counts
as the model's live performance, never moves its calibration or an alert.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting.features import INPUT_COLUMNS
from forecasting.forecast import rows_to_arrays
from pipelines.data.cut import last_common_day
from pipelines.data.ingest import load_assets
from pipelines.data.version import align_assets

DATASET, REQUEST = "dataset", "request"  # the prediction log's rows_source values


@dataclass(frozen=True)
class PlatformRows:
    """The platform's daily rows (the dataset-version columns), indexed by day, oldest first."""

    frame: pd.DataFrame
    _hashes: dict[tuple[dt.date, int], str | None] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def last_day(self) -> dt.date:
        """The newest day the platform holds."""
        last: dt.date = pd.Timestamp(self.frame.index[-1]).date()
        return last

    def closes(self) -> pd.Series:
        """Realised BTC closes, indexed by day (datetime.date)."""
        index = pd.DatetimeIndex(self.frame.index).date
        return pd.Series(self.frame["btc_close"].to_numpy(dtype="float64"), index=index)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(dates datetime64[D], values (days, INPUT_COLUMNS) float64): what a model reads."""
        return rows_to_arrays(self.frame)

    def md5(self, through: dt.date) -> str:
        """Content hash of the rows up to `through`: the data a state learned from."""
        part = self.frame.loc[: pd.Timestamp(through), INPUT_COLUMNS]
        digest = hashlib.md5(np.asarray(part.index, dtype="datetime64[D]").tobytes())
        digest.update(np.ascontiguousarray(part.to_numpy(dtype="float64")).tobytes())
        return digest.hexdigest()

    def rows_hash(self, origin: dt.date, days: int) -> str | None:
        """sha256 of the platform's `days` rows ending at `origin`, as the prediction log hashes
        a forecast's input rows (None: the platform does not hold all of those days)."""
        from serving.prediction_log import rows_hash

        key = (origin, days)
        if key not in self._hashes:
            first = origin - dt.timedelta(days=days - 1)
            part = self.frame.loc[pd.Timestamp(first) : pd.Timestamp(origin), INPUT_COLUMNS]
            whole = len(part) == days and pd.Timestamp(part.index[-1]).date() == origin
            self._hashes[key] = rows_hash(part.to_numpy(dtype="float64")) if whole else None
        return self._hashes[key]


def platform_rows(raw: Path, start: dt.date) -> PlatformRows:
    """The platform's rows from its raw exports: from `start` to the last day every series
    has a row of its own (a dataset version's cut-off rule)."""
    assets = load_assets(raw)
    return PlatformRows(align_assets(**assets, start=start, cutoff=last_common_day(assets)))


def version_rows(path: Path) -> PlatformRows:
    """The platform's rows as one dataset version file holds them."""
    return PlatformRows(pd.read_parquet(path))


def trusted(logged: pd.DataFrame, rows: PlatformRows) -> pd.DataFrame:
    """The logged forecast days made on the platform's rows: no rows sent, or rows equal to the
    platform's rows of the same days (`rows_days` of them ending at the origin)."""
    if logged.empty:
        return logged
    sent = logged["rows_source"] == REQUEST
    keys = logged.loc[sent, ["origin", "rows_days", "rows_hash"]].drop_duplicates()
    matches = {
        (origin, days, digest)
        for origin, days, digest in keys.itertuples(index=False)
        if pd.notna(days) and rows.rows_hash(origin, int(days)) == digest
    }
    made_on_ours = [
        (o, d, h) in matches
        for o, d, h in zip(logged["origin"], logged["rows_days"], logged["rows_hash"], strict=True)
    ]
    return logged[~sent | np.asarray(made_on_ours, dtype=bool)]

"""Dataset versions: BTC calendar, cut-offs, ETH/gold aligned from the past only."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from pipelines.data.version import VERSION_COLUMNS, align_assets

pytestmark = pytest.mark.unit


def _asset(dates: pd.DatetimeIndex, start: float) -> pd.DataFrame:
    close = start + np.arange(len(dates), dtype=float)
    return pd.DataFrame(
        {
            "open": close,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": 10.0,
            "change_pct": 0.0,
        },
        index=dates.rename("date"),
    )


@pytest.fixture
def assets() -> dict[str, pd.DataFrame]:
    days = pd.date_range("2023-12-25", "2024-01-14", freq="D")
    weekdays = days[days.dayofweek < 5]
    return {
        "btc": _asset(days, 100.0),
        "eth": _asset(days[5:], 10.0),
        "gold": _asset(weekdays, 1000.0),
    }


def test_versions_cut_at_their_dates(assets: dict[str, pd.DataFrame]) -> None:
    cut = {"a": dt.date(2024, 1, 5), "b": dt.date(2024, 1, 10)}
    versions = {
        v: align_assets(**assets, start=dt.date(2024, 1, 1), cutoff=c) for v, c in cut.items()
    }
    assert versions["a"].index[-1] == pd.Timestamp("2024-01-05")
    assert versions["b"].index[-1] == pd.Timestamp("2024-01-10")
    assert versions["a"].index[0] == pd.Timestamp("2024-01-01")
    assert list(versions["a"].columns) == VERSION_COLUMNS
    # a shorter version is a prefix of a longer one
    pd.testing.assert_frame_equal(versions["a"], versions["b"].loc[:"2024-01-05"])


def test_weekend_gold_is_carried_forward_and_flagged(assets: dict[str, pd.DataFrame]) -> None:
    frame = align_assets(**assets, start=dt.date(2024, 1, 1), cutoff=dt.date(2024, 1, 14))
    friday, saturday, sunday = (pd.Timestamp(d) for d in ("2024-01-05", "2024-01-06", "2024-01-07"))
    assert frame.loc[saturday, "gold_close"] == frame.loc[friday, "gold_close"]
    assert frame.loc[sunday, "gold_close"] == frame.loc[friday, "gold_close"]
    assert frame.loc[[saturday, sunday], "gold_filled"].tolist() == [1, 1]
    assert frame.loc[friday, "gold_filled"] == 0


def test_missing_history_is_never_back_filled(assets: dict[str, pd.DataFrame]) -> None:
    frame = align_assets(**assets, start=dt.date(2023, 12, 25), cutoff=dt.date(2024, 1, 14))
    eth_start = assets["eth"].index[0]
    assert frame.loc[: eth_start - pd.Timedelta(days=1), "eth_close"].isna().all()
    assert frame.loc[eth_start, "eth_close"] == assets["eth"].loc[eth_start, "close"]


def test_future_rows_do_not_change_a_version(assets: dict[str, pd.DataFrame]) -> None:
    cutoff = dt.date(2024, 1, 7)
    before = align_assets(**assets, start=dt.date(2024, 1, 1), cutoff=cutoff)
    changed = {k: v.copy() for k, v in assets.items()}
    for frame in changed.values():
        frame.loc[frame.index > pd.Timestamp(cutoff), ["close", "open", "high", "low"]] *= 7
    after = align_assets(**changed, start=dt.date(2024, 1, 1), cutoff=cutoff)
    pd.testing.assert_frame_equal(before, after)


def test_rows_after_the_newest_cutoff_are_reported() -> None:
    import datetime as dt

    import pandas as pd

    from pipelines.data.version import rows_after

    days = pd.date_range("2024-10-28", "2024-11-03", freq="D", name="date")
    frame = pd.DataFrame({"close": range(len(days))}, index=days)
    lines = rows_after({"btc": frame, "gold": frame.iloc[:3]}, dt.date(2024, 10, 31))
    assert lines == [
        "btc has 3 row(s) after the newest cut-off 2024-10-31 (2024-11-01 .. 2024-11-03): "
        "in no version yet (`coinflow data cut` makes the next one)"
    ]

"""Live scores of hand-made logged forecasts with known answers, and which logged forecasts
count: those made on the platform's own rows."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from serving.monitoring.live_scores import realized, rolling_scores, window_scores

pytestmark = pytest.mark.unit
D = dt.date


def day_row(
    version: int, origin: D, median: float, lo: float, hi: float, rows_hash: str = "h"
) -> dict[str, object]:
    return {
        "version": version,
        "role": "champion",
        "step": 1,
        "origin": origin,
        "day": origin + dt.timedelta(days=1),
        "median": median,
        "lower_80": lo,
        "upper_80": hi,
        "lower_95": lo - 10,
        "upper_95": hi + 10,
        "rows_hash": rows_hash,
        "levels": [0.1, 0.5, 0.9],
        "quantiles": [lo, median, hi],
    }


def test_known_answers() -> None:
    closes = pd.Series(
        [100.0, 110.0, 100.0, 120.0], index=pd.date_range("2024-01-01", periods=4, freq="D")
    )
    days = pd.DataFrame(
        [
            day_row(1, D(2024, 1, 1), 105, 95, 115),  # actual 110: error 5, persistence 10, inside
            day_row(
                1, D(2024, 1, 2), 112, 105, 115
            ),  # actual 100: error 12, persistence 10, outside
            day_row(
                1, D(2024, 1, 2), 112, 105, 115
            ),  # the same forecast served again: counted once
            day_row(1, D(2024, 1, 4), 120, 110, 130),  # no close for 2024-01-05 yet: not scored
        ]
    )
    rows = realized(days, closes)
    assert len(rows) == 2
    scores = window_scores(rows)
    assert scores["n"] == 2 and scores["mae"] == pytest.approx(8.5)
    assert scores["persistence_mae"] == pytest.approx(10.0) and scores["mase"] == pytest.approx(
        0.85
    )
    assert scores["coverage_80"] == 0.5 and scores["coverage_95"] == 1.0
    # pinball at levels 0.1/0.5/0.9, averaged: day 1 (y=110 vs 95/105/115: 1.5, 2.5, 0.5),
    # day 2 (y=100 vs 105/112/115: 4.5, 6, 1.5) → 16.5 / 6.
    assert scores["pinball"] == pytest.approx(16.5 / 6)
    assert np.isfinite(scores["crps"]) and scores["crps"] > 0


def test_windows_and_since_promotion() -> None:
    idx = pd.date_range("2024-01-01", periods=40, freq="D")
    closes = pd.Series(100.0 + np.arange(40), index=idx)
    days = pd.DataFrame([day_row(2, d.date(), 100.0 + i, 90, 200) for i, d in enumerate(idx[:-1])])
    out = rolling_scores(realized(days, closes), [D(2024, 2, 9)], since={2: D(2024, 2, 1)})
    by_window = out.set_index("window")["n"].to_dict()
    assert by_window == {"7d": 7, "30d": 30, "90d": 39, "since-promotion": 9}
    # median = origin close: persistence itself, so MASE is exactly 1
    assert set(out["mase"].round(12)) == {1.0}


@pytest.mark.parametrize(
    ("champion", "previous", "expected"),
    [
        ({"n": 3, "mase": 2.0}, None, (False, False)),  # too few days for a verdict
        ({"n": 30, "mase": 0.99, "coverage_80": 0.8}, None, (False, False)),  # healthy
        ({"n": 30, "mase": 1.3}, None, (True, False)),  # bad, nothing to roll back to
        ({"n": 30, "mase": 1.3}, {"n": 30, "mase": 1.0}, (True, True)),  # bad, previous better
        ({"n": 30, "mase": 1.3}, {"n": 30, "mase": 1.4}, (True, False)),  # previous worse
        ({"n": 30, "mase": 1.0, "coverage_80": 0.5}, {"n": 30, "mase": 0.9}, (True, True)),
    ],
)
def test_monitor_verdict_each_way(
    champion: dict[str, float], previous: dict[str, float] | None, expected: tuple[bool, bool]
) -> None:
    from serving.monitoring.rule import monitor_verdict

    alert, rollback, why = monitor_verdict(
        champion, previous, max_mase=1.1, coverage_tol=0.1, min_days=14, auto_rollback=True
    )
    assert (alert, rollback) == expected, why
    off = monitor_verdict(
        champion, previous, max_mase=1.1, coverage_tol=0.1, min_days=14, auto_rollback=False
    )
    assert off[1] is False  # never a rollback with auto_rollback off
    if champion.get("coverage_80") == 0.5:  # a coverage alert: the calibrator fell behind
        assert "calibration could not keep up" in why


def test_only_forecasts_on_the_platforms_rows_count() -> None:
    """No rows sent (the version's own), or rows equal to the platform's for the same days:
    counted. Other rows, rows past the platform's last day, an unknown row count: not."""
    from forecasting.features import INPUT_COLUMNS
    from serving.monitoring.trusted import PlatformRows, trusted
    from serving.prediction_log import rows_hash

    days = pd.date_range("2024-01-01", periods=10, freq="D")
    frame = pd.DataFrame(
        np.arange(80, dtype="float64").reshape(10, 8) + 1, index=days, columns=INPUT_COLUMNS
    )
    platform = PlatformRows(frame)
    ours = frame.to_numpy()[5:8]  # three rows ending 2024-01-08
    doctored = ours.copy()
    doctored[-1, INPUT_COLUMNS.index("btc_close")] *= 0.5

    def logged(source: str, origin: D, count: int | None, digest: str) -> dict[str, object]:
        return day_row(1, origin, 1.0, 0.0, 2.0) | {
            "rows_source": source,
            "rows_days": count,
            "rows_hash": digest,
        }

    rows = pd.DataFrame(
        [
            logged("dataset", D(2024, 1, 8), None, "shipped"),
            logged("request", D(2024, 1, 8), 3, rows_hash(ours)),
            logged("request", D(2024, 1, 8), 3, rows_hash(doctored)),
            logged("request", D(2024, 1, 9), 3, rows_hash(ours)),  # not the rows of those days
            logged("request", D(2024, 1, 12), 3, rows_hash(ours)),  # days the platform lacks
            logged("request", D(2024, 1, 8), None, rows_hash(ours)),
        ]
    )
    kept = trusted(rows, platform)
    assert list(kept.index) == [0, 1]
    assert platform.rows_hash(D(2024, 1, 8), 3) == rows_hash(ours)
    assert platform.rows_hash(D(2024, 1, 12), 3) is None

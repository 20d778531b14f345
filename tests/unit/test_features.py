"""Chronological split, train-only scaler, windows, persistence baseline — and no leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting.features import (
    FEATURE_COLUMNS,
    build_table,
    compute_features,
    fit_scaler,
    make_windows,
    persistence_errors,
    split_chronologically,
)

pytestmark = pytest.mark.unit


def synthetic_version(days: int = 200, seed: int = 0) -> pd.DataFrame:
    """A plausible aligned version frame: random-walk prices, weekend gold flags."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2020-01-01", periods=days, freq="D", name="date")
    close = 1000 * np.exp(np.cumsum(rng.normal(0, 0.03, days)))
    frame = pd.DataFrame(
        {
            "btc_open": close * np.exp(rng.normal(0, 0.01, days)),
            "btc_close": close,
            "btc_volume": rng.uniform(1e4, 1e5, days),
            "eth_close": 50 * np.exp(np.cumsum(rng.normal(0, 0.04, days))),
            "eth_volume": rng.uniform(1e4, 1e5, days),
            "gold_close": 1500 * np.exp(np.cumsum(rng.normal(0, 0.005, days))),
            "gold_filled": (dates.dayofweek >= 5).astype("int8"),
        },
        index=dates,
    )
    frame["btc_high"] = frame[["btc_open", "btc_close"]].max(axis=1) * 1.01
    frame["btc_low"] = frame[["btc_open", "btc_close"]].min(axis=1) * 0.99
    return frame


def test_split_is_chronological_and_complete() -> None:
    split = split_chronologically(1000, 0.7, 0.1)
    assert (split.n_train, split.n_val, split.n_test) == (700, 100, 200)
    assert split.val_start == 700 and split.test_start == 800
    with pytest.raises(ValueError, match="too few"):
        split_chronologically(5, 0.7, 0.1)


def test_target_is_next_day_log_return_and_no_input_from_that_day() -> None:
    frame = synthetic_version()
    table = build_table(frame)
    day = table.index[10]
    nxt = day + pd.Timedelta(days=1)
    assert table.loc[day, "target"] == pytest.approx(
        np.log(frame.loc[nxt, "btc_close"] / frame.loc[day, "btc_close"])
    )
    # Changing the predicted day's High/Low/Open/volume (the lecture's leak) changes no input.
    poked = frame.copy()
    poked.loc[nxt, ["btc_high", "btc_low", "btc_open", "btc_volume"]] *= 3
    pd.testing.assert_series_equal(
        build_table(poked).loc[day, FEATURE_COLUMNS], table.loc[day, FEATURE_COLUMNS]
    )
    assert len(table) == len(frame) - 2  # day 1 has no previous close, the last no target


def test_windows_hold_exactly_the_past_lookback_rows() -> None:
    x = np.arange(40, dtype=float).reshape(20, 2)
    windows = make_windows(x, 5, np.array([4, 10, 19]))
    assert windows.shape == (3, 5, 2)
    np.testing.assert_array_equal(windows[1], x[6:11])
    with pytest.raises(ValueError, match="history"):
        make_windows(x, 5, np.array([3]))
    with pytest.raises(ValueError, match="lookback"):
        make_windows(x, 25, np.array([19]))


def test_scaler_is_fit_on_train_rows_only() -> None:
    table = build_table(synthetic_version())
    split = split_chronologically(len(table), 0.7, 0.1)
    scaler = fit_scaler(table, split)
    train = table.iloc[: split.n_train]
    np.testing.assert_allclose(scaler.mean, train[FEATURE_COLUMNS].mean().to_numpy())
    assert scaler.target_mean == pytest.approx(train["target"].mean())


def test_persistence_baseline_in_usd() -> None:
    table = pd.DataFrame({"close": [100.0, 110.0, 90.0], "next_close": [110.0, 90.0, 99.0]})
    errors = persistence_errors(table)
    assert errors["mae"] == pytest.approx((10 + 20 + 9) / 3)
    assert errors["rmse"] == pytest.approx(np.sqrt((100 + 400 + 81) / 3))


@pytest.mark.parametrize("cut", [30, 100, 139, 140, 150, 190])
def test_future_rows_never_touch_past_windows_or_scaler(cut: int) -> None:
    """Rows after day t change: inputs for days <= t stay, the scaler too once t >= train end."""
    frame = synthetic_version()
    t = frame.index[cut]
    poked = frame.copy()
    rng = np.random.default_rng(cut)
    after = poked.index > t
    for column in poked.columns.drop("gold_filled"):
        poked.loc[after, column] *= rng.uniform(0.2, 5.0, after.sum())
    before_feats, after_feats = compute_features(frame), compute_features(poked)
    pd.testing.assert_frame_equal(before_feats.loc[:t], after_feats.loc[:t])

    table, table2 = build_table(frame), build_table(poked)
    split = split_chronologically(len(table), 0.7, 0.1)
    lookback = 10
    upto = int(np.searchsorted(table.index, t, side="right"))  # rows whose day is <= t
    rows = np.arange(lookback - 1, upto)
    if len(rows):
        np.testing.assert_array_equal(
            make_windows(table[FEATURE_COLUMNS].to_numpy(), lookback, rows),
            make_windows(table2[FEATURE_COLUMNS].to_numpy(), lookback, rows),
        )
    # The last training target reads the close of the day after the last training row.
    train_end_day = table.index[split.n_train - 1] + pd.Timedelta(days=1)
    if t >= train_end_day:
        assert fit_scaler(table, split) == fit_scaler(table2, split)
        train_rows = slice(0, split.n_train)
        pd.testing.assert_frame_equal(table.iloc[train_rows], table2.iloc[train_rows])
    else:
        assert fit_scaler(table, split) != fit_scaler(table2, split)  # the test can fail

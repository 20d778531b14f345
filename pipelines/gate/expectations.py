"""The gate's Great Expectations suite, built in code, and the helper columns it checks."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from core.params import DriftParams, ValidateParams
from core.rules import MAX_PRICE, MAX_VOLUME, RULES, OhlcRules, ohlc_slacks
from pipelines.data.history import CHANGE
from pipelines.data.version import BTC_COLUMNS, FILLED, VERSION_COLUMNS

DTYPES = {
    "date": "datetime64",
    **dict.fromkeys(VERSION_COLUMNS, "float64"),
    "eth_filled": "int8",
    "gold_filled": "int8",
}
REQUIRED_COLUMNS = ["date", *BTC_COLUMNS, "gold_close", "gold_filled"]  # ETH starts 2016-03-10
PRICE_COLUMNS = ["btc_open", "btc_high", "btc_low", "btc_close", "eth_close", "gold_close"]
# Cross-row and tolerant cross-column rules have no GE expectation: they are computed on a copy
# as helper columns (name -> the version columns it is derived from, shown in failure examples).
# The OHLC slacks are core.rules' (the API refuses request rows by the same rules).
OHLC = ["btc_open", "btc_high", "btc_low", "btc_close"]
SLACKS = {  # helper column → core.rules rule
    "btc_high_slack": "high_body",
    "btc_low_slack": "low_body",
    "btc_high_wick_slack": "high_wick",
    "btc_low_wick_slack": "low_wick",
}
MOVES = {"btc_log_move": "btc_close", "eth_log_move": "eth_close", "gold_log_move": "gold_close"}
# Days in a row a series has been carried forward (0 on a day with its own observation).
STALE = {f"{asset}_stale_run": flag for asset, flag in FILLED.items()}
CHECK_COLUMNS = {
    **dict.fromkeys(SLACKS, OHLC),
    "date_gap_days": ["date"],  # days since the previous row
    **{move: [close] for move, close in MOVES.items()},  # log(close_t / close_t-1)
    **{run: [flag] for run, flag in STALE.items()},
    CHANGE: [],  # what differs from the published history on that row (pipelines.data.history)
}
ROW = "row_number"  # position in the version frame: identifies a row even when dates repeat


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce").astype("float64")


def add_check_columns(
    frame: pd.DataFrame, rules: OhlcRules, changes: np.ndarray | None = None
) -> pd.DataFrame:
    """A copy with `date` as a column, ROW and CHECK_COLUMNS; missing inputs give NaN, no crash.

    `changes`: pipelines.data.history.row_changes of the frame (None: nothing to compare with)."""
    out = frame.reset_index() if frame.index.name == "date" else frame.reset_index(drop=True)
    out[ROW] = np.arange(len(out))
    out[CHANGE] = np.full(len(out), None, dtype=object) if changes is None else changes
    opn, high, low, close = (_numeric(out, c).to_numpy() for c in OHLC)
    slacks = ohlc_slacks(opn, high, low, close, rules)
    for column, rule in SLACKS.items():
        # A non-finite input must fail the rule, not vanish as a null GE ignores.
        out[column] = np.nan_to_num(slacks[rule], nan=np.nan, posinf=-np.inf, neginf=-np.inf)
    dates = (
        pd.to_datetime(out["date"], errors="coerce")
        if "date" in out
        else pd.Series(pd.NaT, index=out.index)
    )
    out["date_gap_days"] = dates.diff() / pd.Timedelta(days=1)
    for run, flag in STALE.items():
        filled = _numeric(out, flag).fillna(0).to_numpy() > 0
        streak = np.zeros(len(filled))
        for i in np.flatnonzero(filled):  # length of the run of filled days ending here
            streak[i] = streak[i - 1] + 1 if i else 1
        out[run] = streak
    with np.errstate(invalid="ignore", divide="ignore"):
        for move, column in MOVES.items():
            close = _numeric(out, column)
            out[move] = np.log(close / close.shift(1))
    return out


def build_suite(name: str, cutoff: dt.date, params: ValidateParams, history_rule: str) -> Any:
    """The gate's ExpectationSuite for one version (data columns plus CHECK_COLUMNS);
    `history_rule` says what the rows are compared with, or why they are not."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    tol, wick = params.ohlc_tolerance, params.max_wick
    columns = [*DTYPES, ROW, *CHECK_COLUMNS]
    exps: list[Any] = [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=columns, exact_match=True, description="exactly the version columns"
        ),
        gxe.ExpectTableRowCountToBeBetween(
            min_value=params.min_rows,
            max_value=params.max_rows,
            description=f"{params.min_rows} to {params.max_rows} rows",
        ),
    ]
    exps += [
        gxe.ExpectColumnValuesToBeOfType(column=c, type_=t, description=f"dtype {t}")
        for c, t in DTYPES.items()
    ]
    exps += [
        gxe.ExpectColumnValuesToNotBeNull(column=c, description="no missing values")
        for c in REQUIRED_COLUMNS
    ]
    exps += [
        gxe.ExpectColumnValuesToBeBetween(
            column=c,
            min_value=0,
            strict_min=True,
            max_value=MAX_PRICE,
            description=f"0 < price <= {MAX_PRICE:.0e} USD, finite (nulls ignored)",
        )
        for c in PRICE_COLUMNS
    ]
    exps += [
        gxe.ExpectColumnValuesToBeBetween(
            column=c,
            min_value=0,
            max_value=MAX_VOLUME,
            description=f"0 <= volume <= {MAX_VOLUME:.0e}, finite",
        )
        for c in ("btc_volume", "eth_volume")
    ]
    exps += [
        gxe.ExpectColumnValuesToBeInSet(
            column="gold_filled", value_set=[0, 1], description="gold_filled is a 0/1 flag"
        ),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="btc_high",
            column_B="btc_low",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
            description="High >= Low",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="btc_high_slack",
            min_value=0,
            description=f"High >= max(Open, Close) within {tol:.2%}",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="btc_low_slack",
            min_value=0,
            description=f"Low <= min(Open, Close) within {tol:.2%}",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="btc_high_wick_slack",
            min_value=0,
            description=RULES["high_wick"].replace("max_wick", f"{wick:g}"),
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="btc_low_wick_slack",
            min_value=0,
            description=RULES["low_wick"].replace("max_wick", f"{wick:g}"),
        ),
        gxe.ExpectColumnValuesToBeUnique(column="date", description="dates are unique"),
        gxe.ExpectColumnValuesToBeIncreasing(
            column="date", strictly=True, description="dates strictly increasing"
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="date",
            max_value=pd.Timestamp(cutoff),
            description=f"no date after the cut-off {cutoff}",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="date_gap_days",
            min_value=1,
            max_value=params.max_gap_days,
            description=f"next row 1 to {params.max_gap_days} day(s) later",
        ),
    ]
    exps += [
        gxe.ExpectColumnValuesToBeBetween(
            column=run,
            max_value=params.max_filled_run[asset],
            description=f"{asset.upper()} carried forward at most {params.max_filled_run[asset]} "
            "day(s) in a row (a longer run: its export stops early or has a hole; "
            "the examples are the filled days)",
        )
        for asset, run in ((a, f"{a}_stale_run") for a in FILLED)
    ]
    exps += [
        gxe.ExpectColumnValuesToBeBetween(
            column=move,
            min_value=-params.max_abs_log_move,
            max_value=params.max_abs_log_move,
            description=f"|log close-to-close move| <= {params.max_abs_log_move}",
        )
        for move in MOVES
    ]
    exps.append(
        gxe.ExpectColumnValuesToBeNull(
            column=CHANGE,
            description=history_rule,
        )
    )
    suite = gx.ExpectationSuite(name=name)
    for exp in exps:
        suite.add_expectation(exp)
    return suite


def build_drift_suite(name: str, params: DriftParams) -> Any:
    """The drift report's suite, over pipelines.gate.drift's table (one row per series)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    effect = "the gate fails" if params.action == "fail" else "a warning only"
    suite = gx.ExpectationSuite(name=name)
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(
            column="p_value",
            min_value=params.alpha,
            description=f"newest {params.window_days} days vs the training window: KS p-value "
            f">= {params.alpha} (no significant shift; below it, {effect})",
        )
    )
    return suite

"""The gate's Great Expectations suite, built in code, and the helper columns it checks."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import ValidateParams
from pipelines.version import BTC_COLUMNS, VERSION_COLUMNS

DTYPES = {"date": "datetime64", **dict.fromkeys(VERSION_COLUMNS, "float64"), "gold_filled": "int8"}
REQUIRED_COLUMNS = ["date", *BTC_COLUMNS, "gold_close", "gold_filled"]  # ETH starts 2016-03-10
PRICE_COLUMNS = ["btc_open", "btc_high", "btc_low", "btc_close", "eth_close", "gold_close"]
# Cross-row and tolerant cross-column rules have no GE expectation: they are computed on a copy
# as helper columns (name -> the version columns it is derived from, shown in failure examples).
CHECK_COLUMNS = {
    "btc_high_slack": ["btc_open", "btc_high", "btc_close"],  # High*(1+tol) - max(Open, Close)
    "btc_low_slack": ["btc_open", "btc_low", "btc_close"],  # min(Open, Close) - Low*(1-tol)
    "date_gap_days": ["date"],  # days since the previous row
    "btc_log_move": ["btc_close"],  # log(close_t / close_t-1)
}
ROW = "row_number"  # position in the version frame: identifies a row even when dates repeat


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce").astype("float64")


def add_check_columns(frame: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """A copy with `date` as a column, ROW and CHECK_COLUMNS; missing inputs give NaN, no crash."""
    out = frame.reset_index() if frame.index.name == "date" else frame.reset_index(drop=True)
    out[ROW] = np.arange(len(out))
    opn, high, low, close = (_numeric(out, f"btc_{c}") for c in ("open", "high", "low", "close"))
    out["btc_high_slack"] = high * (1 + tolerance) - np.maximum(opn, close)
    out["btc_low_slack"] = np.minimum(opn, close) - low * (1 - tolerance)
    dates = (
        pd.to_datetime(out["date"], errors="coerce")
        if "date" in out
        else pd.Series(pd.NaT, index=out.index)
    )
    out["date_gap_days"] = dates.diff() / pd.Timedelta(days=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["btc_log_move"] = np.log(close / close.shift(1))
    return out


def build_suite(name: str, cutoff: dt.date, params: ValidateParams) -> Any:
    """The gate's ExpectationSuite for one version (data columns plus CHECK_COLUMNS)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    tol = params.ohlc_tolerance
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
            column=c, min_value=0, strict_min=True, description="price > 0 (nulls ignored)"
        )
        for c in PRICE_COLUMNS
    ]
    exps += [
        gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, description="volume >= 0")
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
        gxe.ExpectColumnValuesToBeBetween(
            column="btc_log_move",
            min_value=-params.max_abs_log_move,
            max_value=params.max_abs_log_move,
            description=f"|log close-to-close move| <= {params.max_abs_log_move}",
        ),
    ]
    suite = gx.ExpectationSuite(name=name)
    for exp in exps:
        suite.add_expectation(exp)
    return suite

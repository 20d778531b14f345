"""The row rules a fetched day must pass before it is merged into data/raw: the gate's own.

The price and volume bounds and the OHLC rules are core.rules' (the gate and the API use the
same definitions), the tolerances and the close-to-close move bound params.yaml `validate`'s.
Calendar continuity is per asset: BTC and ETH trade every day (at most `max_gap_days` from one
row to the next; for ETH this is stricter than the gate, which tolerates `max_filled_run.eth`
carried days, because a real ETH export never misses a day), gold skips weekends and holidays
(at most `max_filled_run.gold` days missing in a row, the run the gate allows).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from core.params import ValidateParams
from core.rules import MAX_PRICE, MAX_VOLUME, RULES, ohlc_slacks
from pipelines.data.ingest import EXPECTED_HEADER, shown

DAILY = ("btc", "eth")  # trade every calendar day
PRICES = {"Price": "close", "Open": "open", "High": "high", "Low": "low"}
RULE_COLUMN = {  # the export column each OHLC rule is checked on (named in the refusal)
    "high_low": "High",
    "high_body": "High",
    "low_body": "Low",
    "high_wick": "High",
    "low_wick": "Low",
}


def max_gap_days(asset: str, params: ValidateParams) -> int:
    """Most calendar days from one of the asset's rows to the next."""
    if asset in DAILY:
        return params.max_gap_days
    return params.max_filled_run[asset] + 1


def _rule_text(rule: str, params: ValidateParams) -> str:
    text = RULES[rule].replace("max_wick", f"{params.max_wick:g}")
    return text.replace("the tolerance", f"{params.ohlc_tolerance:.2%}")


def row_problems(
    asset: str,
    frame: pd.DataFrame,
    raw: dict[dt.date, list[str]],
    days: list[dt.date],
    params: ValidateParams,
) -> list[str]:
    """What breaks the rules on `days` of the merged `frame` (oldest first), in words.

    `raw`: the export's rows by day (what a refusal shows); each problem names asset, day,
    column and value."""
    out: list[str] = []
    position = {d: i for i, d in enumerate(frame.index.date)}

    def field(day: dt.date, column: str) -> str:
        return shown(raw[day][EXPECTED_HEADER.index(column)])

    gap_limit = max_gap_days(asset, params)
    close = frame["close"].to_numpy()
    for day in days:
        i = position[day]
        row = frame.iloc[i]
        prefix = f"{asset} {day}"
        for column, name in PRICES.items():
            if not 0 < row[name] <= MAX_PRICE:
                out.append(
                    f"{prefix} {column}: {field(day, column)} is not a price "
                    f"(0 < price <= {MAX_PRICE:.0e} USD)"
                )
        if not np.isnan(row["volume"]) and not 0 <= row["volume"] <= MAX_VOLUME:
            out.append(
                f"{prefix} Vol.: {field(day, 'Vol.')} is not a volume (0 to {MAX_VOLUME:.0e})"
            )
        opn, high, low, cls = (np.array([row[c]]) for c in ("open", "high", "low", "close"))
        for rule, slack in ohlc_slacks(opn, high, low, cls, params.ohlc).items():
            if not slack[0] >= 0:
                column = RULE_COLUMN[rule]
                values = ", ".join(f"{c} {field(day, c)}" for c in ("Open", "High", "Low", "Price"))
                out.append(
                    f"{prefix} {column}: {field(day, column)} breaks "
                    f"{_rule_text(rule, params)} ({values})"
                )
        if i == 0:
            continue  # the asset's first day ever: nothing before it to compare with
        before = frame.index[i - 1].date()
        gap = (day - before).days
        if gap > gap_limit:
            missing = before + dt.timedelta(days=1)
            allowed = (
                f"{asset} trades every day"
                if gap_limit == 1
                else f"{asset} may miss at most {gap_limit - 1} day(s) in a row"
            )
            out.append(
                f"{prefix} Date: {gap - 1} day(s) missing before it (from {missing}): {allowed}"
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            move = float(np.log(close[i] / close[i - 1]))
        if not abs(move) <= params.max_abs_log_move:
            out.append(
                f"{prefix} Price: {field(day, 'Price')} is a log move of {move:+.2f} from "
                f"{before}'s close {close[i - 1]:,.10g} (the gate allows at most "
                f"±{params.max_abs_log_move:g}: a misplaced separator or a wrong digit?)"
            )
    return out

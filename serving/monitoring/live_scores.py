"""Scoring served forecasts once the truth is known: pure pandas, no I/O.

Input: one row per logged forecast day (version, role, step, origin day, forecast day, median,
80%/95% bounds, quantiles and their levels) and the realized closes. A forecast counts once per
distinct input (the same answer served a thousand times is one forecast), and is scored when its
day's close exists. Scores per version, role (the alias asked for, or "shadow") and horizon step,
over trailing windows of forecast days ending at each scored day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from forecasting.quantiles import crps, pinball

NEXT_DAY = 1  # the horizon step MLflow and the registry tags carry (the table has them all)

WINDOWS = {"7d": 7, "30d": 30, "90d": 90}
SINCE = "since-promotion"
KEYS = ["version", "role", "step"]
SCORE_COLUMNS = [
    "n",
    "mae",
    "persistence_mae",
    "mase",
    "coverage_80",
    "coverage_95",
    "pinball",
    "crps",
]


def realized(days: pd.DataFrame, closes: pd.Series) -> pd.DataFrame:
    """Logged forecast days joined with the actual close of their day and of their origin."""
    unique = days.drop_duplicates(subset=[*KEYS, "origin", "rows_hash"])
    index = pd.DatetimeIndex(pd.to_datetime(closes.index))
    by_day = pd.Series(closes.to_numpy(dtype="float64"), index=index.date)
    out = unique.assign(actual=unique["day"].map(by_day), origin_close=unique["origin"].map(by_day))
    return out.dropna(subset=["actual", "origin_close"])


def window_scores(rows: pd.DataFrame) -> dict[str, float]:
    """The scores of a set of realized forecast days (one window of one version/role/step)."""
    err = np.abs(rows["median"].to_numpy() - rows["actual"].to_numpy())
    naive = np.abs(rows["origin_close"].to_numpy() - rows["actual"].to_numpy())
    mae, naive_mae = float(err.mean()), float(naive.mean())
    out = {
        "n": float(len(rows)),
        "mae": mae,
        "persistence_mae": naive_mae,
        "mase": mae / naive_mae if naive_mae > 0 else float("nan"),
    }
    actual = rows["actual"].to_numpy()
    for level in ("80", "95"):
        lower, upper = rows[f"lower_{level}"].to_numpy(), rows[f"upper_{level}"].to_numpy()
        known = np.isfinite(lower) & np.isfinite(upper)
        inside = (lower <= actual) & (actual <= upper)
        out[f"coverage_{level}"] = float(inside[known].mean()) if known.any() else float("nan")
    pin, crp = [], []
    for levels, group in rows.groupby(rows["levels"].map(tuple)):
        quant = np.vstack(group["quantiles"].to_numpy())
        if quant.shape[1] == len(levels):
            pin.append(pinball(quant, group["actual"].to_numpy(), levels).mean(axis=1))
            crp.append(crps(quant, group["actual"].to_numpy(), levels))
    out["pinball"] = float(np.concatenate(pin).mean()) if pin else float("nan")
    out["crps"] = float(np.concatenate(crp).mean()) if crp else float("nan")
    return out


def rolling_scores(
    rows: pd.DataFrame,
    as_of: Iterable[dt.date],
    since: dict[int, dt.date] | None = None,
) -> pd.DataFrame:
    """Scores per (version, role, step, window, day) for every day in `as_of` that has data:
    the trailing 7/30/90 days of forecast days, and every day since the version's promotion."""
    since = since or {}
    out = []
    for (version, role, step), group in rows.groupby(KEYS):
        group_days = group["day"]
        for day in sorted(set(as_of)):
            windows = {name: day - dt.timedelta(days=n) for name, n in WINDOWS.items()}
            if int(version) in since:
                windows[SINCE] = since[int(version)] - dt.timedelta(days=1)
            for name, after in windows.items():
                part = group[(group_days > after) & (group_days <= day)]
                if len(part):
                    out.append(
                        {
                            "version": int(version),
                            "role": role,
                            "step": int(step),
                            "window": name,
                            "day": day,
                            **window_scores(part),
                        }
                    )
    columns = [*KEYS, "window", "day", *SCORE_COLUMNS]
    return pd.DataFrame(out, columns=columns)


def latest(
    scores: pd.DataFrame, version: int, window: str, roles: tuple[str, ...] | None = None
) -> dict[str, float] | None:
    """A version's newest next-day scores over `window` (any of `roles`, most days first)."""
    part = scores[
        (scores["version"] == version) & (scores["window"] == window) & (scores["step"] == NEXT_DAY)
    ]
    if roles is not None:
        part = part[part["role"].isin(roles)]
    if part.empty:
        return None
    newest = part[part["day"] == part["day"].max()].sort_values("n", ascending=False)
    row: dict[str, Any] = newest.iloc[0].to_dict()
    keys = ("n", "mae", "persistence_mae", "mase", "coverage_80", "coverage_95", "pinball", "crps")
    return {k: float(row[k]) for k in keys} | {"day": row["day"]}

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

import numpy as np
import pandas as pd

from pipelines.quantiles import crps, pinball

WINDOWS = {"7d": 7, "30d": 30, "90d": 90}
SINCE = "since-promotion"
KEYS = ["version", "role", "step"]
SCORE_COLUMNS = ["n", "mae", "persistence_mae", "mase", "coverage_80", "coverage_95", "pinball",
                 "crps"]  # fmt: skip


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
    out = {"n": float(len(rows)), "mae": mae, "persistence_mae": naive_mae,
           "mase": mae / naive_mae if naive_mae > 0 else float("nan")}  # fmt: skip
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
                    out.append({"version": int(version), "role": role, "step": int(step),
                                "window": name, "day": day, **window_scores(part)})  # fmt: skip
    columns = [*KEYS, "window", "day", *SCORE_COLUMNS]
    return pd.DataFrame(out, columns=columns)


def monitor_verdict(
    champion: dict[str, float] | None,
    previous: dict[str, float] | None,
    *,
    max_mase: float,
    coverage_tol: float,
    min_days: int,
    auto_rollback: bool,
) -> tuple[bool, bool, str]:
    """(alert, roll back, why) from the champion's and previous-champion's scores over the same
    recent scored days. Pure: the caller records the alert and moves the aliases."""
    if champion is None or champion["n"] < min_days:
        have = 0 if champion is None else int(champion["n"])
        return False, False, f"{have} scored days, fewer than the {min_days} a verdict needs"
    problems = []
    if not champion["mase"] <= max_mase:
        problems.append(f"live MASE {champion['mase']:.3f} > {max_mase:g} (worse than persistence)")
    for level, nominal in (("80", 0.8), ("95", 0.95)):
        got = champion.get(f"coverage_{level}", float("nan"))
        if np.isfinite(got) and abs(got - nominal) > coverage_tol:
            problems.append(f"{level}% coverage {got:.1%} outside {nominal:.0%} ± {coverage_tol:g}")
    if not problems:
        return False, False, f"champion healthy over {int(champion['n'])} days"
    why = "; ".join(problems)
    if not auto_rollback:
        return True, False, f"{why} (auto_rollback off)"
    if previous is None or previous["n"] < min_days:
        return True, False, f"{why}; previous-champion has too few scored days to roll back to"
    better = previous["mase"] < champion["mase"] and (
        not np.isfinite(previous.get("crps", np.nan))
        or not np.isfinite(champion.get("crps", np.nan))
        or previous["crps"] <= champion["crps"]
    )
    if not better:
        return True, False, f"{why}; previous-champion is not better over the same days"
    return True, True, (f"{why}; previous-champion scores MASE {previous['mase']:.3f} over the "
                        "same days: rolling back")  # fmt: skip

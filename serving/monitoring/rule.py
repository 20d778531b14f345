"""The monitor rule, in one place: the verdict on the champion's live scores, the action it
calls for (an alert, a guarded rollback) and its audit (an `alert` record in the promotion
trail). `coinflow monitor score` and Airflow's monitor task apply it after scoring.

Every served version's intervals are recalibrated by each realised close (adaptive conformal
calibration, advanced by `coinflow monitor score`), so live coverage drifting outside its
tolerance no longer means "the intervals were fitted on another regime": it means the
calibrator could not keep up with how fast the spread changed, and a person should look (a
retrain, or a model whose own spread tracks volatility better)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from serving.monitoring.live_scores import latest

if TYPE_CHECKING:
    from core.params import MonitorParams
    from registry.store import Registry


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
            problems.append(
                f"{level}% coverage {got:.1%} outside {nominal:.0%} ± {coverage_tol:g}: the "
                "adaptive calibration could not keep up with the spread"
            )
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
    return (
        True,
        True,
        (
            f"{why}; previous-champion scores MASE {previous['mase']:.3f} over the "
            "same days: rolling back"
        ),
    )


def act(registry: Registry, scores: pd.DataFrame, params: MonitorParams) -> tuple[bool, bool, str]:
    """The monitor rule on the champion and previous-champion; alert and roll back as it says."""
    from registry.aliases import record_alert, rollback
    from registry.store import CHAMPION, PREVIOUS, aliases

    now = aliases(registry)
    champion, previous = now.get(CHAMPION), now.get(PREVIOUS)
    if champion is None:
        return False, False, "no champion"
    window = f"{params.window_days}d"
    mine = latest(scores, champion, window, (CHAMPION,))
    theirs = None
    if previous is not None and mine is not None:  # the same days: previous-champion shadowed
        theirs = latest(scores, previous, window)
        if theirs is not None and theirs["day"] != mine["day"]:
            theirs = None
    alert, back, why = monitor_verdict(
        mine,
        theirs,
        max_mase=params.max_mase,
        coverage_tol=params.coverage_tol,
        min_days=params.min_days,
        auto_rollback=params.auto_rollback,
    )
    if alert:
        alert_record = {
            "reason": why,
            "window": window,
            "champion": mine,
            "previous": theirs,
            "monitor": params.model_dump(),
        }
        record_alert(registry, champion, alert_record)
        if back:
            rollback(registry, reason=f"monitor: {why}")
    return alert, back, why

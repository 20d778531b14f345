"""The report of a `coinflow simulate` replay: JSON, PNG (simulation.figure), and an MLflow run
holding both.

Scores are the monitor's own (serving.monitoring.live_scores): each logged champion forecast
joined with the realized close of its day and of its origin day, so live MASE is the forecast's
absolute error over persistence's (tomorrow = today) on exactly the same days. Beside them:
coverage of every central interval (overall, trailing 30 days, by volatility tercile and by
horizon day, with the kernel's own definitions in forecasting.scores), the daily CRPS of the
persistence and EWMA baselines as they would have been served (simulation.baselines), and,
for every champion move, whether it paid off: the new champion against the version it replaced
(still forecast as previous-champion) on the days that followed, until the next move.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from registry.records import CHAMPION_MOVES

if TYPE_CHECKING:
    from simulation.workspace import Simulation

ROLLING_DAYS = 30  # the served curve's trailing window (the monitor's 30d)
REPORT_DIR = "report"


def _finite(value: Any) -> Any:
    """JSON-ready: NaN and inf become null, numpy scalars plain numbers."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _scores(rows: pd.DataFrame) -> dict[str, Any]:
    from serving.monitoring.live_scores import window_scores

    if rows.empty:
        return {"n": 0}
    return {k: _finite(v) for k, v in window_scores(rows).items()} | {"n": len(rows)}


def forecast_days(
    logged: pd.DataFrame, closes: pd.Series, role: str, step: int = 1
) -> pd.DataFrame:
    """One row per forecast of `role` for `step` days ahead, with the actual close (NaN: not
    known yet)."""
    from serving.monitoring.live_scores import realized

    if logged.empty:
        return logged
    part = logged[(logged["role"] == role) & (logged["step"] == step)].sort_values("origin")
    known = realized(part, closes)
    out = part.drop_duplicates(subset=["origin"], keep="last").set_index("origin")
    out = out.join(
        known.drop_duplicates(subset=["origin"]).set_index("origin")[["actual", "origin_close"]]
    )
    return out.reset_index()


def move_text(move: dict[str, Any]) -> str:
    """A champion move in words: `first champion v1`, `promote v1 → v3`, ..."""
    if move.get("champion_before") is None:
        return f"first champion v{move['champion_after']}"
    return f"{move['action']} v{move['champion_before']} → v{move['champion_after']}"


def hits(rows: pd.DataFrame) -> pd.DataFrame:
    """Per forecast day, whether its close fell inside each central interval (one column per
    nominal coverage, NaN where the forecast has no such interval or no close yet)."""
    from forecasting.quantiles import interval_pairs

    out = []
    for levels, quantiles, actual in zip(
        rows["levels"], rows["quantiles"], rows["actual"], strict=True
    ):
        inside = {}
        for nominal, (lo, hi) in interval_pairs(levels).items():
            known = math.isfinite(actual)
            inside[nominal] = float(quantiles[lo] <= actual <= quantiles[hi]) if known else np.nan
        out.append(inside)
    return pd.DataFrame(out, index=rows.index)


def _crps(rows: pd.DataFrame) -> np.ndarray:
    """Each scored forecast day's CRPS (USD)."""
    from forecasting.quantiles import crps

    return np.array(
        [
            float(crps(np.asarray([q]), np.asarray([y]), levels)[0])
            for levels, q, y in zip(rows["levels"], rows["quantiles"], rows["actual"], strict=True)
        ]
    )


def rolling(
    scored: pd.DataFrame, baselines: dict[str, pd.Series], days: int = ROLLING_DAYS
) -> list[dict[str, Any]]:
    """The served forecasts' scores over the trailing `days` forecast days, at each scored day:
    MASE, coverage of every interval, CRPS, and each baseline's CRPS on the same days."""
    inside = hits(scored)
    crps = pd.Series(_crps(scored), index=scored.index) if len(scored) else pd.Series()
    out = []
    for day in scored["day"]:
        window = (scored["day"] > day - dt.timedelta(days=days)) & (scored["day"] <= day)
        s = _scores(scored[window])
        point = {
            "day": day.isoformat(),
            "n": s["n"],
            "mase": s.get("mase"),
            "crps": _finite(float(crps[window].mean())),
            **{
                f"coverage_{round(k * 100):d}": _finite(float(v))
                for k, v in inside[window].mean().items()
            },
        }
        for kind, series in baselines.items():
            origins = scored.loc[window, "origin"].map(series)
            point[f"crps_{kind}"] = _finite(float(origins.mean()))
        out.append(point)
    return out


def move_outcomes(
    moves: list[dict[str, Any]], champion: pd.DataFrame, previous: pd.DataFrame
) -> list[dict[str, Any]]:
    """Each champion move during the replay judged on the days that followed, up to the next
    move: the new champion's scores against the version it replaced (forecast meanwhile as
    previous-champion) on the same scored days; it paid off when its CRPS was lower."""
    out = []
    for i, move in enumerate(moves):
        start = dt.date.fromisoformat(move["day"])
        end = dt.date.fromisoformat(moves[i + 1]["day"]) if i + 1 < len(moves) else dt.date.max
        mine = champion[
            (champion["origin"] >= start)
            & (champion["origin"] < end)
            & (champion["version"] == move["champion_after"])
        ]
        theirs = previous[previous["version"] == move["champion_before"]]
        common = sorted(set(mine["origin"]) & set(theirs["origin"]))
        new = _scores(mine[mine["origin"].isin(common)])
        old = _scores(theirs[theirs["origin"].isin(common)])
        judged = bool(common) and new.get("crps") is not None and old.get("crps") is not None
        out.append(
            {
                "day": move["day"],
                "move": move_text(move),
                "new": move["champion_after"],
                "replaced": move["champion_before"],
                "days": len(common),
                "new_scores": new,
                "replaced_scores": old,
                "paid_off": bool(new["crps"] < old["crps"]) if judged else None,
            }
        )
    return out


def coverage_tables(
    logged: pd.DataFrame, closes: pd.Series, horizon: int
) -> dict[str, dict[str, Any]]:
    """The champion's coverage of every interval: overall (next day), by volatility tercile of
    the day it was forecast (trailing realised volatility known then), and by horizon day (the
    origins whose every day is known)."""
    from forecasting.scores import coverage_by_horizon, coverage_by_volatility, trailing_volatility

    next_day = forecast_days(logged, closes, "champion").dropna(subset=["actual"])
    if next_day.empty:
        return {"overall": {}, "by_volatility": {}, "by_horizon": {}}
    levels = next_day["levels"].map(tuple).mode()[0]
    next_day = next_day[next_day["levels"].map(tuple) == levels]
    quantiles = np.vstack(next_day["quantiles"].to_numpy())
    target = next_day["actual"].to_numpy(dtype="float64")
    volatility = pd.Series(
        trailing_volatility(closes.to_numpy(dtype="float64")),
        index=pd.DatetimeIndex(closes.index).date,
    )
    overall = hits(next_day).mean().sort_index()  # 50%, 80%, ... in that order
    steps = [forecast_days(logged, closes, "champion", step) for step in range(1, horizon + 1)]
    whole = set.intersection(*(set(s.dropna(subset=["actual"])["origin"]) for s in steps))
    by_step = [s[s["origin"].isin(whole)].sort_values("origin") for s in steps]
    by_horizon = {}
    if whole:
        by_horizon = coverage_by_horizon(
            np.stack([np.vstack(s["quantiles"].to_numpy()) for s in by_step], axis=1),
            np.stack([s["actual"].to_numpy(dtype="float64") for s in by_step], axis=1),
            levels,
        ) | {"n": len(whole)}
    return {
        "overall": {f"coverage_{round(k * 100):d}": _finite(float(v)) for k, v in overall.items()},
        "by_volatility": coverage_by_volatility(
            quantiles, target, next_day["origin"].map(volatility).to_numpy(), levels
        )
        | {"n": len(next_day)},
        "by_horizon": by_horizon,
    }


def served_versions(served: dict[str, int], kinds: dict[int, str]) -> list[dict[str, Any]]:
    """Each version that served, with its kind and its days as champion."""
    by_version: dict[int, list[str]] = {}
    for day, version in served.items():
        by_version.setdefault(version, []).append(day)
    return [
        {"version": v, "kind": kinds.get(v, ""), "days": len(d), "first": min(d), "last": max(d)}
        for v, d in sorted(by_version.items(), key=lambda item: min(item[1]))
    ]


def day_records(champion: pd.DataFrame) -> list[dict[str, Any]]:
    """Each forecast as served (version, median, bounds of every interval) and, once known,
    the truth and the two absolute errors (the forecast's, persistence's) live MASE compares."""
    from forecasting.quantiles import interval_pairs

    out = []
    for row in champion.to_dict("records"):
        actual, origin = float(row["actual"]), float(row["origin_close"])  # NaN: not known yet
        bands = {}
        for nominal, (lo, hi) in interval_pairs(row["levels"]).items():
            name = f"{round(nominal * 100):d}"
            bands[f"lower_{name}"], bands[f"upper_{name}"] = (
                row["quantiles"][lo],
                row["quantiles"][hi],
            )
        out.append(
            {
                "origin": row["origin"].isoformat(),
                "day": row["day"].isoformat(),
                "version": int(row["version"]),
                "median": row["median"],
                **bands,
                "actual": actual,
                "origin_close": origin,
                "abs_error": abs(row["median"] - actual),
                "persistence_abs_error": abs(origin - actual),
            }
        )
    return [{k: _finite(v) for k, v in d.items()} for d in out]


def monitor_series(scores: pd.DataFrame) -> list[dict[str, Any]]:
    """What the monitor rule saw: each champion version's 30-day next-day scores by day."""
    if scores.empty:
        return []
    part = scores[(scores["role"] == "champion") & (scores["window"] == "30d")]
    keep = ["day", "version", "n", "mase", "coverage_80", "coverage_95", "crps"]
    return [
        {k: (v.isoformat() if isinstance(v, dt.date) else _finite(v)) for k, v in row.items()}
        for row in part.sort_values(["day", "version"])[keep].to_dict("records")
    ]


def build_report(
    sim: Simulation,
    logged: pd.DataFrame,
    closes: pd.Series,
    scores: pd.DataFrame,
    baselines: dict[str, pd.Series],
    coverage_tol: float,
) -> dict[str, Any]:
    """The replay's report: summary, per-day forecasts and scores, coverage tables, events,
    champion moves and whether each paid off, retrains. `baselines`: each baseline's daily
    next-day CRPS by origin day; `coverage_tol`: the monitor's tolerance, drawn as a band."""
    champion = forecast_days(logged, closes, "champion")
    scored = champion.dropna(subset=["actual"])
    previous = forecast_days(logged, closes, "previous-champion").dropna(subset=["actual"])
    kinds = {int(e["version"]): str(e["kind"]) for e in sim.events}
    moves = [
        e | {"text": move_text(e)}
        for e in sim.events
        if e["action"] in CHAMPION_MOVES and e["champion_after"] != e["champion_before"]
    ]
    start = sim.plan.start.isoformat()
    during = [e for e in moves if e["day"] >= start]
    eve = [e for e in moves if e["day"] < start]  # the first champion, set up the day before
    outcomes = move_outcomes(during, scored, previous)
    overall = _scores(scored)
    plan = sim.plan
    summary = {
        "forecast_days": len(champion),
        "scored_days": len(scored),
        "live_mase": overall.get("mase"),
        "live_mae": overall.get("mae"),
        "persistence_mae": overall.get("persistence_mae"),
        "coverage_80": overall.get("coverage_80"),
        "coverage_95": overall.get("coverage_95"),
        "crps": overall.get("crps"),
        **{
            f"crps_{kind}": _finite(float(series.reindex(scored["origin"]).mean()))
            for kind, series in baselines.items()
        },
        "retrains": len(sim.retrains) - 1,  # the first champion's release is not a retrain
        "promotions": sum(e["action"] != "rollback" for e in during),
        "rollbacks": sum(e["action"] == "rollback" for e in during),
        "moves_judged": sum(o["paid_off"] is not None for o in outcomes),
        "moves_paid_off": sum(bool(o["paid_off"]) for o in outcomes),
        "alerts": sum(e["action"] == "alert" for e in sim.events),
        "versions_served": len(set(sim.served.values())),
        "wall_s": sim.wall_s,
    }
    return {
        "plan": {
            "from": plan.start.isoformat(),
            "to": plan.end.isoformat(),
            "retrain_every": plan.retrain_every,
            "trials": plan.trials,
            "epochs": plan.epochs,
            "auto_rollback": plan.auto_rollback,
            "horizon": plan.horizon,
            "coverage_tol": coverage_tol,
            "data_last_day": sim.data_last_day.isoformat(),
        },
        "workdir": str(sim.workdir),
        "summary": summary,
        "initial_champion": eve[-1]["champion_after"] if eve else None,
        "previous_champion": _scores(previous),
        "coverage": coverage_tables(logged, closes, plan.horizon),
        "events": sim.events,
        "moves": moves,
        "move_outcomes": outcomes,
        "retrains": sim.retrains,
        "versions_served": served_versions(sim.served, kinds),
        "served": sim.served,
        "days": day_records(champion),
        "rolling_30d": rolling(scored, baselines),
        "monitor_30d": monitor_series(scores),
    }


def publish(report: dict[str, Any], root: Path) -> dict[str, Any]:
    """Write report/simulation.{json,png} in the workspace and log both, with the summary as
    metrics and the trailing-30-day curve stepped by day, to an MLflow `simulation` run."""
    import mlflow

    from core import tags
    from core.files import write_json
    from core.tracking import configure_mlflow, git_sha
    from simulation.figure import plot_report

    out = root / REPORT_DIR
    json_path, png_path = out / "simulation.json", out / "simulation.png"
    plan, summary = report["plan"], report["summary"]
    configure_mlflow()
    run_name = f"simulate-{plan['from']}-{plan['to']}"
    run_tags = {tags.KIND: "simulation", tags.GIT_SHA: git_sha()}
    with mlflow.start_run(run_name=run_name, tags=run_tags) as run:
        mlflow.log_params({k: v for k, v in plan.items() if v is not None})
        mlflow.log_metrics({k: float(v) for k, v in summary.items() if v is not None})
        coverage = report["coverage"]
        mlflow.log_metrics(
            {
                k: float(v)
                for table in coverage.values()
                for k, v in table.items()
                if k != "n" and v is not None and math.isfinite(v)
            }
        )
        for step, point in enumerate(report["rolling_30d"]):
            if point["mase"] is not None:
                mlflow.log_metric("live_mase_30d", point["mase"], step=step)
        report |= {
            "mlflow": {"run_id": run.info.run_id, "tracking_uri": mlflow.get_tracking_uri()},
            "artifacts": {"json": str(json_path), "png": str(png_path)},
        }
        plot_report(report, png_path)
        write_json(json_path, report)
        mlflow.log_artifact(str(json_path), "simulation")
        mlflow.log_artifact(str(png_path), "simulation")
    return report

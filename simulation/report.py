"""The report of a `coinflow simulate` replay: JSON, PNG, and an MLflow run holding both.

Scores are the monitor's own (serving.monitoring.live_scores): each logged champion forecast
joined with the realized close of its day and of its origin day, so live MASE is the forecast's
absolute error over persistence's (tomorrow = today) on exactly the same days.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipelines.training.plots import save_figure
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


def forecast_days(logged: pd.DataFrame, closes: pd.Series, role: str) -> pd.DataFrame:
    """One row per next-day forecast of `role`, with the actual close (NaN: not known yet)."""
    from serving.monitoring.live_scores import realized

    if logged.empty:
        return logged
    part = logged[(logged["role"] == role) & (logged["step"] == 1)].sort_values("origin")
    known = realized(part, closes)
    out = part.drop_duplicates(subset=["origin"], keep="last").set_index("origin")
    out = out.join(
        known.drop_duplicates(subset=["origin"]).set_index("origin")[["actual", "origin_close"]]
    )
    return out.reset_index()


def rolling(scored: pd.DataFrame, days: int = ROLLING_DAYS) -> list[dict[str, Any]]:
    """The served forecasts' scores over the trailing `days` forecast days, at each scored day."""
    out = []
    for day in scored["day"]:
        window = scored[(scored["day"] > day - dt.timedelta(days=days)) & (scored["day"] <= day)]
        s = _scores(window)
        keep = {k: s.get(k) for k in ("mase", "coverage_80", "coverage_95")}
        out.append({"day": day.isoformat(), "n": s["n"], **keep})
    return out


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
    """Each forecast as served (version, median, bounds) and, once known, the truth and the two
    absolute errors (the forecast's, persistence's) that live MASE compares."""
    out = []
    for row in champion.to_dict("records"):
        actual, origin = float(row["actual"]), float(row["origin_close"])  # NaN: not known yet
        bounds = {k: row[k] for k in ("lower_80", "upper_80", "lower_95", "upper_95")}
        out.append(
            {
                "origin": row["origin"].isoformat(),
                "day": row["day"].isoformat(),
                "version": int(row["version"]),
                "median": row["median"],
                **bounds,
                "actual": actual,
                "origin_close": origin,
                "abs_error": abs(row["median"] - actual),
                "persistence_abs_error": abs(origin - actual),
            }
        )
    return [{k: _finite(v) for k, v in d.items()} for d in out]


def build_report(
    sim: Simulation, logged: pd.DataFrame, closes: pd.Series, scores: pd.DataFrame
) -> dict[str, Any]:
    """The replay's report: summary, per-day forecasts and scores, events, retrains."""
    champion = forecast_days(logged, closes, "champion")
    scored = champion.dropna(subset=["actual"])
    previous = forecast_days(logged, closes, "previous-champion").dropna(subset=["actual"])
    kinds = {int(e["version"]): str(e["kind"]) for e in sim.events}
    moves = [
        e
        for e in sim.events
        if e["action"] in CHAMPION_MOVES and e["champion_after"] != e["champion_before"]
    ]
    start = sim.plan.start.isoformat()
    during = [e for e in moves if e["day"] >= start]
    eve = [e for e in moves if e["day"] < start]  # the first champion, set up the day before
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
        "retrains": len(sim.retrains) - 1,  # the first champion's release is not a retrain
        "promotions": sum(e["action"] != "rollback" for e in during),
        "rollbacks": sum(e["action"] == "rollback" for e in during),
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
            "data_last_day": sim.data_last_day.isoformat(),
        },
        "workdir": str(sim.workdir),
        "summary": summary,
        "initial_champion": eve[-1]["champion_after"] if eve else None,
        "previous_champion": _scores(previous),
        "events": sim.events,
        "moves": moves,
        "retrains": sim.retrains,
        "versions_served": served_versions(sim.served, kinds),
        "served": sim.served,
        "days": day_records(champion),
        "rolling_30d": rolling(scored),
        "monitor_30d": monitor_series(scores),
    }


def plot_report(report: dict[str, Any], path: Path) -> Path:
    """Three panels over the replay: live MASE and interval coverage of the served forecasts
    (trailing 30 days), and the version served; retrains (grey), promotions (green), rollbacks
    (red) and alert days (orange ticks) marked, each move with its day and versions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    curve, s = pd.DataFrame(report["rolling_30d"]), report["summary"]
    served = pd.Series(report["served"], dtype="float64")
    fig, (mase, cover, version) = plt.subplots(
        3, 1, figsize=(12, 9), sharex=True, gridspec_kw={"height_ratios": [3, 2, 2]}
    )
    if not curve.empty:
        x = pd.to_datetime(curve["day"])
        mase.plot(x, curve["mase"].astype(float), label=f"champion, trailing {ROLLING_DAYS} days")
        cover.plot(x, curve["coverage_80"].astype(float), label="80% interval")
        cover.plot(x, curve["coverage_95"].astype(float), label="95% interval")
    mase.axhline(1.0, color="black", linestyle="--", linewidth=0.8, label="persistence")
    alerts = [pd.Timestamp(e["day"]) for e in report["events"] if e["action"] == "alert"]
    if alerts:
        mase.plot(
            alerts, [1.0] * len(alerts), "|", color="orange", markersize=12, label="monitor alert"
        )
    mase.set_ylabel("live MASE")
    plan = report["plan"]
    mase.set_title(
        f"coinflow simulate {plan['from']} .. {plan['to']} (retrain every "
        f"{plan['retrain_every']} days)\nlive MASE {_fmt(s['live_mase'])} over "
        f"{s['scored_days']} days, coverage 80% {_fmt(s['coverage_80'], '.0%')} / 95% "
        f"{_fmt(s['coverage_95'], '.0%')}; {s['promotions']} promotion(s), "
        f"{s['rollbacks']} rollback(s), {s['alerts']} alert day(s)",
        fontsize=11,
    )
    for nominal in (0.8, 0.95):
        cover.axhline(nominal, color="grey", linestyle=":", linewidth=0.8)
    cover.set_ylabel("coverage")
    cover.set_ylim(0, 1.05)
    if not served.empty:
        version.step(pd.to_datetime(served.index), served.to_numpy(), where="post")
        version.set_ylim(served.min() - 0.5, served.max() + 1.5)
    version.set_ylabel("version served")
    version.yaxis.set_major_locator(MaxNLocator(integer=True))
    for retrain in report["retrains"][1:]:
        for ax in (mase, cover, version):
            ax.axvline(pd.Timestamp(retrain["day"]), color="grey", alpha=0.4, linewidth=0.8)
    for move in report["moves"]:
        day, colour = pd.Timestamp(move["day"]), "red" if move["action"] == "rollback" else "green"
        for ax in (mase, cover, version):
            ax.axvline(day, color=colour, linewidth=1.2, alpha=0.8)
        text = (
            f"{move['day']} {move['action']} v{move['champion_before']}→v{move['champion_after']}"
        )
        version.annotate(
            text,
            xy=(day, 0.97),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            rotation=90,
            va="top",
            ha="right",
            color=colour,
        )
    mase.legend(loc="upper left", fontsize=8)
    cover.legend(loc="lower left", fontsize=8)
    return save_figure(fig, path, dpi=100)


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def publish(report: dict[str, Any], root: Path) -> dict[str, Any]:
    """Write report/simulation.{json,png} in the workspace and log both, with the summary as
    metrics and the trailing-30-day curve stepped by day, to an MLflow `simulation` run."""
    import mlflow

    from core import tags
    from core.files import write_json
    from core.tracking import configure_mlflow, git_sha

    out = root / REPORT_DIR
    json_path, png_path = out / "simulation.json", out / "simulation.png"
    plan, summary = report["plan"], report["summary"]
    configure_mlflow()
    run_name = f"simulate-{plan['from']}-{plan['to']}"
    run_tags = {tags.KIND: "simulation", tags.GIT_SHA: git_sha()}
    with mlflow.start_run(run_name=run_name, tags=run_tags) as run:
        mlflow.log_params({k: v for k, v in plan.items() if v is not None})
        mlflow.log_metrics({k: float(v) for k, v in summary.items() if v is not None})
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

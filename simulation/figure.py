"""The picture of a `coinflow simulate` report (report/simulation.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.training.plots import save_figure

FAN = (0.95, 0.8, 0.5)  # the bands drawn around the median, widest first
LEVEL_COLOURS = {0.5: "tab:purple", 0.8: "tab:blue", 0.9: "tab:green", 0.95: "tab:orange"}


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def mase_is_persistence(curve: pd.DataFrame) -> bool:
    """Whether live MASE is identically 1 (a persistence median): its panel says nothing."""
    mase = curve["mase"].dropna().astype(float) if "mase" in curve else pd.Series(dtype=float)
    return bool(len(mase)) and bool(((mase - 1.0).abs() < 1e-9).all())


def headline(report: dict[str, Any]) -> str:
    """The figure's title: what was replayed and what came of it."""
    plan, s, overall = report["plan"], report["summary"], report["coverage"]["overall"]
    cover = " / ".join(
        f"{name.removeprefix('coverage_')}% {_fmt(v, '.0%')}" for name, v in overall.items()
    )
    return (
        f"coinflow simulate {plan['from']} .. {plan['to']} (retrain every "
        f"{plan['retrain_every']} days): {s['scored_days']} scored days, coverage {cover}\n"
        f"{s['promotions']} promotion(s), {s['moves_paid_off']} of {s['moves_judged']} champion "
        f"move(s) paid off; {s['rollbacks']} rollback(s), {s['alerts']} alert day(s); "
        f"CRPS ${_fmt(s['crps'], ',.0f')} vs persistence ${_fmt(s.get('crps_persistence'), ',.0f')}"
        f", EWMA ${_fmt(s.get('crps_ewma'), ',.0f')}"
    )


def plot_report(report: dict[str, Any], path: Path) -> Path:
    """Panels over the replay: the champion's forecast fan (50/80/95%) against the realised
    close; trailing-30-day coverage of every interval with its nominal line and the monitor's
    tolerance band; trailing-30-day CRPS of the champion and both baselines; live MASE (left
    out when it is identically 1); the versions served. Retrains, promotions, rollbacks and
    alert days are marked on every panel, each move labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days, curve = pd.DataFrame(report["days"]), pd.DataFrame(report["rolling_30d"])
    show_mase = not curve.empty and not mase_is_persistence(curve)
    names = ["fan", "coverage", "crps", *(["mase"] if show_mase else []), "versions"]
    ratios = {"fan": 3, "coverage": 2, "crps": 2, "mase": 2, "versions": 1.5}
    fig, axes = plt.subplots(
        len(names),
        1,
        figsize=(13, 3 * len(names)),
        sharex=True,
        gridspec_kw={"height_ratios": [ratios[n] for n in names]},
    )
    ax = dict(zip(names, axes, strict=True))
    if not days.empty:
        x = pd.to_datetime(days["day"])
        for alpha, nominal in zip((0.15, 0.25, 0.35), FAN, strict=True):
            name = f"{round(nominal * 100):d}"
            if f"lower_{name}" in days:
                ax["fan"].fill_between(
                    x,
                    days[f"lower_{name}"].astype(float),
                    days[f"upper_{name}"].astype(float),
                    alpha=alpha,
                    color="tab:blue",
                    linewidth=0,
                    label=f"{name}% interval",
                )
        ax["fan"].plot(x, days["median"].astype(float), color="tab:blue", lw=1, label="median")
        ax["fan"].plot(x, days["actual"].astype(float), color="black", lw=1, label="close")
    ax["fan"].set_ylabel("BTC close (USD)")
    if not curve.empty:
        cx = pd.to_datetime(curve["day"])
        tol = report["plan"]["coverage_tol"]
        for nominal, colour in LEVEL_COLOURS.items():
            column = f"coverage_{round(nominal * 100):d}"
            if column not in curve:
                continue
            ax["coverage"].plot(cx, curve[column].astype(float), color=colour, lw=1.2)
            ax["coverage"].axhline(nominal, color=colour, linestyle="--", lw=0.8)
            ax["coverage"].axhspan(nominal - tol, nominal + tol, color=colour, alpha=0.07)
            ax["coverage"].plot([], [], color=colour, label=f"{nominal:.0%} (± {tol:g} band)")
        ax["crps"].plot(cx, curve["crps"].astype(float), label="champion", color="tab:blue")
        for kind, colour in (("persistence", "grey"), ("ewma", "tab:brown")):
            if f"crps_{kind}" in curve:
                ax["crps"].plot(
                    cx, curve[f"crps_{kind}"].astype(float), label=kind, color=colour, lw=1
                )
        if show_mase:
            ax["mase"].plot(cx, curve["mase"].astype(float), label="champion")
            ax["mase"].axhline(1.0, color="black", linestyle="--", lw=0.8, label="persistence")
            ax["mase"].set_ylabel("live MASE (30 d)")
    ax["coverage"].set_ylabel("coverage (30 d)")
    ax["coverage"].set_ylim(0, 1.05)
    ax["crps"].set_ylabel("CRPS USD (30 d)")
    _versions(ax["versions"], report)
    _marks(list(ax.values()), report)
    ax["fan"].set_title(headline(report), fontsize=10)
    for name in names:
        if ax[name].get_legend_handles_labels()[0]:
            ax[name].legend(loc="upper left", fontsize=7, ncol=4)
    return save_figure(fig, path, dpi=100)


def _versions(axis: Any, report: dict[str, Any]) -> None:
    """The version served each day, its ticks labelled with version and kind."""
    served = pd.Series(report["served"], dtype="float64")
    kinds = {v["version"]: v["kind"] for v in report["versions_served"]}
    if not served.empty:
        axis.step(pd.to_datetime(served.index), served.to_numpy(), where="post", color="black")
        ticks = sorted(kinds)
        axis.set_yticks(ticks, [f"v{v} {kinds[v]}".strip() for v in ticks], fontsize=7)
        axis.set_ylim(min(ticks) - 0.5, max(ticks) + 0.5)
    axis.set_ylabel("served")


def _marks(axes: list[Any], report: dict[str, Any]) -> None:
    """Retrains, moves and alerts on every panel (labelled once, for the legends)."""
    for i, retrain in enumerate(report["retrains"][1:]):
        for axis in axes:
            axis.axvline(
                pd.Timestamp(retrain["day"]),
                color="grey",
                alpha=0.5,
                linestyle=":",
                lw=0.9,
                label="retrain" if i == 0 and axis is axes[0] else None,
            )
    labelled = set()
    for move in report["moves"]:
        if move["day"] < report["plan"]["from"]:
            continue
        day = pd.Timestamp(move["day"])
        kind = "rollback" if move["action"] == "rollback" else "promotion"
        colour = "red" if kind == "rollback" else "green"
        for axis in axes:
            label = kind if kind not in labelled and axis is axes[0] else None
            axis.axvline(day, color=colour, lw=1.2, alpha=0.8, label=label)
        labelled.add(kind)
        axes[-1].annotate(
            move["text"],
            xy=(day, 0.97),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            rotation=90,
            va="top",
            ha="right",
            color=colour,
        )
    alerts = [pd.Timestamp(e["day"]) for e in report["events"] if e["action"] == "alert"]
    if alerts:
        axes[1].plot(alerts, [0.02] * len(alerts), "|", color="orange", ms=10, label="alert")

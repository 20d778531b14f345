"""Matplotlib figures for the UI, built from shaped data (no pyplot state: safe across threads)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.dates as mdates
from matplotlib.figure import Figure

from ui.client import Models, Sweep
from ui.shaping import ForecastSeries, LiveMark, LiveSeries

ACTUAL, MODEL, PERSISTENCE = "#1f2937", "#2563eb", "#9ca3af"
PROMOTED, ROLLED_BACK = "#16a34a", "#dc2626"


def forecast_figure(series: ForecastSeries, title: str) -> Figure:
    """Recent actual closes, the model's forecast and the flat persistence forecast."""
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    ax = fig.add_subplot()
    history = mdates.date2num(series.history_dates)
    ax.plot(history, series.history_close, color=ACTUAL, lw=1.6, label="actual close")
    if series.forecast_dates:
        # Both forecasts start from the last actual point so the lines join the history.
        dates = mdates.date2num([series.history_dates[-1], *series.forecast_dates])
        ax.plot(
            dates,
            [series.last_close, *series.persistence_close],
            color=PERSISTENCE,
            lw=1.4,
            ls="--",
            label="persistence (last close)",
        )
        ax.plot(
            dates,
            [series.last_close, *series.forecast_close],
            color=MODEL,
            lw=2,
            marker="o",
            ms=3,
            label="model forecast (median)",
        )
        # The fan: widest band palest; each band starts at the last actual close too.
        for alpha, level in zip((0.12, 0.22, 0.32, 0.42), series.bands, strict=False):
            lower, upper = series.bands[level]
            ax.fill_between(
                dates,
                [series.last_close, *lower],
                [series.last_close, *upper],
                color=MODEL,
                alpha=alpha,
                lw=0,
                label=f"{level:.0%} interval",
            )
        ax.axvline(float(history[-1]), color=PERSISTENCE, lw=0.8, ls=":")
    ax.set_title(title)
    ax.set_ylabel("BTC close (USD)")
    ax.yaxis.set_major_formatter("${x:,.0f}")
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return fig


def metrics_figure(models: Models) -> Figure:
    """Bars per version: MASE vs persistence (1 = persistence) and CRPS/MAE in USD."""
    versions = sorted(models.versions, key=lambda v: v.version)
    labels = [f"v{v.version}" for v in versions]
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    mase_ax, usd_ax = fig.subplots(1, 2)
    mase = [v.metrics.test_mase or 0.0 for v in versions]
    mase_ax.bar_label(mase_ax.bar(labels, mase, color=MODEL), fmt="%.3f")
    mase_ax.axhline(1.0, color=ACTUAL, lw=1, ls="--", label="persistence")
    mase_ax.set_title("test MASE (lower is better)")
    mase_ax.legend(loc="lower right")
    xs = list(range(len(versions)))
    width = 0.4
    for offset, name, color in ((-width / 2, "crps", MODEL), (width / 2, "mae", PERSISTENCE)):
        values = [getattr(v.metrics, f"test_{name}") or 0.0 for v in versions]
        bars = usd_ax.bar([x + offset for x in xs], values, width, label=name.upper(), color=color)
        usd_ax.bar_label(bars, fmt="$%.0f")
    usd_ax.set_xticks(xs, labels)
    usd_ax.set_title("test error (USD)")
    usd_ax.yaxis.set_major_formatter("${x:,.0f}")
    usd_ax.legend(loc="lower right")
    for ax in (mase_ax, usd_ax):
        ax.grid(axis="y", alpha=0.3)
    return fig


def sweep_figure(sweep: Sweep) -> Figure:
    """The sweep objective (backtest skill, else validation loss) against hidden size, one
    colour per layer count."""
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax = fig.add_subplot()
    done = [
        (t.num_layers or 0, float(t.hidden_size), float(value))
        for t in sweep.trials
        if (value := t.objective if t.objective is not None else t.val_loss) is not None
        and t.hidden_size is not None
    ]
    for layers in sorted({n for n, _, _ in done}):
        group = [(h, v) for n, h, v in done if n == layers]
        ax.scatter(
            [h for h, _ in group],
            [v for _, v in group],
            label=f"{layers} layer(s)" if layers else "layers unknown",
            alpha=0.8,
        )
    ax.set_xlabel("hidden size")
    ax.set_ylabel("objective (lower is better)")
    ax.set_title(f"sweep {sweep.study_name or sweep.parent_run_id or ''}".strip())
    ax.grid(alpha=0.3)
    if done:
        ax.legend(loc="best")
    return fig


def live_figure(series: list[LiveSeries], window: str, marks: Sequence[LiveMark] = ()) -> Figure:
    """Live MASE (1 = persistence) and 80% coverage (nominal 0.8) over time, one line per
    version and role; each champion move a vertical line on both panels, labelled at the top
    with the version it crowned (green: promoted, red: rolled back)."""
    fig = Figure(figsize=(9, 5.2), layout="constrained")
    mase_ax, cov_ax = fig.subplots(2, 1, sharex=True)
    for s in series:
        days = mdates.date2num(s.days)
        mase_ax.plot(days, [m if m is not None else float("nan") for m in s.mase], label=s.label)
        cov_ax.plot(
            days, [c if c is not None else float("nan") for c in s.coverage_80], label=s.label
        )
    mase_ax.axhline(1.0, color=ACTUAL, lw=1, ls="--", label="persistence")
    cov_ax.axhline(0.8, color=ACTUAL, lw=1, ls="--", label="nominal 80%")
    same_day: dict[float, int] = {}
    for mark in marks:
        day = float(mdates.date2num(mark.day))
        color = ROLLED_BACK if mark.rollback else PROMOTED
        for ax in (mase_ax, cov_ax):
            ax.axvline(day, color=color, lw=1.2, ls="-.", alpha=0.8)
        # x in data, y in axes fraction: the label sits at the top whatever the MASE range;
        # moves on the same day get their labels side by side.
        nth = same_day[day] = same_day.get(day, -1) + 1
        mase_ax.annotate(
            mark.label,
            (day, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3 + 11 * nth, -3),
            textcoords="offset points",
            rotation=90,
            va="top",
            ha="left",
            fontsize="small",
            color=color,
        )
    mase_ax.set_title(f"live next-day MASE over the trailing {window} (lower is better)")
    cov_ax.set_title(f"share of days inside the 80% interval, trailing {window}")
    cov_ax.yaxis.set_major_formatter("{x:.0%}")
    locator = mdates.AutoDateLocator()
    cov_ax.xaxis.set_major_locator(locator)
    cov_ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    for ax in (mase_ax, cov_ax):
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    return fig

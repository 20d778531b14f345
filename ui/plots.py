"""Matplotlib figures for the UI, built from shaped data (no pyplot state: safe across threads)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.dates as mdates
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from ui.client import Sweep
from ui.compare import Dot, sig
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


OUTCOME_COLOURS = {  # a version's latest decision → its dot's colour on the Compare plot
    "promoted": PROMOTED,
    "first-champion": PROMOTED,
    "restored": PROMOTED,
    "refused": ROLLED_BACK,
}
OTHER = "#6b7280"


def _span(values: Sequence[float]) -> tuple[float, float]:
    """x-limits around the values (never from 0): 1.000 and 1.006 stay apart."""
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.12, abs(hi) * 0.002, 1e-9)
    return lo - pad, hi + 2.5 * pad  # room on the right for the value labels


def compare_figure(
    dots: Sequence[Dot], baseline_crps: float | None, baseline_mase: float | None
) -> Figure:
    """A dot plot of every version on the same days, one row each, best CRPS at the top: CRPS
    (USD) and MASE side by side, persistence dashed, each dot labelled with its value and
    coloured by the version's latest decision (green: serves or served, red: refused)."""
    rows = len(dots)
    fig = Figure(figsize=(9, max(2.8, 1.6 + 0.3 * rows)), layout="constrained")
    crps_ax, mase_ax = fig.subplots(1, 2, sharey=True)
    ys = list(range(rows))
    colours = [OUTCOME_COLOURS.get(d.outcome, OTHER) for d in dots]
    panels = (
        (crps_ax, [d.crps for d in dots], baseline_crps, "CRPS, USD (lower is better)"),
        (mase_ax, [d.mase for d in dots], baseline_mase, "MASE (1 = persistence)"),
    )
    for ax, values, reference, title in panels:
        shown = [(y, v, c) for y, v, c in zip(ys, values, colours, strict=True) if v is not None]
        ax.scatter(
            [v for _, v, _ in shown], [y for y, _, _ in shown], c=[c for *_, c in shown], zorder=3
        )
        for y, v, _ in shown:
            ax.annotate(
                sig(v),
                (v, y),
                xytext=(5, 0),
                textcoords="offset points",
                va="center",
                fontsize="small",
            )
        if reference is not None:
            ax.axvline(reference, color=ACTUAL, lw=1, ls="--", label="persistence")
        ax.set_xlim(
            *_span([v for _, v, _ in shown] + ([reference] if reference is not None else []))
        )
        ax.set_title(title)
        ax.xaxis.set_major_locator(MaxNLocator(5))  # a few readable ticks, however narrow the span
        ax.grid(axis="x", alpha=0.3)
        ax.grid(axis="y", alpha=0.15)
    crps_ax.set_yticks(ys, [d.label for d in dots])
    crps_ax.set_ylim(rows - 0.5, -0.5)  # best at the top
    fig.legend(  # above the panels: never over a dot, however many rows
        handles=[
            Line2D([], [], color=PROMOTED, marker="o", ls="", label="promoted / champion"),
            Line2D([], [], color=ROLLED_BACK, marker="o", ls="", label="refused"),
            Line2D([], [], color=OTHER, marker="o", ls="", label="not judged"),
            Line2D([], [], color=ACTUAL, ls="--", label="persistence"),
        ],
        loc="outside upper center",
        ncols=4,
        fontsize="small",
    )
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

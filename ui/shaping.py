"""Pure data shaping for the UI: API responses → choices, plot series, table rows, lineage text."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from ui.client import (
    AliasMove,
    Forecast,
    Lineage,
    LiveScore,
    ModelRef,
    Models,
    Monitoring,
    Sweep,
    Trial,
)

ALIAS_ORDER = ("champion", "challenger", "previous-champion")
DEFAULT_REF = ModelRef("alias", "champion")  # what the API serves when asked for nothing
VERSION_HEADERS = [
    "version",
    "aliases",
    "kind",
    "data version",
    "created",
    "MASE vs persistence",
    "CRPS (USD)",
    "80% covers",
    "95% covers",
    "MAE (USD)",
    "RMSE (USD)",
]
TRIAL_HEADERS = [
    "trial",
    "status",
    "cell",
    "hidden size",
    "layers",
    "lookback",
    "lr",
    "objective",
    "val loss",
    "test MASE",
    "test CRPS (USD)",
]


LIVE_HEADERS = [
    "version",
    "role",
    "window",
    "as of",
    "scored days",
    "live MASE",
    "80% covers",
    "95% covers",
    "CRPS (USD)",
]
LIVE_WINDOW = "30d"  # the window the Live tab plots
MOVE_WORDS = {  # a champion move's action → how the Live plot labels it
    "promote": "v{v} promoted",
    "first-champion": "v{v} first champion",
    "code-upgrade": "v{v} (code upgrade)",
    "rollback": "rolled back to v{v}",
}


class ChoiceError(ValueError):
    """A model picker value that names neither an alias nor a version."""


@dataclass(frozen=True)
class ForecastSeries:
    """What the forecast plot draws: actual closes, the model's median path with its bands
    (nominal coverage → lower and upper closes per forecast day), the flat persistence path."""

    history_dates: list[dt.date]
    history_close: list[float]
    forecast_dates: list[dt.date]
    forecast_close: list[float]
    persistence_close: list[float]
    bands: dict[float, tuple[list[float], list[float]]] = field(default_factory=dict)

    @property
    def last_close(self) -> float:
        """The latest actual close, which persistence repeats."""
        return self.history_close[-1]


def _date(text: str) -> dt.date:
    return dt.date.fromisoformat(text[:10])


def model_choices(models: Models) -> list[tuple[str, str]]:
    """(label, value) pairs for the picker: aliases first, then versions newest first."""
    kinds = {v.version: v for v in models.versions}
    ranked = sorted(
        models.aliases.items(),
        key=lambda kv: (
            ALIAS_ORDER.index(kv[0]) if kv[0] in ALIAS_ORDER else len(ALIAS_ORDER),
            kv[0],
        ),
    )
    choices = []
    for alias, version in ranked:
        kind = kinds[version].kind if version in kinds else None
        choices.append(
            (f"@{alias} → v{version}" + (f" ({kind})" if kind else ""), f"alias:{alias}")
        )
    for v in sorted(models.versions, key=lambda v: v.version, reverse=True):
        details = [x for x in (v.kind, v.data_version and f"data {v.data_version}") if x]
        details += [f"@{a}" for a in v.aliases]
        choices.append(
            (
                f"v{v.version}" + (f" · {' · '.join(details)}" if details else ""),
                f"version:{v.version}",
            )
        )
    return choices


def default_choice(choices: list[tuple[str, str]], current: str | None = None) -> str | None:
    """Keep the current pick if still offered, else @champion, else the first choice."""
    values = [value for _, value in choices]
    for wanted in (current, f"alias:{DEFAULT_REF.value}"):
        if wanted in values:
            return wanted
    return values[0] if values else None


def parse_choice(value: str | None) -> ModelRef:
    """Picker value → ModelRef; nothing picked means the API's default (@champion)."""
    if not value:
        return DEFAULT_REF
    kind, _, name = value.partition(":")
    if kind == "alias" and name:
        return ModelRef("alias", name)
    if kind == "version" and name.isdigit() and int(name) > 0:
        return ModelRef("version", name)
    raise ChoiceError(f"model choice {value!r} is neither 'alias:NAME' nor 'version:N'")


def forecast_series(forecast: Forecast) -> ForecastSeries:
    """Plot series from a /predict answer; persistence stays flat at the last actual close."""
    if not forecast.history:
        raise ValueError("the API returned no history: cannot draw actual closes or persistence")
    history = sorted(forecast.history, key=lambda p: p.date)
    future = sorted(forecast.forecasts, key=lambda p: p.date)
    last = history[-1].close
    levels = sorted({i.level for p in future for i in p.intervals}, reverse=True)
    bands: dict[float, tuple[list[float], list[float]]] = {}
    for level in levels:
        found = [next((i for i in p.intervals if i.level == level), None) for p in future]
        if all(found):  # a band is drawn only where every day has it
            bands[level] = ([i.lower for i in found if i], [i.upper for i in found if i])
    return ForecastSeries(
        [_date(p.date) for p in history],
        [p.close for p in history],
        [_date(p.date) for p in future],
        [p.close for p in future],
        [last] * len(future),
        bands,
    )


def forecast_summary(series: ForecastSeries, lineage: Lineage) -> str:
    """One line under the status: final forecast vs persistence."""
    if not series.forecast_close:
        return f"v{lineage.version} returned no forecast."
    end, value = series.forecast_dates[-1], series.forecast_close[-1]
    text = (
        f"**{lineage.model_name} v{lineage.version}** forecasts **${value:,.0f}** (median) for "
        f"{end.isoformat()}"
    )
    if lineage.kind == "persistence":  # it IS persistence: no comparison with itself
        text += f" (the persistence baseline: last close ${series.last_close:,.0f})"
    else:
        change = value / series.last_close - 1
        text += f" ({change:+.2%} vs persistence at ${series.last_close:,.0f})"
    if 0.8 in series.bands:
        lower, upper = series.bands[0.8]
        text += f"; 80% interval ${lower[-1]:,.0f} – ${upper[-1]:,.0f}"
    return text + "."


def run_url(mlflow_ui_url: str | None, run_id: str | None) -> str | None:
    """MLflow UI link to a run: MLflow 3's `#/runs/<id>` route redirects to its experiment."""
    if not mlflow_ui_url or not run_id:
        return None
    return f"{mlflow_ui_url.rstrip('/')}/#/runs/{run_id}"


def lineage_markdown(lineage: Lineage, mlflow_ui_url: str | None = None) -> str:
    """Lineage panel: version, aliases, run, data version, DVC hash, git sha, run link."""

    def code(value: str | None) -> str:
        return f"`{value}`" if value else "—"

    aliases = ", ".join(f"@{a}" for a in lineage.aliases) or "—"
    rows = [
        ("model", f"{lineage.model_name} v{lineage.version}"),
        ("aliases", aliases),
        ("kind", lineage.kind or "—"),
        ("run id", code(lineage.run_id)),
        ("data version", lineage.data_version or "—"),
        ("DVC md5", code(lineage.dvc_md5)),
        ("git sha", code(lineage.git_sha)),
        ("trained at", lineage.trained_at or "—"),
        ("quantile levels", ", ".join(f"{q:g}" for q in lineage.levels) or "—"),
    ]
    scores = lineage.calibration.scores if lineage.calibration else {}
    for nominal in ("80", "95"):
        got = scores.get(f"test_coverage_{nominal}")
        if got is not None:
            rows.append((f"{nominal}% interval on test days", f"covered {got:.1%}"))
    if "test_crps" in scores:
        rows.append(("test CRPS", f"${scores['test_crps']:,.2f}"))
    lines = [
        "### Lineage",
        "",
        "| field | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in rows),
    ]
    url = run_url(mlflow_ui_url, lineage.run_id)
    if url:
        lines += ["", f"[Open run {lineage.run_id} in the MLflow UI]({url})"]
    return "\n".join(lines)


def _created(value: str | int | float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int | float):  # MLflow timestamps are epoch milliseconds
        return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")
    return value[:16].replace("T", " ")


def significant(value: float | None, digits: int = 4) -> float | None:
    """A score rounded to `digits` significant digits for a table (None stays None)."""
    if value is None or not math.isfinite(value) or value == 0:
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


def usd(value: float | None) -> float | None:
    """A USD amount to the cent."""
    return None if value is None else round(value, 2)


def share(value: float | None) -> str:
    """A coverage share as a percentage ('' when unknown)."""
    return "" if value is None or not math.isfinite(value) else f"{value:.1%}"


def version_rows(models: Models) -> list[list[object]]:
    """Rows of the version comparison table (VERSION_HEADERS), newest version first."""
    return [
        [
            v.version,
            ", ".join(f"@{a}" for a in v.aliases),
            v.kind or "",
            v.data_version or "",
            _created(v.created_at),
            significant(v.metrics.test_mase),
            usd(v.metrics.test_crps),
            share(v.metrics.test_coverage_80),
            share(v.metrics.test_coverage_95),
            usd(v.metrics.test_mae),
            usd(v.metrics.test_rmse),
        ]
        for v in sorted(models.versions, key=lambda v: v.version, reverse=True)
    ]


def trial_rows(sweep: Sweep) -> list[list[object]]:
    """Rows of the sweep table (TRIAL_HEADERS), best objective first (what Optuna minimised:
    the mean backtest fold skill, else the validation loss), failures last."""

    def key(trial: Trial) -> tuple[bool, float, int]:
        val = trial.objective if trial.objective is not None else trial.val_loss
        return (val is None, val if val is not None else 0.0, trial.trial_number or 0)

    return [
        [
            t.trial_number,
            t.state or t.status or "",  # Optuna's word (PRUNED), not MLflow's KILLED
            t.cell or "",
            t.hidden_size,
            t.num_layers,
            t.lookback,
            significant(t.lr),
            significant(t.objective),
            significant(t.val_loss),
            significant(t.test_mase),
            usd(t.test_crps),
        ]
        for t in sorted(sweep.trials, key=key)
    ]


def live_rows(monitoring: Monitoring) -> list[list[object]]:
    """The Live table (LIVE_HEADERS): each version's newest scores per role and window,
    newest version first."""
    order = {"7d": 0, "30d": 1, "90d": 2, "since-promotion": 3}
    rows = sorted(
        monitoring.latest,
        key=lambda s: (-s.version, s.role, order.get(s.window, len(order))),
    )
    return [
        [
            s.version,
            s.role,
            s.window,
            s.day[:10],
            s.n,
            significant(s.mase),
            share(s.coverage_80),
            share(s.coverage_95),
            usd(s.crps),
        ]
        for s in rows
    ]


@dataclass(frozen=True)
class LiveSeries:
    """One version in one role: live MASE and 80% coverage by day."""

    label: str
    days: list[dt.date]
    mase: list[float | None]
    coverage_80: list[float | None]


def live_series(monitoring: Monitoring) -> list[LiveSeries]:
    """The plotted series: one per version and role (champion vs shadow challenger ...)."""
    groups: dict[tuple[int, str], list[LiveScore]] = {}
    for s in sorted(monitoring.series, key=lambda s: s.day):
        groups.setdefault((s.version, s.role), []).append(s)
    return [
        LiveSeries(
            f"v{version} ({role})",
            [_date(p.day) for p in points],
            [p.mase for p in points],
            [p.coverage_80 for p in points],
        )
        for (version, role), points in sorted(groups.items())
    ]


def move_label(move: AliasMove) -> str:
    """'v3 promoted', 'rolled back to v1': a champion move, named by the version it crowned."""
    word = MOVE_WORDS.get(move.action)
    return word.format(v=move.version) if word else f"v{move.version} ({move.action})"


@dataclass(frozen=True)
class LiveMark:
    """A champion move drawn on the Live plot: its day, label and whether it was a rollback."""

    day: dt.date
    label: str
    rollback: bool


def live_marks(moves: list[AliasMove], series: list[LiveSeries]) -> list[LiveMark]:
    """The champion's moves within the plotted days, oldest first; moves outside the series'
    days are left off (they would stretch the time axis) but the note names them."""
    days = [d for s in series for d in s.days]
    if not days:
        return []
    first, last = min(days), max(days)
    return [
        LiveMark(_date(m.at), move_label(m), m.action == "rollback")
        for m in sorted(moves, key=lambda m: m.at)
        if first <= _date(m.at) <= last
    ]


def moves_note(monitoring: Monitoring, shown: int = 3) -> str:
    """A sentence on the champion's latest moves for the Live tab's note ('' when none)."""
    if monitoring.alias_moves_error:
        return f" Promotions and rollbacks are not marked: {monitoring.alias_moves_error}"
    moves = sorted(monitoring.alias_moves, key=lambda m: m.at)
    if not moves:
        return ""
    latest = [f"{move_label(m)} on {m.at[:10]}" for m in moves[-shown:]]
    return f" Champion moves ({len(moves)}): {'; '.join(latest)}."

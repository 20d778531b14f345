"""Why a version serves, and every version on the same days: pure shaping of the decision line
(Forecast tab) and the Compare tab's note, table and dot-plot points."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ui.client import ComparedVersion, Comparison, Decision, VersionDecision

COMPARE_HEADERS = [
    "version",
    "CRPS rank",
    "aliases",
    "kind (trained on)",
    "CRPS (USD)",
    "CRPS vs persistence",
    "MASE",
    "80% covers",
    "95% covers",
    "MAE (USD)",
    "RMSE (USD)",
    "decision",
    "reason",
]
# Widths of COMPARE_HEADERS' columns (percent of the table): every number column wide enough
# for its header, the reason wrapped in what is left, so nothing is cut off at 1280 px.
COMPARE_WIDTHS: list[str | int] = [
    "6%",
    "5%",
    "9%",
    "11%",
    "7%",
    "9%",
    "6%",
    "6%",
    "6%",
    "6%",
    "6%",
    "8%",
    "15%",
]
ACTION_WORDS = {  # a decision's action → the verb of the Forecast tab's decision line
    "first-champion": "became the first champion",
    "code-upgrade": "became the first champion",
    "promote": "was promoted to champion",
    "refuse": "was refused",
    "rollback": "was restored as champion by a rollback",
}


def sig(value: float | None, digits: int = 4) -> str:
    """A number to `digits` significant digits with thousands separators ('' when unknown):
    1.0057 → '1.006', 612.345 → '612.3', 1234.5 → '1,235'."""
    if value is None or not math.isfinite(value):
        return ""
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def pct(value: float | None) -> str:
    """A share as a percentage to 3 significant digits ('' when unknown)."""
    return "" if value is None or not math.isfinite(value) else f"{value:.1%}"


def _day(text: str | None) -> str:
    return (text or "?")[:10]


def decision_sentence(decision: Decision, version: int) -> str:
    """'v3 was refused on 2026-12-07: its median's MASE 1.0057 exceeds 1 …' (plain words)."""
    verb = ACTION_WORDS.get(decision.action, decision.outcome)
    text = f"v{version} {verb} on {_day(decision.decided_at)}"
    if decision.action == "promote" and decision.champion_before is not None:
        text += f", replacing v{decision.champion_before}"
    if decision.action == "rollback" and decision.champion_before is not None:
        text += f" from v{decision.champion_before}"
    if decision.action == "refuse" and decision.champion_after is not None:
        text += f" (the champion stays v{decision.champion_after})"
    return f"{text}: {decision.reason}" if decision.reason else f"{text}."


def decision_markdown(answer: VersionDecision) -> str:
    """The Forecast tab's decision panel: the sentence, then when, who, the rule and the scores."""
    d = answer.decision
    if d is None:
        return (
            f"### Decision\n\nNo decision was ever recorded on v{answer.version}: it was "
            "registered but never judged by `coinflow registry promote`."
        )
    lines = ["### Decision", "", f"**{decision_sentence(d, answer.version)}**", ""]
    lines.append(f"Decided {d.decided_at or '?'} by `{d.actor or '?'}`.")
    if d.rule:
        lines += ["", f"Rule: {d.rule}"]
    if d.scores:
        window = d.eval
        if window is not None:
            lines += [
                "",
                f"Scored on {window.data_version or '?'} test days {window.first_day or '?'} → "
                f"{window.last_day or '?'} ({window.rows or '?'} days):",
            ]
        lines += [
            "",
            "| compared | CRPS (USD) | 80% covers | 95% covers | MASE |",
            "|---|---|---|---|---|",
        ]
        for s in d.scores:
            version = f"v{s.version}" if s.version is not None else (s.kind or "-")
            lines.append(
                f"| {s.role} {version} | {sig(s.crps)} | {pct(s.coverage_80)} | "
                f"{pct(s.coverage_95)} | {sig(s.mase)} |"
            )
    if d.dm_p_value is not None:
        lines += ["", f"Diebold–Mariano p-value: {sig(d.dm_p_value, 3)}."]
    return "\n".join(lines)


def compare_note(comparison: Comparison) -> str:
    """Which days every version was scored on, and the reference baseline's scores there."""
    w, base = comparison.eval, comparison.baseline
    return (
        f"All {len(comparison.versions)} version(s) of **{comparison.name}** scored on the "
        f"**same {w.rows or '?'} test days** of data {w.data_version or '?'} "
        f"({w.first_day or '?'} → {w.last_day or '?'}), each as it would have served them — "
        "the window `coinflow registry promote` compares on. Reference persistence there: "
        f"CRPS ${sig(base.crps)}, MASE {sig(base.mase)}. Lower CRPS and MASE are better; "
        "80%/95% intervals should cover about 80%/95% of days."
    )


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return ""
    return f"{value / reference - 1:+.2%}"


def compare_rows(comparison: Comparison) -> list[list[object]]:
    """The Compare table (COMPARE_HEADERS), newest version first, each with its rank on the
    dot plot (1 = lowest CRPS); numbers as 4-digit text."""
    base = comparison.baseline.crps
    rank = {dot.version: i for i, dot in enumerate(compare_dots(comparison), start=1)}
    return [
        [
            f"v{v.version}",
            rank.get(v.version, ""),
            ", ".join(f"@{a}" for a in v.aliases),
            f"{v.kind or '?'} ({v.trained_on})" if v.trained_on else v.kind or "",
            sig(v.crps),
            _ratio(v.crps, base),
            sig(v.mase),
            pct(v.coverage_80),
            pct(v.coverage_95),
            sig(v.mae),
            sig(v.rmse),
            v.decision.outcome if v.decision else "",
            v.error or (v.decision.reason if v.decision else ""),
        ]
        for v in sorted(comparison.versions, key=lambda v: v.version, reverse=True)
    ]


@dataclass(frozen=True)
class Dot:
    """One version on the Compare dot plot: its label, scores and latest outcome."""

    version: int
    label: str
    crps: float
    mase: float | None
    outcome: str


def _label(v: ComparedVersion) -> str:
    held = " ".join(f"@{a}" for a in v.aliases)
    return f"v{v.version} {v.kind or ''}{' ' + held if held else ''}".strip()


def compare_dots(comparison: Comparison) -> list[Dot]:
    """The scored versions, best (lowest) CRPS first; versions without a score are left out."""
    scored = [v for v in comparison.versions if v.crps is not None and math.isfinite(v.crps)]
    return [
        Dot(
            v.version,
            _label(v),
            float(v.crps or 0.0),
            v.mase,
            v.decision.outcome if v.decision else "",
        )
        for v in sorted(scored, key=lambda v: (v.crps, v.version))
    ]

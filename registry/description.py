"""What a version's MLflow description says: its latest decision, readable in the registry UI.

registry.aliases writes it with every applied decision; the CLI tables (registry.report) reuse
the outcome words and number format.
"""

from __future__ import annotations

import math
from typing import Any

# A decision record's action → the word a version's `coinflow.decision` tag and tables show.
OUTCOME = {
    "promote": "promoted",
    "refuse": "refused",
    "first-champion": "first-champion",
    "code-upgrade": "first-champion",
    "rollback": "restored",
    "alert": "alerted",
}


def fmt(value: Any, digits: int = 4) -> str:
    """A score for a table: fixed decimals, '' when missing, 'nan' kept visible."""
    if value in (None, ""):
        return ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else str(number)


def headline(record: dict[str, Any]) -> str:
    """The decision in one plain sentence (what MLflow's version list shows of a description)."""
    action, version = str(record.get("action", "?")), record.get("version", "?")
    day = str(record.get("decided_at") or "?")[:10]
    before, after = record.get("champion_before"), record.get("champion_after")
    if action == "promote":
        replaced = f", replacing v{before}" if before is not None else ""
        return f"v{version} was promoted to champion on {day}{replaced}."
    if action == "refuse":
        stays = f"; the champion stays v{after}" if after is not None else ""
        return f"v{version} was refused on {day}{stays}."
    if action in ("first-champion", "code-upgrade"):
        return f"v{version} became the first champion on {day}."
    if action == "rollback":
        return f"v{version} was restored as champion on {day} by a rollback from v{before}."
    return f"v{version}: {OUTCOME.get(action, action)} on {day}."


def percent(value: Any) -> str:
    """A coverage share as a percentage ('' when missing)."""
    if value in (None, ""):
        return ""
    number = float(value)
    return f"{number:.1%}" if math.isfinite(number) else str(number)


def scores_table(record: dict[str, Any]) -> list[str]:
    """Markdown rows of every number the rule used, per role (challenger, champion, baseline)."""
    lines = [
        "| role | version | kind | CRPS $ | 80% covers | 95% covers | MASE | MAE $ | RMSE $ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for role in ("challenger", "champion", "baseline"):
        s = record.get(role)
        if not isinstance(s, dict):
            continue
        version = "-" if s.get("version") is None else f"v{s['version']}"
        lines.append(
            f"| {role} | {version} | {s.get('kind', '')} | {fmt(s.get('crps'), 2)} | "
            f"{percent(s.get('coverage_80'))} | {percent(s.get('coverage_95'))} | "
            f"{fmt(s.get('mase'))} | {fmt(s.get('mae'), 2)} | {fmt(s.get('rmse'), 2)} |"
        )
    return lines


def decision_markdown(record: dict[str, Any], record_run: str) -> str:
    """A version's MLflow description: a plain sentence first (the version list shows it), then
    the reason, the rule, the scores it compared and where the record is."""
    lines = [headline(record), "", f"**Reason.** {record.get('reason', '')}"]
    if record.get("rule"):
        lines += ["", f"**Rule.** {record['rule']}"]
    if any(isinstance(record.get(r), dict) for r in ("challenger", "champion", "baseline")):
        eval_set = record.get("eval") or {}
        lines += [
            "",
            f"**Scores** on {eval_set.get('data_version', '?')} test days "
            f"{eval_set.get('first_day', '?')} → {eval_set.get('last_day', '?')} "
            f"({eval_set.get('rows', '?')} days), each version as it would have served them:",
            "",
            *scores_table(record),
        ]
        dm = record.get("diebold_mariano") or {}
        if dm.get("p_value") is not None:
            lines += [
                "",
                f"Diebold–Mariano test of the challenger's daily CRPS: p = {dm['p_value']:.3g} "
                f"(statistic {fmt(dm.get('statistic'), 3)}, {dm.get('n', '?')} days).",
            ]
    lines += [
        "",
        f"Decided {record.get('decided_at', '?')} by `{record.get('actor', '?')}`; record run "
        f"`{record_run}` (`promotion/decision-*.json`).",
    ]
    return "\n".join(lines)

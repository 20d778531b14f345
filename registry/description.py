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


def decision_markdown(record: dict[str, Any], record_run: str) -> str:
    """A version's MLflow description: its latest decision, readable in the registry UI."""
    action = str(record.get("action", "?"))
    lines = [f"### Latest decision: {action}", ""]
    lines.append(
        f"*{record.get('decided_at', '?')}* by `{record.get('actor', '?')}`; record run "
        f"`{record_run}` (`promotion/decision-*.json`)."
    )
    lines += ["", f"**Reason.** {record.get('reason', '')}"]
    if record.get("rule"):
        lines += ["", f"**Rule.** {record['rule']}"]
    roles = [(r, record.get(r)) for r in ("challenger", "champion", "baseline") if record.get(r)]
    if roles:
        eval_set = record.get("eval") or {}
        lines += [
            "",
            f"**Scores** on {eval_set.get('data_version', '?')} test days "
            f"{eval_set.get('first_day', '?')} → {eval_set.get('last_day', '?')} "
            f"({eval_set.get('rows', '?')} days):",
            "",
            "| role | version | kind | MASE | MAE $ | RMSE $ |",
            "|---|---|---|---|---|---|",
        ]
        for role, s in roles:
            assert isinstance(s, dict)
            version = "-" if s.get("version") is None else f"v{s['version']}"
            lines.append(
                f"| {role} | {version} | {s.get('kind', '')} | {fmt(s.get('mase'))} | "
                f"{fmt(s.get('mae'), 2)} | {fmt(s.get('rmse'), 2)} |"
            )
    before, after = record.get("champion_before"), record.get("champion_after")
    if before != after:
        lines += ["", f"Champion v{before} → v{after}."]
    return "\n".join(lines)

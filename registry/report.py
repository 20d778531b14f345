"""Plain-text tables for `coinflow registry status | promote | lineage` (pure: data in, str out)."""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Sequence
from typing import Any

from registry import lineage as tags_
from registry.lineage import Lineage

VALUE_WIDTH = 78


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns under a dashed rule; numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        all(_is_number(r[i]) or not r[i] for r in cells[1:]) and len(cells) > 1
        for i in range(len(headers))
    ]

    def line(row: list[str]) -> str:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").lstrip("$"))
    except ValueError:
        return False
    return True


def fmt(value: Any, digits: int = 4) -> str:
    """A score for a table: fixed decimals, '' when missing, 'nan' kept visible."""
    if value in (None, ""):
        return ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else str(number)


def status_table(name: str, alias_map: dict[str, int], versions: Sequence[Any]) -> str:
    """`coinflow registry status`: one row per version with aliases, lineage and scores."""
    by_version: dict[int, list[str]] = {}
    for alias, version in sorted(alias_map.items()):
        by_version.setdefault(version, []).append(alias)
    head = ", ".join(f"{a} v{v}" for a, v in sorted(alias_map.items())) or "no aliases"
    rows = []
    for mv in versions:
        t = mv.tags
        decision = _verdict(t.get(tags_.DECISION + "action"), t.get(tags_.DECISION + "promoted"))
        rows.append(
            [
                f"v{mv.version}",
                ",".join(by_version.get(int(mv.version), [])) or "-",
                t.get(tags_.KIND, "?"),
                t.get(tags_.DATA_VERSION, "?"),
                fmt(t.get("coinflow.test_mase")),
                fmt(t.get("coinflow.test_mae"), 1),
                decision,
                fmt(t.get(tags_.DECISION + "challenger_mase")),
                (t.get(tags_.RUN_ID) or "?")[:8],
                tags_.iso_ms(mv.creation_timestamp)[:16],
            ]
        )
    table = format_table(
        [
            "version",
            "aliases",
            "kind",
            "data",
            "test MASE",
            "test MAE $",
            "last decision",
            "re-scored MASE",
            "run",
            "registered (UTC)",
        ],
        rows,
    )
    return f"{name}: {head}  ({len(versions)} versions)\n{table}"


def _verdict(action: str | None, promoted: str | None) -> str:
    """The latest decision on a version, in words ('' when none was taken)."""
    if action == "first-champion":
        return "first champion"
    return {"true": "promoted", "false": "refused"}.get(promoted or "", "")


def _wrap(field: str, value: str) -> list[list[str]]:
    lines = textwrap.wrap(value, VALUE_WIDTH) or [""]
    return [[field, lines[0]], *(["", more] for more in lines[1:])]


def _params(text: str) -> str:
    try:
        params = json.loads(text)
    except (TypeError, ValueError):
        return text or ""
    return " ".join(f"{k}={v}" for k, v in params.items())


def lineage_table(lin: Lineage) -> str:
    """`coinflow registry lineage N`: version → run → sweep → data → git sha → GE → decision."""
    t, run, sweep, d = lin.tags, lin.run, lin.sweep, lin.decision
    sections: list[tuple[str, list[list[str]]]] = [
        (
            "version",
            [
                ["registered", lin.registered_at],
                ["kind", t.get(tags_.KIND, "?")],
                *_wrap("source", lin.source),
            ],
        ),
        (
            "run",
            [
                ["id", t[tags_.RUN_ID]],
                [
                    "name / status",
                    f"{run.get('name', '?')} / {run.get('status', '?')}, "
                    f"started {run.get('started', '?')}"
                    if "error" not in run
                    else run["error"],
                ],
            ],
        ),
        (
            "sweep",
            [
                [
                    "parent run",
                    (f"{sweep['id']} ({sweep.get('name', '?')} / {sweep.get('status', '?')})")
                    if sweep
                    else "none",
                ]
            ],
        ),
        (
            "data",
            [
                ["version", t[tags_.DATA_VERSION]],
                ["DVC md5", t[tags_.DVC_MD5]],
                *_wrap("on disk", lin.data_on_disk),
            ],
        ),
        ("code", [["git sha", t[tags_.GIT_SHA]]]),
        ("GE gate", [["status", t[tags_.GE_STATUS]], *_wrap("record", lin.ge_record)]),
        (
            "training",
            [
                *_wrap("params", _params(t.get(tags_.PARAMS, ""))),
                ["trained at", t.get(tags_.TRAINED_AT, "")],
                [
                    "test split",
                    f"MASE {fmt(t.get('coinflow.test_mase'))}  MAE $"
                    f"{fmt(t.get('coinflow.test_mae'), 2)}  RMSE $"
                    f"{fmt(t.get('coinflow.test_rmse'), 2)} (training run)",
                ],
            ],
        ),
    ]
    if d:
        verdict = _verdict(d.get("action"), d.get("promoted")) or "?"
        rescore = (
            (
                f"{d.get('data_version', '?')}: challenger {fmt(d.get('challenger_mase'))}, "
                f"champion v{d.get('champion_version') or '-'} {fmt(d.get('champion_mase'))}, "
                f"persistence {fmt(d.get('baseline_mase'))}"
            )
            if "challenger_mase" in d
            else ""
        )
        sections.append(
            (
                "promotion",
                [
                    ["decision", f"{verdict} at {d.get('at', '?')}"],
                    *_wrap("reason", d.get("reason", "")),
                    *([["re-scored on", rescore]] if rescore else []),
                    ["record run", d.get("record_run_id", "")],
                ],
            )
        )
    if "coinflow.rollback.at" in t:
        sections.append(
            (
                "rollback",
                [
                    [
                        "restored",
                        f"at {t['coinflow.rollback.at']} from "
                        f"v{t.get('coinflow.rollback.from', '?')}",
                    ],
                    ["reason", t.get("coinflow.rollback.reason", "")],
                ],
            )
        )
    rows = [[step if i == 0 else "", *row] for step, body in sections for i, row in enumerate(body)]
    aliases = ", ".join(lin.aliases) or "no aliases"
    return f"{lin.name} v{lin.version} ({aliases})\n" + format_table(
        ["step", "field", "value"], rows
    )


def decision_table(outcome: Any) -> str:
    """`coinflow registry promote`: the three scores, the rule, the verdict and the record."""
    d = outcome.decision
    rows = [
        [
            role,
            "-" if s.version is None else f"v{s.version}",
            s.kind,
            fmt(s.mase),
            fmt(s.mae, 2),
            fmt(s.rmse, 2),
        ]
        for role, s in (
            ("challenger", d.challenger),
            ("champion", d.champion),
            ("persistence", d.baseline),
        )
        if s is not None
    ]
    table = format_table(["role", "version", "kind", "MASE", "MAE $", "RMSE $"], rows)
    before, after = outcome.champion_before, outcome.champion_after
    if before == after:
        moved = f"champion stays v{before}"
    elif before is None:
        moved = f"champion (none) -> v{after}"
    else:
        moved = f"champion v{before} -> v{after} (previous-champion v{before})"
    verdict = "PROMOTED" if d.promote else "NOT PROMOTED"
    return "\n".join(
        [
            table,
            f"rule:     {d.rule}",
            f"decision: {verdict}: {d.reason}",
            f"aliases:  {moved}",
            f"record:   run {outcome.record_run_id} (promotion/decision-*.json)",
        ]
    )

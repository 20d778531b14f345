"""Plain-text tables for `coinflow registry status | promote | lineage` (pure: data in, str out)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from core import tags
from registry.description import OUTCOME, fmt, percent

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from registry.lineage import Lineage
    from registry.policy import PromotionOutcome

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


def status_table(name: str, alias_map: dict[str, int], versions: Sequence[ModelVersion]) -> str:
    """`coinflow registry status`: one row per version with aliases, lineage and the decision."""
    from registry.store import iso_ms

    by_version: dict[int, list[str]] = {}
    for alias, version in sorted(alias_map.items()):
        by_version.setdefault(version, []).append(alias)
    head = ", ".join(f"{a} v{v}" for a, v in sorted(alias_map.items())) or "no aliases"
    rows = []
    for model_version in versions:
        t = model_version.tags or {}
        rows.append(
            [
                f"v{model_version.version}",
                ",".join(by_version.get(int(model_version.version), [])) or "-",
                t.get(tags.KIND, "?"),
                t.get(tags.DATA_VERSION, "?"),
                fmt(t.get(tags.TEST_MASE)),
                fmt(t.get(tags.TEST_CRPS), 2),
                t.get(tags.DECISION, ""),
                (model_version.run_id or "?")[:8],
                (iso_ms(model_version.creation_timestamp) or "")[:16],
            ]
        )
    table = format_table(
        [
            "version",
            "aliases",
            "kind",
            "data",
            "test MASE",
            "test CRPS $",
            "last decision",
            "run",
            "registered (UTC)",
        ],
        rows,
    )
    return f"{name}: {head}  ({len(versions)} versions)\n{table}"


def _wrap(field: str, value: str) -> list[list[str]]:
    lines = textwrap.wrap(value, VALUE_WIDTH) or [""]
    return [[field, lines[0]], *(["", more] for more in lines[1:])]


def _scores_line(decision: dict[str, Any]) -> str:
    """'CRPS $/MASE: challenger 512.30/0.9700, champion v1 ..., persistence ...' from a record."""

    def pair(score: dict[str, Any]) -> str:
        return f"{fmt(score.get('crps'), 2)}/{fmt(score.get('mase'))}"

    champ = decision.get("champion") or {}
    parts = [f"challenger {pair(decision.get('challenger') or {})}"]
    if champ:
        parts.append(f"champion v{champ.get('version') or '-'} {pair(champ)}")
    parts.append(f"persistence {pair(decision.get('baseline') or {})}")
    return "CRPS $/MASE: " + ", ".join(parts)


def lineage_table(lin: Lineage) -> str:
    """`coinflow registry lineage N`: version → run → sweep → data → git sha → GE → decision."""
    from registry.lineage import params_text

    t, run, sweep, d = lin.tags, lin.run, lin.sweep, lin.decision
    run_line = (
        run["error"]
        if "error" in run
        else f"{run.get('name', '?')} / {run.get('status', '?')}, started {run.get('started', '?')}"
    )
    sections: list[tuple[str, list[list[str]]]] = [
        (
            "version",
            [
                ["registered", lin.registered_at],
                ["kind", t.get(tags.KIND, "?")],
                *_wrap("source", lin.source),
            ],
        ),
        ("run", [["id", run.get("id", "?")], ["name / status", run_line]]),
        (
            "sweep",
            [
                [
                    "parent run",
                    f"{sweep['id']} ({sweep.get('name', '?')} / {sweep.get('status', '?')})"
                    if sweep
                    else "none",
                ]
            ],
        ),
        (
            "data",
            [
                ["version", t[tags.DATA_VERSION]],
                ["DVC md5", t[tags.DVC_MD5]],
                *_wrap("on disk", lin.data_on_disk),
            ],
        ),
        ("code", [["git sha", t[tags.GIT_SHA]], ["model code", t.get(tags.CODE, "?")]]),
        ("GE gate", [["status", t[tags.GE_STATUS]], *_wrap("record", lin.ge_record)]),
        (
            "training",
            [
                *_wrap("params", params_text(lin.params)),
                ["trained at", run.get("ended", "")],
                [
                    "test split",
                    f"MASE {fmt(lin.metrics.get('test_mase'))}  MAE $"
                    f"{fmt(lin.metrics.get('test_mae'), 2)}  RMSE $"
                    f"{fmt(lin.metrics.get('test_rmse'), 2)} (training run)",
                ],
            ],
        ),
    ]
    if d:
        body = [
            [
                "decision",
                f"{OUTCOME.get(str(d.get('action')), '?')} at {d.get('decided_at', '?')} by "
                f"{d.get('actor', '?')}",
            ],
            *_wrap("reason", str(d.get("reason", ""))),
        ]
        if d.get("challenger"):
            eval_set = d.get("eval") or {}
            body.append(["re-scored on", f"{eval_set.get('data_version', '?')}: {_scores_line(d)}"])
        if d.get("action") in ("promote", "rollback") and d.get("champion_before") is not None:
            body.append(["replaced", f"v{d['champion_before']}"])
        body.append(["record run", str(d.get("record_run_id", ""))])
        sections.append(("decision", body))
    rows = [[step if i == 0 else "", *row] for step, body in sections for i, row in enumerate(body)]
    held = ", ".join(lin.aliases) or "no aliases"
    return f"{lin.name} v{lin.version} ({held})\n" + format_table(["step", "field", "value"], rows)


def decision_table(outcome: PromotionOutcome) -> str:
    """`coinflow registry promote`: the three scores, the rule, the verdict and the record."""
    d = outcome.decision
    rows = [
        [
            role,
            "-" if s.version is None else f"v{s.version}",
            s.kind,
            fmt(s.crps, 2),
            percent(s.coverage_80),
            percent(s.coverage_95),
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
    headers = ["role", "version", "kind", "CRPS $", "80% covers", "95% covers", "MASE"]
    table = format_table([*headers, "MAE $", "RMSE $"], rows)
    dm = d.dm
    tested = f"dm test: p = {dm.p_value:.3g} (daily CRPS, {dm.n} days)" if dm is not None else ""
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
            *([tested] if tested else []),
            f"rule:     {d.rule}",
            f"decision: {verdict}: {d.reason}",
            f"aliases:  {moved}",
            f"record:   run {outcome.record_run_id} (promotion/decision-*.json)",
        ]
    )

"""The UI's decision line, Compare tab (same-day table, sorted dot plot) and refused uploads."""

from __future__ import annotations

import io

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ui import compare, plots
from ui.app import RefuseUploads
from ui.client import Comparison, VersionDecision

pytestmark = pytest.mark.unit

REASON = "its median's MASE 1.0057 exceeds 1: the point forecast is worse than persistence"
RULE = "promote iff, on the same rows: challenger CRPS < (1 - 0.01) x champion CRPS ..."
EVAL = {"data_version": "v0.3", "rows": 366, "first_day": "2023-11-01", "last_day": "2024-10-30"}


def _decision(action: str, outcome: str, **extra: object) -> dict[str, object]:
    return {
        "action": action,
        "outcome": outcome,
        "decided_at": "2026-12-07T10:00:00.001+00:00",
        "actor": "ci@host",
        "reason": REASON,
        "rule": RULE,
        "eval": EVAL,
        **extra,
    }


REFUSED = VersionDecision.model_validate(
    {
        "name": "btc-forecaster",
        "version": 3,
        "decision": _decision(
            "refuse",
            "refused",
            champion_before=1,
            champion_after=1,
            dm_p_value=0.0123456,
            scores=[
                {
                    "role": "challenger",
                    "version": 3,
                    "kind": "torch",
                    "crps": 1234.5678,
                    "coverage_80": 0.8012,
                    "coverage_95": 0.9471,
                    "mase": 1.005712,
                },
                {
                    "role": "champion",
                    "version": 1,
                    "kind": "persistence",
                    "crps": 1250.0,
                    "coverage_80": 0.79,
                    "coverage_95": 0.95,
                    "mase": 1.0,
                },
                {"role": "baseline", "kind": "persistence", "crps": 1250.0, "mase": 1.0},
            ],
        ),
    }
)


def test_sig_keeps_four_significant_digits() -> None:
    assert [compare.sig(v) for v in (1.0057, 612.345, 1234.5, 0.012345, 0.0, None)] == [
        "1.006",
        "612.3",
        "1,234",
        "0.01235",
        "0",
        "",
    ]
    assert compare.sig(float("nan")) == "" and compare.pct(0.80123) == "80.1%"


def test_decision_panel_names_outcome_day_reason_rule_and_numbers() -> None:
    text = compare.decision_markdown(REFUSED)
    assert "**v3 was refused on 2026-12-07 (the champion stays v1): " + REASON + "**" in text
    assert "Rule: " + RULE in text and "by `ci@host`" in text
    assert "v0.3 test days 2023-11-01 → 2024-10-30 (366 days)" in text
    assert "| challenger v3 | 1,235 | 80.1% | 94.7% | 1.006 |" in text
    assert "| baseline persistence | 1,250 |  |  | 1.000 |" in text
    assert "Diebold–Mariano p-value: 0.0123." in text


@pytest.mark.parametrize(
    ("action", "extra", "expected"),
    [
        ("first-champion", {}, "v3 became the first champion on 2026-12-07: "),
        (
            "promote",
            {"champion_before": 2},
            "v3 was promoted to champion on 2026-12-07, replacing v2: ",
        ),
        (
            "rollback",
            {"champion_before": 4},
            "v3 was restored as champion by a rollback on 2026-12-07 from v4: ",
        ),
    ],
)
def test_decision_sentence_per_action(action: str, extra: dict[str, object], expected: str) -> None:
    answer = VersionDecision.model_validate(
        {"name": "m", "version": 3, "decision": _decision(action, action, **extra)}
    )
    assert answer.decision is not None
    assert compare.decision_sentence(answer.decision, 3) == expected + REASON


def test_a_version_never_judged_says_so() -> None:
    text = compare.decision_markdown(VersionDecision(name="m", version=7))
    assert "No decision was ever recorded on v7" in text


def _comparison(n: int) -> Comparison:
    """n versions: CRPS not in version order, MASE within 1% of persistence."""
    versions = []
    for v in range(1, n + 1):
        crps = 1190.0 if v == 1 else 1200.0 + ((v * 37) % n) * 1.5  # v1 the best
        versions.append(
            {
                "version": v,
                "aliases": ["champion"] if v == 1 else [],
                "kind": "persistence" if v == 1 else "torch",
                "trained_on": "v0.3",
                "crps": crps,
                "mase": 1.0 if v == 1 else 1.0 + ((v * 13) % n) / 1000,
                "coverage_80": 0.8,
                "coverage_95": 0.95,
                "mae": 812.3456,
                "rmse": 1234.5678,
                "decision": _decision("refuse", "refused") if v > 1 else None,
            }
        )
    versions.append({"version": n + 1, "kind": "torch", "error": f"v{n + 1} does not load"})
    return Comparison.model_validate(
        {
            "name": "btc-forecaster",
            "eval": EVAL,
            "baseline": {"crps": 1210.0, "mase": 1.0},
            "versions": versions,
        }
    )


def test_compare_note_and_rows_newest_first_ranked_by_crps() -> None:
    comparison = _comparison(3)
    note = compare.compare_note(comparison)
    assert "**same 366 test days** of data v0.3 (2023-11-01 → 2024-10-30)" in note
    assert "CRPS $1,210, MASE 1.000" in note
    rows = compare.compare_rows(comparison)
    assert [r[0] for r in rows] == ["v4", "v3", "v2", "v1"]
    assert rows[0][1] == "" and rows[0][-1] == "v4 does not load"  # unscored: no rank
    by_crps = sorted(rows[1:], key=lambda r: float(str(r[4]).replace(",", "")))
    assert [r[1] for r in by_crps] == [1, 2, 3]
    v1 = rows[-1]
    assert v1[2:7] == ["@champion", "persistence (v0.3)", "1,190", "-1.65%", "1.000"]
    assert v1[9:11] == ["812.3", "1,235"] and v1[11] == ""  # never judged: no decision
    assert rows[1][11:] == ["refused", REASON]
    assert len(compare.COMPARE_WIDTHS) == len(compare.COMPARE_HEADERS) == len(v1)
    assert sum(float(w.rstrip("%")) for w in compare.COMPARE_WIDTHS) == 100


def _png(fig: object) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png")  # type: ignore[attr-defined]
    return out.getvalue()


def test_dot_plot_scales_to_many_versions_sorted_by_crps_with_tight_axes() -> None:
    comparison = _comparison(30)
    dots = compare.compare_dots(comparison)
    assert [d.crps for d in dots] == sorted(d.crps for d in dots) and len(dots) == 30
    fig = plots.compare_figure(dots, 1210.0, 1.0)
    crps_ax, mase_ax = fig.axes[:2]
    labels = [t.get_text() for t in crps_ax.get_yticklabels()]
    assert labels == [d.label for d in dots] and labels[0].startswith("v1 persistence")
    top, bottom = crps_ax.get_ylim()
    assert top > bottom  # row 0 (best CRPS) at the top
    lo, hi = mase_ax.get_xlim()
    assert 0.99 < lo < 1.0 and 1.029 < hi < 1.06  # 1.000 and 1.006 apart, not bars from 0
    assert fig.get_figheight() > 9  # grows with the versions: labels never overlap
    assert _png(fig).startswith(b"\x89PNG")


def test_uploads_are_refused_before_gradio_sees_them() -> None:
    async def ok(_: object) -> PlainTextResponse:
        return PlainTextResponse("reached")

    app = Starlette(
        routes=[Route(p, ok, methods=["GET", "POST"]) for p in ("/gradio_api/upload", "/", "/x")],
        middleware=[Middleware(RefuseUploads)],
    )
    client = TestClient(app)
    for path in ("/gradio_api/upload", "/gradio_api/upload/", "/gradio_api/upload_progress"):
        answer = client.post(path, files={"files": ("x.txt", b"ok")})
        assert answer.status_code == 403 and "no file uploads" in answer.text
    assert client.get("/").text == "reached" and client.post("/x").text == "reached"

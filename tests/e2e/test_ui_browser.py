"""End to end in headless Chromium: the Gradio UI over the real API and a real MLflow registry."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.e2e_helpers import SCREENSHOTS, ChildServer, E2eRegistry

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WAIT_MS = 30_000  # a first forecast loads the version (~2 s) on a busy 2-core machine


@pytest.fixture
def ui_page(page: Any, servers: tuple[ChildServer, ChildServer]) -> Any:
    """The UI page, opened with the API up (restarted if a previous test stopped it)."""
    api, ui = servers
    api.ensure_running()
    page.goto(ui.url)
    expect(page.locator("#status")).to_contain_text("Connected to", timeout=WAIT_MS)
    return page


def _pick(page: Any, label: str) -> None:
    """Open the model dropdown and click the option whose label contains `label`."""
    page.locator("#model-picker input").click()
    page.get_by_role("option", name=re.compile(re.escape(label))).click()


def _forecast(page: Any, label: str, registry: E2eRegistry, version: int) -> Any:
    """Pick a version, press Forecast, wait for its lineage and plot; return the lineage panel."""
    _pick(page, label)
    page.locator("#forecast").click()
    lineage = page.locator("#lineage")
    expect(lineage).to_contain_text(f"{registry.name} v{version}", timeout=WAIT_MS)
    expect(lineage).to_contain_text(registry.run_ids[version])
    plot = page.locator("#forecast-plot img")
    expect(plot).to_be_visible()
    assert plot.evaluate("img => img.naturalWidth") > 300  # a rendered chart, not an icon
    return lineage


def _screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def test_forecast_shows_plot_lineage_and_the_decision_behind_the_version(
    ui_page: Any, e2e_registry: E2eRegistry
) -> None:
    lineage = _forecast(ui_page, "v1 · persistence", e2e_registry, 1)
    for text in (
        "persistence",
        e2e_registry.data_version,
        e2e_registry.dvc_md5,
        e2e_registry.git_sha,
        "@champion",
    ):
        expect(lineage).to_contain_text(text)
    link = lineage.get_by_role("link", name=re.compile("MLflow UI"))
    expect(link).to_have_attribute(
        "href", f"http://mlflow.e2e.invalid:5000/#/runs/{e2e_registry.run_ids[1]}"
    )
    decision = ui_page.locator("#decision")
    expect(decision).to_contain_text(re.compile(r"v1 became the first champion on \d{4}-\d\d-\d\d"))
    expect(decision).to_contain_text("serves until a model beats it")  # the recorded reason
    status = ui_page.locator("#status")
    expect(status).to_contain_text(f"{e2e_registry.name} v1")
    expect(status).to_contain_text("the persistence baseline: last close $")
    expect(status).not_to_contain_text("vs persistence")  # persistence is not compared to itself
    _screenshot(ui_page, "ui_forecast.png")

    lineage = _forecast(ui_page, "v2 · torch", e2e_registry, 2)  # the panels follow the pick
    expect(lineage).to_contain_text("torch")
    expect(lineage).not_to_contain_text(e2e_registry.run_ids[1])
    expect(decision).to_contain_text("v2 was refused on", timeout=WAIT_MS)
    expect(decision).to_contain_text("(the champion stays v1)")
    expect(decision).to_contain_text(e2e_registry.refusal)  # the rule's reason, with its numbers
    expect(decision).to_contain_text("Rule: promote iff")
    for role in ("challenger", "champion", "baseline"):
        expect(decision.locator("td", has_text=role).first).to_be_visible()
    expect(status).to_contain_text("vs persistence at $")
    _screenshot(ui_page, "ui_forecast_refused.png")


def _cells(table: Any) -> list[list[str]]:
    """The body rows of a Gradio table as text (its visible rows: a virtual list of divs)."""
    rows = table.locator("div[role=row]")
    return [
        [c.strip() for c in rows.nth(i).locator("[role=gridcell]").all_inner_texts()]
        for i in range(rows.count())
    ]


def test_compare_tab_scores_every_version_on_the_same_days(
    ui_page: Any, e2e_registry: E2eRegistry
) -> None:
    ui_page.get_by_role("tab", name="Compare versions").click()
    note = ui_page.locator("#compare-note")
    expect(note).to_contain_text("same", timeout=WAIT_MS)
    expect(note).to_contain_text(re.compile(r"All 2 version\(s\) .* same \d+ test days"))
    expect(note).to_contain_text(f"of data {e2e_registry.data_version}")
    table = ui_page.locator("#versions-table")
    expect(table).to_contain_text("refused")
    expect(table).to_contain_text("first-champion")
    expect(table).to_contain_text(e2e_registry.refusal[:40])
    rows = {r[0]: r for r in _cells(table) if r and r[0].startswith("v")}
    assert sorted(rows) == ["v1", "v2"], rows
    crps = {v: float(r[4].replace(",", "")) for v, r in rows.items()}
    ranks = {v: int(r[1]) for v, r in rows.items()}
    assert sorted(ranks, key=ranks.__getitem__) == sorted(crps, key=crps.__getitem__)  # dot order
    for row in rows.values():  # 4 significant digits: '1,234', '612.3', '1.006'
        assert all(len(re.sub(r"\D", "", row[i]).lstrip("0")) <= 4 for i in (4, 6, 9, 10)), row
    # The last numeric column is on screen and wide enough for its header and numbers.
    header = table.locator("th[title='RMSE (USD)']")
    box = header.evaluate("h => h.getBoundingClientRect().toJSON()")
    edge = table.evaluate("t => t.getBoundingClientRect().right")
    assert box["right"] <= edge + 1 and box["width"] >= 60, (box, edge)
    plot = ui_page.locator("#compare-plot img")
    expect(plot).to_be_visible()
    assert plot.evaluate("img => img.naturalWidth") > 300
    _screenshot(ui_page, "ui_compare.png")
    ui_page.get_by_role("tab", name="Latest sweep").click()
    expect(ui_page.locator("#sweep-note")).to_contain_text("No sweep recorded yet")


def test_api_stopped_shows_a_friendly_message_and_controls_stay_usable(
    ui_page: Any, servers: tuple[ChildServer, ChildServer]
) -> None:
    api, _ = servers
    api.stop()  # the API goes away while the page is open

    status = ui_page.locator("#status")
    ui_page.locator("#forecast").click()
    expect(status).to_contain_text("not reachable", timeout=WAIT_MS)
    expect(status).to_contain_text(api.url)
    ui_page.locator("#refresh").click()
    expect(status).to_contain_text("⚠️")
    expect(ui_page.locator("#forecast")).to_be_enabled()
    expect(ui_page.locator("#model-picker input")).to_be_enabled()
    _pick(ui_page, "v2 · torch")  # the last good choices are still offered
    ui_page.reload()  # a fresh page load with the API down
    expect(status).to_contain_text("not reachable", timeout=WAIT_MS)
    for marker in ("Traceback", "Exception", "httpx"):
        expect(ui_page.get_by_text(marker)).to_have_count(0)
    # An exception escaping a handler shows Gradio's bare "Error" badge on the output component.
    expect(ui_page.get_by_text("Error", exact=True)).to_have_count(0)
    _screenshot(ui_page, "ui_api_down.png")


def test_uploads_are_refused_and_leave_nothing_behind(
    servers: tuple[ChildServer, ChildServer], e2e_registry: E2eRegistry
) -> None:
    """The UI takes no files: Gradio's unauthenticated upload route refuses every upload, small
    or large, before anything reaches its temp folder."""
    import httpx

    _, ui = servers
    temp = e2e_registry.gradio_temp
    before = sorted(temp.rglob("*")) if temp.exists() else []
    for path in ("/gradio_api/upload", "/gradio_api/upload/", "/upload"):
        for body in (b"ok", b"x" * 65_536):
            answer = httpx.post(ui.url + path, files={"files": ("x.txt", body)}, timeout=30)
            assert answer.status_code == 403, (path, answer.status_code, answer.text[:200])
    after = sorted(temp.rglob("*")) if temp.exists() else []
    assert after == before  # no upload directory was created


def test_live_tab_plots_scores_and_names_the_champion_moves(
    ui_page: Any, live_history: list[str]
) -> None:
    ui_page.get_by_role("tab", name="Live").click()
    ui_page.locator("#live-refresh").click()  # the page opened before the scores were written
    note = ui_page.locator("#live-note")
    expect(note).to_contain_text(f"Champion moves ({len(live_history)})", timeout=WAIT_MS)
    expect(note).to_contain_text("; ".join(live_history))
    expect(ui_page.locator("#live-table")).to_contain_text("shadow")
    plot = ui_page.locator("#live-plot img")
    expect(plot).to_be_visible()
    assert plot.evaluate("img => img.naturalWidth") > 300
    _screenshot(ui_page, "ui_live.png")

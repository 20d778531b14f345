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


def test_forecast_for_a_picked_version_shows_plot_and_lineage(
    ui_page: Any, e2e_registry: E2eRegistry
) -> None:
    lineage = _forecast(ui_page, "v1 · torch", e2e_registry, 1)
    for text in (
        "torch",
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
    expect(ui_page.locator("#status")).to_contain_text(f"{e2e_registry.name} v1")
    _screenshot(ui_page, "ui_forecast.png")

    lineage = _forecast(ui_page, "v2 · persistence", e2e_registry, 2)  # the panel follows
    expect(lineage).to_contain_text("persistence")
    expect(lineage).not_to_contain_text(e2e_registry.run_ids[1])


def test_compare_and_sweep_tabs_show_the_registry(ui_page: Any) -> None:
    ui_page.get_by_role("tab", name="Compare versions").click()
    table = ui_page.locator("#versions-table")
    expect(table).to_contain_text("persistence", timeout=WAIT_MS)
    expect(table).to_contain_text("@champion")
    expect(ui_page.locator("#metrics-plot img")).to_be_visible()
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
    _pick(ui_page, "v2 · persistence")  # the last good choices are still offered
    ui_page.reload()  # a fresh page load with the API down
    expect(status).to_contain_text("not reachable", timeout=WAIT_MS)
    for marker in ("Traceback", "Exception", "httpx"):
        expect(ui_page.get_by_text(marker)).to_have_count(0)
    # An exception escaping a handler shows Gradio's bare "Error" badge on the output component.
    expect(ui_page.get_by_text("Error", exact=True)).to_have_count(0)
    _screenshot(ui_page, "ui_api_down.png")


def test_uploads_are_capped_at_a_few_kilobytes(servers: tuple[ChildServer, ChildServer]) -> None:
    """The UI takes no files: Gradio's unauthenticated upload route refuses a 64 KB file."""
    import httpx

    _, ui = servers
    url = f"{ui.url}/gradio_api/upload"
    big = httpx.post(url, files={"files": ("x.bin", b"x" * 65_536)}, timeout=30)
    assert big.status_code == 413, big.text[:300]
    small = httpx.post(url, files={"files": ("x.txt", b"ok")}, timeout=30)
    assert small.status_code == 200, small.text[:300]


def test_live_tab_plots_scores_and_names_the_champion_moves(
    ui_page: Any, live_history: list[str]
) -> None:
    ui_page.get_by_role("tab", name="Live").click()
    ui_page.locator("#live-refresh").click()  # the page opened before the scores were written
    note = ui_page.locator("#live-note")
    expect(note).to_contain_text("Champion moves (2)", timeout=WAIT_MS)
    expect(note).to_contain_text("; ".join(live_history))
    expect(ui_page.locator("#live-table")).to_contain_text("shadow")
    plot = ui_page.locator("#live-plot img")
    expect(plot).to_be_visible()
    assert plot.evaluate("img => img.naturalWidth") > 300
    _screenshot(ui_page, "ui_live.png")

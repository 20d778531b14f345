"""The API's /docs and /redoc with no internet: Swagger UI and ReDoc come from the API itself
(fastapi-offline's packaged files), so both render every operation with the network blocked."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from tests.conftest import free_port
from tests.e2e.e2e_helpers import SCREENSHOTS, ChildServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WAIT_MS = 30_000
OPERATIONS = ("/predict", "/models", "/health", "/ready", "/admin/reload")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildServer]:
    """`coinflow serve` with no registry behind it: the docs need none."""
    root = tmp_path_factory.mktemp("docs_offline")
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "COINFLOW_MODEL_NAME": "docs-only",
        "COINFLOW_REFRESH_S": "0",
        "COINFLOW_PREDICTION_LOG_URL": "",
    }
    server = ChildServer(
        "API",
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--log-level", "warning"],
        env,
        root,
        port,
        "/health",
        root / "api.log",
    )
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# What a page cannot render without; an image off the network (ReDoc's "API docs by Redocly"
# logo) is decoration.
NEEDED = {"document", "script", "stylesheet", "fetch", "xhr", "font"}


@pytest.fixture
def offline_page(page: Any) -> tuple[Any, list[str]]:
    """The page with every request off 127.0.0.1 aborted; yields it and the aborted requests
    the page needed to render."""
    blocked: list[str] = []

    def only_local(route: Any) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
            return
        if route.request.resource_type in NEEDED:
            blocked.append(f"{route.request.resource_type} {route.request.url}")
        route.abort("internetdisconnected")

    page.context.route("**/*", only_local)
    return page, blocked


def test_swagger_ui_renders_every_operation_offline(
    offline_page: tuple[Any, list[str]], api: ChildServer
) -> None:
    page, blocked = offline_page
    page.goto(f"{api.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text(
        "coinflow model API", timeout=WAIT_MS
    )
    paths = page.locator(".opblock-summary-path")
    expect(paths.first).to_be_visible(timeout=WAIT_MS)
    shown = set(paths.all_inner_texts())
    for path in OPERATIONS:
        assert any(text.replace("\u200b", "") == path for text in shown), (path, shown)
    # Open /predict: its parameters (with their bounds) are rendered too.
    page.locator(".opblock-post .opblock-summary", has_text="/predict").first.click()
    params = page.locator(".opblock-post .parameters")
    expect(params).to_contain_text("levels", timeout=WAIT_MS)
    expect(params).to_contain_text("version")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "api_docs_offline.png"), full_page=True)
    assert blocked == [], blocked  # no script, style or font was asked of the internet


def test_redoc_renders_every_operation_offline(
    offline_page: tuple[Any, list[str]], api: ChildServer
) -> None:
    page, blocked = offline_page
    page.goto(f"{api.url}/redoc")
    content = page.locator(".api-content")
    expect(content).to_contain_text("coinflow model API", timeout=WAIT_MS)
    for path in OPERATIONS:
        expect(content).to_contain_text(path)
    expect(content).to_contain_text("Forecast BTC closes")  # /predict's description
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "api_redoc_offline.png"), full_page=False)
    assert blocked == [], blocked

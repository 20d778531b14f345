"""The per-client rate limit: a burst passes, the next request is 429 with Retry-After, the
bucket refills at the configured rate, other clients and probes are never held back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from serving_helpers import app_settings

from serving.app import create_app
from serving.settings import ServingSettings
from tests.processes import free_port

pytestmark = pytest.mark.unit


def app_limited(per_s: float, burst: int) -> FastAPI:
    """The real app with this limit, not started: /limits, /health and /metrics need no model
    (no cache, no prediction log)."""
    nowhere = f"http://127.0.0.1:{free_port()}"  # no registry: none is asked
    app = create_app(
        app_settings(nowhere, "m", coinflow_rate_limit_per_s=per_s, coinflow_rate_limit_burst=burst)
    )
    app.state.cache = app.state.prediction_log = None
    return app


def test_past_the_burst_a_client_gets_429_with_retry_after() -> None:
    app = app_limited(per_s=0.5, burst=3)
    first = TestClient(app, client=("10.0.0.1", 5000))
    assert [first.get("/limits").status_code for _ in range(3)] == [200, 200, 200]
    refused = first.get("/limits")
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "2"  # one token at 0.5/s: 2 s away
    body = refused.json()
    assert body["type"] == "urn:coinflow:problem:rate-limited" and body["status"] == 429
    assert "0.5 requests a second" in body["detail"] and "bursts of 3" in body["detail"]
    # Probes and scrapes are not counted; another address has its own bucket.
    assert all(first.get("/health").status_code == 200 for _ in range(5))
    assert all(first.get("/metrics").status_code == 200 for _ in range(5))
    assert TestClient(app, client=("10.0.0.2", 5000)).get("/limits").status_code == 200
    # The refused request counted in the metrics.
    assert 'status="429"' in first.get("/metrics").text


def test_the_bucket_refills_at_the_configured_rate() -> None:
    client = TestClient(app_limited(per_s=20, burst=1), client=("10.0.0.3", 5000))
    assert client.get("/limits").status_code == 200
    assert client.get("/limits").status_code == 429
    time.sleep(0.06)  # 1.2 tokens' worth at 20/s
    assert client.get("/limits").status_code == 200


def test_zero_turns_the_limit_off() -> None:
    client = TestClient(app_limited(per_s=0, burst=1))
    assert all(client.get("/limits").status_code == 200 for _ in range(50))


def test_the_default_is_documented() -> None:
    """20 requests a second per client, bursts of 40: what the README's table says."""
    fields = ServingSettings.model_fields
    assert fields["coinflow_rate_limit_per_s"].default == 20.0
    assert fields["coinflow_rate_limit_burst"].default == 40
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "| `COINFLOW_RATE_LIMIT_PER_S` | `20` |" in readme
    assert "| `COINFLOW_RATE_LIMIT_BURST` | `40` |" in readme

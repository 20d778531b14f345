"""Serving fixtures: the API on a real port over the session store (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serving_helpers import ADMIN_TOKEN, Server, running_api

from tests.serving.serving_helpers import Store


@pytest.fixture(scope="session")
def api(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The API serving `btc-forecaster` from the session store, admin token set, no refresh."""
    tmp = tmp_path_factory.mktemp("api")
    with running_api(
        tmp, store.uri, "btc-forecaster", coinflow_admin_token=ADMIN_TOKEN, coinflow_refresh_s="0"
    ) as server:
        yield server

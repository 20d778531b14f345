"""Serving fixtures: a real MLflow store with trained tiny models, and the API on a real port."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving_helpers import ADMIN_TOKEN, MODEL_NAMES, Server, Store, clean_env, running_api


@pytest.fixture(scope="session")
def store(
    tmp_path_factory: pytest.TempPathFactory, features_v03: Path, real_versions: Path
) -> Store:
    """Two tiny trained torch models + persistence, registered as versions 1, 2, 3 of each
    name in MODEL_NAMES (aliases champion → 1, challenger → 2, baseline → 3)."""
    root = tmp_path_factory.mktemp("serving-store")
    log = root / "build.log"
    with log.open("w") as out:
        proc = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).with_name("build_registry.py")),
                str(root),
                str(features_v03),
                str(real_versions),
                *MODEL_NAMES,
            ],
            cwd=root,
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=300,
        )
    if proc.returncode != 0:
        pytest.fail(f"building the registry failed:\n{log.read_text()[-4000:]}")
    manifest = json.loads((root / "manifest.json").read_text())
    return Store(root, manifest["uri"], manifest)


@pytest.fixture(scope="session")
def api(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The API serving `btc-forecaster` from the session store, admin token set, no refresh."""
    tmp = tmp_path_factory.mktemp("api")
    with running_api(
        tmp, store.uri, "btc-forecaster", coinflow_admin_token=ADMIN_TOKEN, coinflow_refresh_s="0"
    ) as server:
        yield server

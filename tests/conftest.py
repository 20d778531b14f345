"""Shared fixtures: every test's state lives in a tmp dir; services are required in CI."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from core.tracking import MLFLOW_URI_VARS, restored_env
from tests.processes import (  # free_port, pg_database: re-exported for tests
    free_port,  # noqa: F401
    pg_database,  # noqa: F401
)

if TYPE_CHECKING:
    from tests.serving.serving_helpers import Store

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
# One BLAS/OpenMP thread per process (every server, stage and task a test starts inherits it):
# two xdist workers and their children share two cores, and OpenBLAS threads spinning against
# each other ran NumPy's small matmuls ~15x slower on a busy box.
for _threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")


# Session fixtures worth building once per run: every test using one runs on the same xdist
# worker (`make test` runs `pytest -n 2 --dist loadgroup`). Every other test is grouped by its
# module, so a module-scoped fixture is built once too.
SHARED_WORLDS = ("store", "learnable_workspace", "built_versions")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups off the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put each test in its xdist group: the first shared world it uses, else its module. Modules
    holding a slow test or a shared world run first (workers hand out groups in this order: the
    long ones start early instead of finishing last); a module's tests stay together."""
    heavy_modules = set()
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        world = next((name for name in SHARED_WORLDS if name in fixtures), None)
        module = item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(world or module))
        if world or item.get_closest_marker("slow"):
            heavy_modules.add(module)
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in heavy_modules)


def services_required() -> bool:
    """CI sets REQUIRE_SERVICES=1: a missing service is then a failure, never a skip."""
    return os.environ.get("REQUIRE_SERVICES") == "1"


def need_service(available: bool, what: str) -> None:
    """Fail (CI) or skip (laptop) when a service a test needs is missing."""
    if available:
        return
    if services_required():
        pytest.fail(f"{what} is required (REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@pytest.fixture(autouse=True)
def no_default_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """COINFLOW_WORKDIR points at an empty folder: a test that forgot to name its project root
    fails on a missing params.yaml instead of writing into the repository."""
    monkeypatch.setenv("COINFLOW_WORKDIR", str(tmp_path / "no-project-root-set"))


@pytest.fixture(autouse=True)
def no_leaked_mlflow_uris() -> Iterator[None]:
    """MLflow's URI variables back after each test (a leaked MLFLOW_REGISTRY_URI once sent a
    fresh copy's releases to another test's store)."""
    with restored_env(*MLFLOW_URI_VARS):
        yield


@pytest.fixture
def postgres_url() -> str:
    """Base SQLAlchemy URL of the machine's Postgres (trust auth)."""
    need_service(port_open("127.0.0.1", 5432), "Postgres on 127.0.0.1:5432")
    return "postgresql+psycopg2://postgres@127.0.0.1:5432"


@pytest.fixture
def fresh_pg_db(postgres_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new, empty Postgres database for one test; dropped afterwards."""
    with pg_database(postgres_url, request.node.name) as url:
        yield url


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A private embedded MLflow store (SQLite + local artifacts) for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.setenv("COINFLOW_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    return uri


@pytest.fixture(scope="session")
def real_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/versions built from the real raw CSVs (data/raw, `dvc pull`) into a private dir."""
    from core.params import load_params
    from pipelines.data import ingest, version

    raw = REPO / "data" / "raw"
    if not (raw / "btc.csv").is_file():
        pytest.fail("data/raw is empty: run `dvc pull` (make test does)")
    root = tmp_path_factory.mktemp("versions")
    params = load_params(REPO / "params.yaml")
    assets = {a: ingest.load_prices(raw / f"{a}.csv") for a in ("btc", "eth", "gold")}
    out = root / "versions"
    out.mkdir()
    for name, cutoff in params.data.versions.items():
        frame = version.align_assets(**assets, start=params.data.start, cutoff=cutoff)
        frame.to_parquet(out / f"{name}.parquet")
    return out


@pytest.fixture(scope="session")
def features_v03(real_versions: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/features for v0.3 (GE gate bypassed: tests of the gate live in tests/data)."""
    import pandas as pd

    from core.files import file_md5
    from core.params import load_params
    from pipelines.training.features import write_features

    root = tmp_path_factory.mktemp("features")
    path = real_versions / "v0.3.parquet"
    write_features(
        pd.read_parquet(path),
        "v0.3",
        file_md5(path),
        load_params(REPO / "params.yaml").features,
        root / "features",
        root / "metrics",
    )
    return root / "features"


@pytest.fixture(scope="session")
def learnable_workspace(real_versions: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root (params.yaml, data/versions, metrics/validation.json, data/features) whose
    one version `syn-ar1` is v0.3 with BTC prices replaced by a mean-reverting AR(1) series: a
    tiny RNN beats persistence on it (MASE ~0.9), so promotions have something to promote."""
    import json
    import shutil

    import numpy as np
    import pandas as pd

    from core.files import file_md5
    from core.params import load_params
    from pipelines.gate.validate import outcome_record, validate_version
    from pipelines.training.features import write_features

    params = load_params(REPO / "params.yaml")
    frame = pd.read_parquet(real_versions / "v0.3.parquet")
    rng = np.random.default_rng(7)
    eps = rng.normal(0.0, 0.03, len(frame))
    ret = np.zeros(len(frame))
    for i in range(1, len(frame)):
        ret[i] = -0.5 * ret[i - 1] + eps[i]  # tomorrow partly undoes today: learnable
    close = 400.0 * np.exp(np.cumsum(ret))
    opens = np.concatenate([[close[0]], close[:-1]])
    wick = 1 + np.abs(rng.normal(0.0, 0.01, len(frame)))
    frame = frame.assign(
        btc_open=opens,
        btc_close=close,
        btc_high=np.maximum(opens, close) * wick,
        btc_low=np.minimum(opens, close) / wick,
    )
    root = tmp_path_factory.mktemp("learnable")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    path = root / "data" / "versions" / "syn-ar1.parquet"
    path.parent.mkdir(parents=True)
    frame.to_parquet(path)
    outcome = validate_version(
        frame,
        "syn-ar1",
        frame.index[-1].date(),
        params.validate_,
        root / "reports" / "validation" / "syn-ar1",
    )
    assert outcome.success, [str(f) for f in outcome.failed]
    (root / "metrics").mkdir()
    (root / "metrics" / "validation.json").write_text(
        json.dumps({"syn-ar1": outcome_record(outcome, file_md5(path))}, default=str)
    )
    write_features(
        frame,
        "syn-ar1",
        file_md5(path),
        params.features,
        root / "data" / "features",
        root / "metrics",
    )
    return root


@pytest.fixture(scope="session")
def store(
    tmp_path_factory: pytest.TempPathFactory, features_v03: Path, real_versions: Path
) -> Store:
    """Two tiny trained torch models + persistence, registered as versions 1, 2, 3 of each
    name in MODEL_NAMES (aliases champion → 1, challenger → 2, baseline → 3). Built once per
    run; a test that moves a name's aliases uses its own name, or a `copy_store` of it."""
    import json
    import subprocess
    import sys

    from tests.serving.serving_helpers import MODEL_NAMES, Store, clean_env

    root = tmp_path_factory.mktemp("serving-store")
    log = root / "build.log"
    with log.open("w") as out:
        proc = subprocess.run(
            [
                sys.executable,
                str(REPO / "tests" / "serving" / "build_registry.py"),
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

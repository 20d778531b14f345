"""Shared fixtures: every test's state lives in a tmp dir; services are required in CI."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def postgres_url() -> str:
    """Base SQLAlchemy URL of the machine's Postgres (trust auth)."""
    need_service(port_open("127.0.0.1", 5432), "Postgres on 127.0.0.1:5432")
    return "postgresql+psycopg2://postgres@127.0.0.1:5432"


@pytest.fixture
def fresh_pg_db(postgres_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new, empty Postgres database for one test; dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    stem = "".join(ch if ch.isalnum() else "_" for ch in request.node.name[:20].lower())
    name = f"cf_{stem}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(f"{postgres_url}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{postgres_url}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


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
    from pipelines import ingest, version
    from pipelines.config import load_params

    raw = REPO / "data" / "raw"
    if not (raw / "btc.csv").is_file():
        pytest.fail("data/raw is empty: run `dvc pull` (make test does)")
    root = tmp_path_factory.mktemp("versions")
    params = load_params(REPO / "params.yaml")
    assets = {a: ingest.load_prices(raw / f"{a}.csv") for a in ("btc", "eth", "gold")}
    out = root / "versions"
    out.mkdir()
    for name, frame in version.build_versions(**assets, start=params.data.start,
                                              cutoffs=params.data.versions).items():
        frame.to_parquet(out / f"{name}.parquet")
    return out


@pytest.fixture(scope="session")
def features_v03(real_versions: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/features for v0.3 (GE gate bypassed: tests of the gate live in tests/data)."""
    import pandas as pd

    from pipelines.config import load_params
    from pipelines.features import write_features
    from pipelines.version import file_md5

    root = tmp_path_factory.mktemp("features")
    path = real_versions / "v0.3.parquet"
    write_features(pd.read_parquet(path), "v0.3", file_md5(path),
                   load_params(REPO / "params.yaml").features, root / "features", root / "metrics")
    return root / "features"

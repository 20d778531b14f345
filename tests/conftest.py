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

    name = f"cf_{request.node.name[:20].lower().replace('[', '_').replace(']', '')}_{uuid.uuid4().hex[:8]}"
    name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
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

"""`coinflow serve` refuses to start on a guessable admin token, saying why and never echoing it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from serving_helpers import REPO, clean_env

from serving.settings import MIN_ADMIN_TOKEN, ServingSettings
from tests.conftest import port_open
from tests.processes import free_port

pytestmark = pytest.mark.unit


def settings(token: str) -> ServingSettings:
    return ServingSettings(
        coinflow_model_name="m",
        coinflow_admin_token=SecretStr(token),
        coinflow_prediction_log_url="",
    )


@pytest.mark.parametrize("token", ["Zq", "Zq" * 15 + "W", " " * 40 + "Zq9short"])
def test_a_short_admin_token_is_refused(token: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(token)
    message = str(caught.value)
    assert f"COINFLOW_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN} characters" in message
    assert "openssl rand -hex 32" in message
    assert token.strip() not in message  # the secret is never echoed


def test_a_long_token_or_none_is_accepted() -> None:
    assert MIN_ADMIN_TOKEN == 32
    assert settings("k" * 32).admin_token == "k" * 32
    assert settings("").admin_token is None  # empty: the admin endpoint is off


def test_serve_exits_at_once_naming_the_setting(tmp_path: Path) -> None:
    """Exit 2 before any port is bound, the message on stderr, the token nowhere in it."""
    port = free_port()
    token = "tooshort-s3cret"
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=clean_env(COINFLOW_ADMIN_TOKEN=token, COINFLOW_MODEL_NAME="m", PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "coinflow serve: refusing to start" in done.stderr
    assert "COINFLOW_ADMIN_TOKEN must be at least 32 characters (it has 15)" in done.stderr
    assert token not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert not port_open("127.0.0.1", port)

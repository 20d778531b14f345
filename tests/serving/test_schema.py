"""schemathesis against the live API's OpenAPI schema: no server errors, responses as declared."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serving_helpers import ADMIN_TOKEN, Server, clean_env

pytestmark = pytest.mark.serving
ST = Path(sys.executable).with_name("st")
# schemathesis's default "rejected" statuses for schema-violating requests, plus 413: a body
# over the size limit (e.g. more rows than maxItems) is refused before it is parsed.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422",
                     "428", "429", "5xx"]
"""


def server_errors(api: Server) -> int:
    """5xx answers the API has counted so far (its own Prometheus counter), but /ready's 503:
    that is its declared "not ready yet" answer, polled while the API starts."""
    text = httpx.get(f"{api.url}/metrics").text
    return sum(
        int(float(m.group(2)))
        for m in re.finditer(
            r'^coinflow_http_requests_total\{([^}]*)status="5\d\d"\} (\S+)$', text, re.MULTILINE
        )
        if 'route="/ready"' not in m.group(1)
    )


@pytest.mark.parametrize("auth", [True, False], ids=["with-admin-token", "anonymous"])
def test_schemathesis_finds_no_server_error(api: Server, tmp_path: Path, auth: bool) -> None:
    # Every check, but positive_data_acceptance: the API has cross-field rules OpenAPI cannot
    # state (?version and ?alias are exclusive; rows must cover the model's lookback + 1).
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    cmd = [
        str(ST),
        "--config-file",
        str(config),
        "run",
        f"{api.url}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        "60",
        "--seed",
        "7",
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    if auth:
        cmd += ["-H", f"Authorization: Bearer {ADMIN_TOKEN}"]
    before = server_errors(api)
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", proc.stdout)
    assert generated is not None and int(generated.group(1)) >= 100, proc.stdout[-2000:]
    assert server_errors(api) == before == 0

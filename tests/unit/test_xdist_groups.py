"""`make test` relies on `pytest -n 2 --dist loadgroup` keeping an xdist_group on one worker
(tests/conftest.py groups the tests sharing a built world, and each module's tests): with
pytest 9 and pytest-xdist 3.8 the groups were silently ignored, and every worker built every
world. This runs the installed pair on a tiny suite and checks where each test ran."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SUITE = """
import pytest

pytestmark = pytest.mark.xdist_group("world")

@pytest.mark.parametrize("n", range(6))
def test_shared(n):
    pass
"""


def test_loadgroup_keeps_a_group_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_grouped.py").write_text(SUITE)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v"]
        + ["-p", "no:cacheprovider", "test_grouped.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ran = re.findall(r"\[(gw\d)\].*PASSED test_grouped.py::test_shared\[\d\]@world", done.stdout)
    assert len(ran) == 6, done.stdout
    assert len(set(ran)) == 1, done.stdout  # all six on the same worker

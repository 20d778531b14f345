"""`make airflow` (scripts/airflow_local.sh) stops every process Airflow started on Ctrl-C or
SIGTERM, even one that ignores SIGTERM or left the process group, and binds the api-server to
127.0.0.1. `airflow standalone` is replaced by a script that spawns such children: what is tested
is the script's stop, not Airflow (by hand, on the real one: README, Airflow section)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.dags.airflow_helpers import REPO
from tests.processes import TAG, leftovers, tagged

pytestmark = pytest.mark.dags

SCRIPT = REPO / "scripts" / "airflow_local.sh"
# Children like standalone's: a plain one, one that ignores SIGTERM, and one in a process group
# of its own (as Airflow's task runner puts itself).
STANDALONE = """#!/usr/bin/env bash
env > "$AIRFLOW_HOME/standalone.env"
sleep 300 &
bash -c 'trap "" TERM; while :; do sleep 1; done' &
"$(dirname "$0")/python" -c 'import os, time; os.setpgid(0, 0); time.sleep(300)' &
wait
"""
GRACE_S = 1  # the script's default is 6: stopped within 10 s


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_process_airflow_started(tmp_path: Path, sig: signal.Signals) -> None:
    bin_dir, home = tmp_path / "bin", tmp_path / "airflow-home"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    (bin_dir / "airflow").write_text(STANDALONE)
    (bin_dir / "airflow").chmod(0o755)
    token = secrets.token_hex(4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {"BIN": str(bin_dir), "AIRFLOW_HOME": str(home), "AIRFLOW_STOP_GRACE_S": str(GRACE_S)}
    )
    env[TAG] = token
    log = tmp_path / "airflow_local.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", str(SCRIPT)], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path
        )
    try:
        deadline = time.monotonic() + 20
        # script, standalone, sleep, the SIGTERM-proof loop (+ its sleep), the python child
        while len(tagged(token)) < 5 or not (home / "standalone.env").is_file():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"children not started: {tagged(token)}"
            time.sleep(0.1)
        time.sleep(0.3)  # the python child's setpgid
        started = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(timeout=15)
        took = time.monotonic() - started
    finally:
        left = leftovers(token, wait_s=0)
        if proc.poll() is None:
            proc.kill()
    print(f"{sig.name}: script exited {code} after {took:.1f} s")
    assert not left, f"still running after the script exited: {left}\n{log.read_text()}"
    assert code == 128 + sig
    assert took < GRACE_S + 3
    assert "killing what ignored SIGTERM" in log.read_text()
    standalone_env = (home / "standalone.env").read_text().splitlines()
    assert "AIRFLOW__API__HOST=127.0.0.1" in standalone_env

"""Helpers of the browser tests: constants, child servers on free ports, the registry record."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO
from tests.processes import stop_group

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MODEL_NAME = "btc-forecaster-e2e"
SCREENSHOTS = REPO / "reports" / "e2e"


@dataclass
class ChildServer:
    """A server we start as a child process (own process group), output sent to a log file."""

    name: str
    args: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    ready_path: str
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def running(self) -> bool:
        """Whether the child is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Spawn the child; `wait_ready` blocks until it answers."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args,
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout_s: float = 240.0) -> None:
        """Poll `ready_path` until it answers 200; fail with the log's tail if the child dies."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                pytest.fail(f"{self.name} exited early:\n{self.tail()}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        pytest.fail(f"{self.name} not ready on {self.url} after {timeout_s:.0f} s:\n{self.tail()}")

    def ensure_running(self) -> None:
        """Start (again) if a previous test stopped it."""
        if not self.running():
            self.start()
            self.wait_ready()

    def stop(self) -> None:
        """SIGTERM the child's process group, SIGKILL after 15 s."""
        if self.proc is None:
            return
        stop_group(self.proc)
        self.proc = None

    def tail(self, lines: int = 40) -> str:
        """The end of the child's log."""
        text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class E2eRegistry:
    """A private MLflow store: v1 = persistence (@champion, first-champion), v2 = tiny torch
    model (@challenger, refused by the promotion rule for `refusal`)."""

    root: Path
    uri: str
    name: str
    run_ids: dict[int, str]
    data_version: str
    dvc_md5: str
    git_sha: str
    refusal: str

    @property
    def gradio_temp(self) -> Path:
        """The UI's GRADIO_TEMP_DIR: uploads would leave directories here."""
        return self.root / "gradio-tmp"

    @property
    def log_url(self) -> str:
        """The API's prediction log (SQLite), where the Live tab's scores are read from."""
        return f"sqlite:///{self.root / 'predictions.db'}"

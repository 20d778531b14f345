"""A fresh copy of the repository (what a clone holds), and `dvc`/`coinflow` run inside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_REMOTE = (REPO.parent / "shared" / "dvc-remote").resolve()


def fresh_copy(dest: Path) -> Path:
    """Tracked and unignored files only: no data, no outputs, no dvc.lock or metrics."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    for generated in ("dvc.lock", "metrics"):  # a clone made before any repro has neither
        target = dest / generated
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    return dest


def copy_env(work: Path, state: Path) -> dict[str, str]:
    """Env for commands in the copy: it is the project root; MLflow and Optuna live in `state`."""
    bin_dir = str(Path(sys.executable).parent)
    store = f"sqlite:///{state / 'mlflow.db'}"
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_TRACKING_URI": store,
        "MLFLOW_REGISTRY_URI": store,  # never an MLFLOW_REGISTRY_URI an earlier test left
        "COINFLOW_ARTIFACT_ROOT": str(state / "mlartifacts"),
        "COINFLOW_OPTUNA_STORAGE": str(state / "optuna.log"),
        "COINFLOW_PROGRESS": "0",
        "COINFLOW_WORKDIR": str(work),  # the copy is the project root (the venv's code is shared)
    }


def run(args: list[str], cwd: Path, env: dict[str, str], ok: bool = True) -> str:
    """Run a command in the copy; its stdout + stderr (asserting success unless ok=False)."""
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if ok:
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def pulled_copy(dest: Path, state: Path) -> tuple[Path, dict[str, str]]:
    """A fresh copy made a git repo, with data/raw pulled from the shared DVC remote."""
    work = fresh_copy(dest)
    env = copy_env(work, state)
    run(["git", "init", "-q"], work, env)
    run(["dvc", "remote", "modify", "--local", "shared", "url", str(SHARED_REMOTE)], work, env)
    run(["dvc", "pull", "-q", "data.dvc"], work, env)  # stage outputs are rebuilt, never pushed
    return work, env

"""50-trial sweep on v0.3: one worker on the default journal storage vs two workers on Postgres.

Each configuration runs the real command (`python -m pipelines.sweep`, the dvc stage) in its own
throwaway project root with a fresh MLflow store, so the wall time includes process start-up,
the parent run, every trial's child run and the winner's pyfunc. The Postgres database is
created for the run and dropped afterwards.

    .venv/bin/python benchmarks/sweep_speed.py [--n-trials 50] [--pg SERVER_URL]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.processes import pg_database  # noqa: E402  (needs REPO on sys.path)


def timed_sweep(
    root: Path, n_trials: int, workers: int, storage: str | None, study_name: str | None = None
) -> dict[str, Any]:
    """Run the sweep stage as a user would; returns its metrics/sweep.json plus wall seconds."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlruns.db'}",
        "COINFLOW_ARTIFACT_ROOT": str(root / "mlartifacts"),
        "COINFLOW_PROGRESS": "0",
        "COINFLOW_OPTUNA_STORAGE": str(root / "optuna" / "journal.log"),
        "COINFLOW_WORKDIR": str(root),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "PYTHONWARNINGS": "ignore",
    }
    cmd = [
        sys.executable,
        "-m",
        "cli.main",
        "sweep",
        "--n-trials",
        str(n_trials),
        "--workers",
        str(workers),
        *(["--storage", storage] if storage else []),
        *(["--study-name", study_name] if study_name else []),
    ]
    started = time.perf_counter()
    with open(root / "sweep.log", "w") as log:
        done = subprocess.run(
            cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
        )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"sweep failed ({done.returncode}):\n" + (root / "sweep.log").read_text()[-3000:]
        )
    return {**json.loads((root / "metrics" / "sweep.json").read_text()), "wall_s": wall}


def trial_stats(storage: Any, name: str) -> dict[str, Any]:
    """Seconds spent inside trials, and each trial's params (to replay them elsewhere)."""
    import optuna

    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    seconds = [t.duration.total_seconds() for t in trials if t.duration is not None]
    return {
        "trial_s": sum(seconds),
        "max_trial_s": max(seconds),
        "params": [t.params for t in trials],
    }


def main() -> None:
    import optuna

    from benchmarks.workspace import build_workspace
    from core.params import load_params
    from pipelines.sweep.storage import open_storage

    parser = argparse.ArgumentParser()
    parser.add_argument("--n-trials", type=int, default=50)
    parser.add_argument("--pg", default="postgresql+psycopg2://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = build_workspace(Path(tmp) / "w1")
        res = timed_sweep(root, args.n_trials, 1, None)
        journal = open_storage(str(root / "optuna" / "journal.log"))
        results["1 worker, journal file"] = {**res, **trial_stats(journal, res["study_name"])}
        root = build_workspace(Path(tmp) / "w2")
        with pg_database(args.pg, "bench") as url:
            res = timed_sweep(root, args.n_trials, 2, url)
            results["2 workers, Postgres"] = {**res, **trial_stats(url, res["study_name"])}
        # The same trials in both: TPE adapts to what it has seen, so two sweeps sample
        # different (cheaper or dearer) models; replaying the 1-worker trials isolates speed.
        root = build_workspace(Path(tmp) / "w2r")
        with pg_database(args.pg, "bench") as url:
            study = optuna.create_study(study_name="replay", storage=url, direction="minimize")
            for params in results["1 worker, journal file"]["params"]:
                study.enqueue_trial(params)
            res = timed_sweep(root, args.n_trials, 2, url, study_name="replay")
            results["2 workers, same trials"] = {**res, **trial_stats(url, "replay")}
        sweep = load_params(root / "params.yaml").sweep
        baseline = json.loads((root / "metrics" / "baseline.json").read_text())
    print(
        f"{args.n_trials}-trial sweep on v0.3, {os.cpu_count()} CPUs; space "
        f"{sweep.space.model_dump()}, max_epochs {sweep.max_epochs}"
    )
    print(
        f"{'configuration':<24} {'wall s':>7} {'in trials s':>11} {'max trial s':>11} "
        f"{'complete':>8} {'pruned':>6} {'failed':>6} {'best val':>9} {'test MASE':>9} "
        f"{'test MAE $':>10}"
    )
    for label, r in results.items():
        print(
            f"{label:<24} {r['wall_s']:7.1f} {r['trial_s']:11.1f} {r['max_trial_s']:11.1f} "
            f"{r['n_complete']:8d} {r['n_pruned']:6d} {r['n_failed']:6d} "
            f"{r['best_val_loss']:9.5f} {r['test_mase']:9.3f} {r['test_mae']:10.1f}"
        )
    one, two, same = (r["wall_s"] for r in results.values())
    print(f"persistence test MAE ${baseline['test']['mae']:.1f} (MASE 1.000 by definition)")
    print(
        f"1 worker: {one:.1f} s (target <= 120 s); 2 workers: {two:.1f} s ({one / two:.2f}x); "
        f"2 workers on the 1-worker trials: {same:.1f} s ({one / same:.2f}x, target >= 1.7x)"
    )
    for label, r in results.items():
        print(f"best trial ({label}): #{r['best_trial']} {r['best_params']}")


if __name__ == "__main__":
    main()

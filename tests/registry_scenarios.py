"""Shared set-up for the registry tests (embedded store and `mlflow server`): trained runs,
a corrupt copy of a model, and two promoter processes racing on one registry."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.paths import Project
from registry.policy import Policy

POLICY = Policy(margin=0.01, max_mase=1.0)  # params.yaml's registry block


@dataclass(frozen=True)
class TrainedRuns:
    """Runs in the current tracking store: a sweep parent, its good child, a weaker model."""

    parent: str
    good: str  # MASE ~0.89 on syn-ar1's test split
    medium: str  # MASE ~0.95: beats persistence, not the good one
    experiment_id: str


def train_runs(ws: Path) -> TrainedRuns:
    """Two tiny RNNs trained on syn-ar1 (a fake sweep parent for the good one), pyfuncs logged."""
    import mlflow

    from core.tracking import configure_mlflow
    from pipelines.training.tracked_run import tracked_training
    from pipelines.training.train import load_training_data
    from tests.params import train_params

    experiment_id = configure_mlflow()
    proj = Project(ws)
    data = load_training_data(proj.features)
    with mlflow.start_run(run_name="sweep-parent", tags={"coinflow.kind": "sweep"}) as parent:
        good = tracked_training(
            train_params(hidden_size=8, max_epochs=3, lookback=10, lr=1e-2),
            data,
            run_name="good",
            nested=True,
            proj=proj,
        )
    medium = tracked_training(
        train_params(hidden_size=8, max_epochs=2, lookback=10, lr=1e-3),
        data,
        run_name="medium",
        proj=proj,
    )
    assert good.status == medium.status == "FINISHED"
    assert good.metrics["test_mase"] < medium.metrics["test_mase"] - 0.02
    assert medium.metrics["test_mase"] < 0.98
    return TrainedRuns(parent.info.run_id, good.run_id, medium.run_id, experiment_id)


def broken_copy_run(run_id: str) -> str:
    """A new run (same lineage tags) whose `model` is the given run's with garbage weights."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.get_run(run_id)
    (logged,) = client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=logged.artifact_location, dst_path=tmp)
        )
        (local / "artifacts" / "weights.pt").write_bytes(b"this is not a torch state dict")
        tags = {k: v for k, v in run.data.tags.items() if k.startswith("coinflow.")}
        with mlflow.start_run(run_name="broken", tags=tags) as broken:
            mlflow.log_artifacts(str(local), "model")
        shutil.rmtree(local, ignore_errors=True)
    return str(broken.info.run_id)


def _promote_worker(name: str, ws: str, version: int, barrier: Any, results: Any) -> None:
    """One promoter process: score, wait until the other has scored too, then commit."""
    from registry.promote import promote
    from registry.scoring import load_eval_set
    from registry.store import open_registry

    try:
        registry = open_registry(name)
        eval_set = load_eval_set(Project(Path(ws)))

        def on_scored(attempt: int) -> None:
            if attempt == 1:  # both processes scored against the same champion: now race
                barrier.wait(timeout=120)

        out = promote(registry, eval_set, POLICY, version, on_scored=on_scored)
        results.put(
            {
                "version": version,
                "promoted": out.decision.promote,
                "attempts": out.attempts,
                "before": out.champion_before,
                "after": out.champion_after,
                "pid": os.getpid(),
            }
        )
    except BaseException as exc:  # report, never hang the parent
        results.put({"version": version, "error": f"{type(exc).__name__}: {exc}"})


def race_promotions(name: str, ws: Path, versions: tuple[int, int]) -> list[dict[str, Any]]:
    """Promote two versions at once: one in a fresh child process, one in this process (which
    has everything imported already); their results, the first committer first."""
    ctx = mp.get_context("spawn")  # a fresh interpreter: no SQLite connection shared by fork
    barrier, results = ctx.Barrier(2), ctx.Queue()
    child = ctx.Process(target=_promote_worker, args=(name, str(ws), versions[1], barrier, results))
    child.start()
    try:
        _promote_worker(name, str(ws), versions[0], barrier, results)
        out = [results.get(timeout=240) for _ in range(2)]
    finally:
        child.join(timeout=60)
        if child.is_alive():
            child.kill()
    errors = [r for r in out if "error" in r]
    assert not errors, errors
    assert {r["pid"] for r in out} == {os.getpid(), child.pid}  # two processes raced
    return sorted(out, key=lambda r: r["attempts"])


def check_race(
    client: Any, name: str, out: list[dict[str, Any]], seed: int, good: int, medium: int
) -> None:
    """Both scored against `seed`; the one that committed second saw the move and re-scored.

    Whatever the order, the good model ends champion and previous-champion is the version it
    actually replaced (a lost update would leave the weaker model champion, or point
    previous-champion at a version that was never replaced)."""
    first, second = out
    assert (first["attempts"], second["attempts"]) == (1, 2), out
    assert first["before"] == seed and first["promoted"]
    assert second["before"] == first["after"]  # compare-and-set saw the first commit
    aliases = {a: int(v) for a, v in client.get_registered_model(name).aliases.items()}
    assert aliases["champion"] == good
    from registry.records import latest_decision
    from registry.store import Registry

    decided = latest_decision(Registry(name, client), good)
    assert decided is not None and aliases["previous-champion"] == decided["champion_before"]
    from registry.lock import lock_name

    assert not client.search_registered_models(f"name = '{lock_name(name)}'")  # released
    if first["version"] == good:  # medium re-scored against good and was refused
        assert not second["promoted"] and aliases["previous-champion"] == seed
    else:  # medium won the lock; good re-scored against it and still won
        assert second["promoted"] and aliases["previous-champion"] == medium


# MlflowClient methods that write to the store: the fault injector counts calls to them.
WRITES = (
    "create_registered_model",
    "delete_registered_model",
    "set_registered_model_alias",
    "delete_registered_model_alias",
    "set_model_version_tag",
    "update_model_version",
    "create_run",
    "set_terminated",
    "update_run",
    "set_tag",
    "log_batch",
    "log_param",
    "log_metric",
    "log_artifact",
    "log_text",
    "log_dict",
)


KILL_PRELOAD = ["mlflow", "registry.promote", "registry.scoring", "registry.store"]


def _killed_promote(
    name: str, ws: str, version: int, kill_at: int, env: dict[str, str], results: Any
) -> None:
    """Promote `version`, dying on the spot (os._exit: no finally, no lock release) at the
    `kill_at`-th write to the MLflow store; reports how many writes a whole promotion makes."""
    os.environ.clear()
    os.environ.update(env)  # the test's environment (the fork server's may be older)
    from mlflow import MlflowClient

    from registry.promote import promote
    from registry.scoring import load_eval_set
    from registry.store import open_registry

    count = {"writes": 0}

    def injected(method: Any) -> Any:
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            count["writes"] += 1
            if count["writes"] == kill_at:
                os._exit(137)
            return method(self, *args, **kwargs)

        return write

    for method in WRITES:
        setattr(MlflowClient, method, injected(getattr(MlflowClient, method)))
    registry = open_registry(name)
    eval_set = load_eval_set(Project(Path(ws)))
    count["writes"] = 0  # count the promotion's own writes only
    out = promote(registry, eval_set, POLICY, version)
    results.put({"completed": True, "writes": count["writes"], "promoted": out.decision.promote})


def killed_promotion(name: str, ws: Path, version: int, kill_at: int) -> dict[str, Any] | None:
    """Run `_killed_promote` in a fresh process; its report, or None when it was killed.

    The process is forked from a fork server that imported MLflow and the registry once (no
    SQLite connection of this process is shared), so each of the many kills costs no imports."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(KILL_PRELOAD)
    results = ctx.Queue()
    args = (name, str(ws), version, kill_at, dict(os.environ), results)
    child = ctx.Process(target=_killed_promote, args=args)
    child.start()
    child.join(timeout=240)
    if child.is_alive():
        child.kill()
        raise AssertionError(f"promotion killed at write {kill_at} hung")
    if child.exitcode == 137:
        return None
    assert child.exitcode == 0, child.exitcode
    report: dict[str, Any] = results.get(timeout=10)
    return report

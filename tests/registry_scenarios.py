"""Shared set-up for the registry tests (embedded store and `mlflow server`): trained runs,
a corrupt copy of a model, and two promoter processes racing on one registry."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
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


def _own_connections() -> None:
    """First thing in a forked child: talk to the store over connections of its own. The
    SQLAlchemy engines MLflow cached before the fork (one per store URI, tracking and registry)
    get new, empty pools (`dispose(close=False)`, SQLAlchemy's recipe for a fork: the parent's
    connections stay open, for the parent), and MLflow's cached HTTP sessions (one per server)
    are dropped, so no kept-alive socket is shared. MLflow private names: an upgrade that renames
    them fails here, loudly. Torch runs single-threaded: OpenMP pools do not survive a fork."""
    import torch
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore
    from mlflow.utils import request_utils

    for engine in [*TrackingStore._engine_map.values(), *RegistryStore._engine_map.values()]:
        engine.dispose(close=False)
    request_utils._cached_get_request_session.cache_clear()
    torch.set_num_threads(1)


def _forked(target: Callable[..., None], *args: Any) -> None:
    _own_connections()
    target(*args)


def start_forked(target: Callable[..., None], *args: Any) -> BaseProcess:
    """Run `target(*args)` in a child forked from this process: a real separate process (its own
    pid, its own store connections, killable) that starts with MLflow, torch and the registry
    already imported and warm, instead of paying a fresh interpreter's seconds of imports."""
    child = mp.get_context("fork").Process(target=_forked, args=(target, *args))
    child.start()
    return child


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
    """Promote two versions at once: one in a forked child process, one in this process; their
    results, the first committer first."""
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    child = start_forked(_promote_worker, name, str(ws), versions[1], barrier, results)
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


def _killed_promote(name: str, ws: str, version: int, kill_at: int, results: Any) -> None:
    """Promote `version`, SIGKILLed on the spot (no finally, no lock release) just before
    its `kill_at`-th write to the MLflow store; reports the writes a whole promotion makes, in
    order. A write made inside another (log_dict stores through log_artifact) is part of it."""
    from mlflow import MlflowClient

    from registry.promote import promote
    from registry.scoring import load_eval_set
    from registry.store import open_registry

    writes: list[str] = []
    inside = [False]

    def injected(name: str, method: Any) -> Any:
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            if inside[0]:
                return method(self, *args, **kwargs)
            writes.append(name)
            if len(writes) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            inside[0] = True
            try:
                return method(self, *args, **kwargs)
            finally:
                inside[0] = False

        return write

    for method in WRITES:  # patched in this child only: the parent's MlflowClient is untouched
        setattr(MlflowClient, method, injected(method, getattr(MlflowClient, method)))
    registry = open_registry(name)
    eval_set = load_eval_set(Project(Path(ws)))
    writes.clear()  # count the promotion's own writes only
    out = promote(registry, eval_set, POLICY, version)
    results.put({"completed": True, "writes": writes, "promoted": out.decision.promote})


def killed_promotion(name: str, ws: Path, version: int, kill_at: int) -> dict[str, Any] | None:
    """Run `_killed_promote` in a forked child process; its report, or None when it was killed."""
    results = mp.get_context("fork").Queue()
    child = start_forked(_killed_promote, name, str(ws), version, kill_at, results)
    child.join(timeout=240)
    if child.is_alive():
        child.kill()
        raise AssertionError(f"promotion killed at write {kill_at} hung")
    if child.exitcode == -signal.SIGKILL:
        return None
    assert child.exitcode == 0, child.exitcode
    report: dict[str, Any] = results.get(timeout=10)
    return report

"""The registry against the embedded store (SQLite + local artifacts): register, persistence
champion, fair re-score, promote, refuse, rollback, lineage, bad input, concurrent promoters."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from core.paths import Project
from registry.errors import (
    LineageError,
    LockTimeoutError,
    ModelLoadError,
    NothingToDoError,
    UnknownVersionError,
)
from registry.policy import Policy
from registry.promote import promote
from registry.records import latest_decision
from registry.scoring import EvalSet, load_eval_set
from registry.store import Registry, aliases
from tests.registry_scenarios import (
    POLICY,
    TrainedRuns,
    broken_copy_run,
    check_race,
    race_promotions,
    train_runs,
)

pytestmark = [pytest.mark.model, pytest.mark.slow]  # a trained registry per module
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One embedded store for the module (trained runs are reused); each test its own model."""
    root = tmp_path_factory.mktemp("registry-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MLFLOW_REGISTRY_URI", uri)
        mp.setenv("COINFLOW_ARTIFACT_ROOT", str(root / "mlartifacts"))
        mp.setenv("COINFLOW_EXPERIMENT", "coinflow")
        mp.setenv("COINFLOW_PROGRESS", "0")
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        yield uri


@pytest.fixture(scope="module")
def runs(store: str, learnable_workspace: Path) -> TrainedRuns:
    return train_runs(learnable_workspace)


@pytest.fixture(scope="module")
def eval_set(learnable_workspace: Path) -> EvalSet:
    return load_eval_set(Project(learnable_workspace))


@pytest.fixture
def registry(runs: TrainedRuns, request: pytest.FixtureRequest) -> Registry:
    """A registered model of its own for each test (versions point at the shared runs)."""
    from registry.store import open_registry

    return open_registry("btc-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40])


def seed(registry: Registry, eval_set: EvalSet, ws: Path) -> int:
    from registry.register import ensure_champion

    return ensure_champion(registry, eval_set, Project(ws))


def test_register_seed_and_promote(
    registry: Registry, eval_set: EvalSet, runs: TrainedRuns, learnable_workspace: Path
) -> None:
    from registry.register import register_run

    good = register_run(registry, runs.good)
    assert register_run(registry, runs.good) == good  # idempotent
    model_version = registry.client.get_model_version(registry.name, str(good))
    tags = model_version.tags
    assert model_version.run_id == runs.good  # the run, and through it the sweep parent and params
    run = registry.client.get_run(model_version.run_id)
    assert run.data.tags["mlflow.parentRunId"] == runs.parent
    assert tags["coinflow.data_version"] == "syn-ar1" and tags["coinflow.dvc_md5"] == eval_set.md5
    assert tags["coinflow.ge_status"] == "success" and tags["coinflow.git_sha"]
    assert run.data.params["hidden_size"] == "8"
    assert tags["coinflow.median"] == run.data.params["median"] == "learned"
    assert len(tags) <= 9  # a few searchable tags, not a wall of them
    assert aliases(registry) == {"challenger": good}

    persistence = seed(registry, eval_set, learnable_workspace)
    assert aliases(registry) == {"challenger": good, "champion": persistence}
    assert (
        registry.client.get_model_version(registry.name, str(persistence)).tags["coinflow.kind"]
        == "persistence"
    )

    out = promote(registry, eval_set, POLICY)
    assert out.decision.promote, out.decision.reason
    assert (out.champion_before, out.champion_after, out.attempts) == (persistence, good, 1)
    assert aliases(registry) == {"champion": good, "previous-champion": persistence}
    # Fair re-score: same rows as the training run's own test split, persistence exactly 1.
    assert out.decision.champion is not None and out.decision.champion.mase == 1.0
    assert out.decision.baseline.mase == 1.0
    assert out.decision.challenger.mase == pytest.approx(
        float(tags["coinflow.test_mase"]), abs=1e-4
    )
    # ... and its intervals as the training run scored them: the same calibrator, from the
    # state the version shipped, day by day over the same test days.
    assert out.decision.challenger.crps == pytest.approx(
        float(tags["coinflow.test_crps"]), rel=1e-4
    )
    decided = latest_decision(registry, good)
    assert decided is not None and decided["promoted"] is True
    assert decided["champion_before"] == persistence  # the version it replaced
    assert decided["rule"] == POLICY.rule
    described = registry.client.get_model_version(registry.name, str(good))
    assert described.tags["coinflow.decision"] == "promoted"
    text = described.description
    # MLflow's version list shows the first line: a plain sentence, not a markdown heading.
    assert text.splitlines()[0].startswith(f"v{good} was promoted to champion on ")
    assert text.splitlines()[0].endswith(f", replacing v{persistence}.")
    assert POLICY.rule in text and "#" not in text.splitlines()[0]
    # The Scores table holds every number the rule looks at, per role (not three MAE rows).
    assert "| role | version | kind | CRPS $ | 80% covers | 95% covers | MASE |" in text
    challenger = out.decision.challenger
    assert (
        f"| challenger | v{good} | torch | {challenger.crps:.2f} | "
        f"{challenger.coverage_80:.1%} | {challenger.coverage_95:.1%} | {challenger.mase:.4f} |"
    ) in text
    assert f"| champion | v{persistence} | persistence |" in text and "| baseline | - |" in text
    from registry.records import read_record

    record = read_record(registry, out.record_run_id)
    assert record["promoted"] and record["champion"]["version"] == persistence
    assert record["challenger"]["mase"] == pytest.approx(out.decision.challenger.mase)
    assert record["eval"]["data_version"] == "syn-ar1" and record["reason"]


def test_records_have_their_own_experiment_and_old_ones_are_still_read(
    registry: Registry, eval_set: EvalSet, runs: TrainedRuns, learnable_workspace: Path
) -> None:
    from core import tags
    from registry.records import alias_moves, decisions_experiment, read_record, record_runs

    persistence = seed(registry, eval_set, learnable_workspace)  # a first-champion record
    own = decisions_experiment(registry)
    assert own is not None and own != registry.experiment_id
    assert registry.client.get_experiment(own).name == "coinflow-decisions"
    (new,) = record_runs(registry)
    assert new.info.experiment_id == own
    training = registry.client.search_runs(
        [registry.experiment_id],
        f"tags.`{tags.KIND}` = '{tags.RECORD_KIND}' and tags.`{tags.MODEL_NAME}` = "
        f"'{registry.name}'",
    )
    assert training == []  # the training experiment lists training runs and sweeps only
    # A record as an older coinflow wrote it: in the training experiment, read as before.
    old = registry.client.create_run(
        registry.experiment_id,
        start_time=new.info.start_time - 60_000,
        tags={
            tags.KIND: tags.RECORD_KIND,
            tags.ACTION: "rollback",
            tags.MODEL_NAME: registry.name,
            tags.MODEL_VERSION: str(persistence),
        },
    )
    old_id = old.info.run_id
    registry.client.log_dict(
        old_id, {"action": "rollback", "version": persistence}, "promotion/decision-x.json"
    )
    registry.client.set_terminated(old_id, "FINISHED")
    assert [r.info.run_id for r in record_runs(registry)] == [new.info.run_id, old_id]
    assert [m["record_run_id"] for m in alias_moves(registry)] == [old_id, new.info.run_id]
    assert read_record(registry, old_id)["action"] == "rollback"


def test_worse_challenger_is_refused_and_aliases_stay(
    registry: Registry, eval_set: EvalSet, runs: TrainedRuns, learnable_workspace: Path
) -> None:
    from registry.register import register_run

    seed(registry, eval_set, learnable_workspace)
    good = register_run(registry, runs.good)
    assert promote(registry, eval_set, POLICY).decision.promote
    medium = register_run(registry, runs.medium)
    before = aliases(registry)
    out = promote(registry, eval_set, POLICY)
    assert not out.decision.promote
    assert "not below champion" in out.decision.reason
    assert aliases(registry) == before
    assert (before["champion"], before["challenger"]) == (good, medium)
    decided = latest_decision(registry, medium)
    assert decided is not None and decided["promoted"] is False
    assert decided["champion_before"] == good
    text = registry.client.get_model_version(registry.name, str(medium)).description
    first = text.splitlines()[0]
    assert first.startswith(f"v{medium} was refused on ") and first.endswith(f"stays v{good}.")
    assert f"**Reason.** {out.decision.reason}" in text


def test_rollback_restores_previous_champion(
    registry: Registry, eval_set: EvalSet, runs: TrainedRuns, learnable_workspace: Path
) -> None:
    from registry.aliases import rollback
    from registry.register import register_run

    persistence = seed(registry, eval_set, learnable_workspace)
    with pytest.raises(NothingToDoError, match="previous-champion"):
        rollback(registry)
    good = register_run(registry, runs.good)
    promote(registry, eval_set, POLICY)
    out = rollback(registry, "test: good model misbehaves")
    assert (out.from_version, out.to_version) == (good, persistence)
    assert aliases(registry) == {"champion": persistence, "previous-champion": good}
    decided = latest_decision(registry, persistence)
    assert decided is not None and decided["action"] == "rollback"
    assert decided["champion_before"] == good
    assert decided["reason"] == "test: good model misbehaves"
    run = registry.client.get_run(out.record_run_id)
    assert run.data.tags["coinflow.action"] == "rollback"


def test_bad_input_is_refused_with_aliases_untouched(
    registry: Registry, eval_set: EvalSet, runs: TrainedRuns, learnable_workspace: Path
) -> None:
    from registry.register import register_run

    seed(registry, eval_set, learnable_workspace)
    good = register_run(registry, runs.good)
    promote(registry, eval_set, POLICY)
    source = registry.client.get_model_version(registry.name, str(good)).source
    by_hand = int(registry.client.create_model_version(registry.name, source, runs.good).version)
    broken = register_run(registry, broken_copy_run(runs.good))
    before = aliases(registry)
    assert before["challenger"] == broken
    with pytest.raises(NothingToDoError, match=f"v{good} is already the champion"):
        promote(registry, eval_set, POLICY, good)
    with pytest.raises(UnknownVersionError, match="has no version 99"):
        promote(registry, eval_set, POLICY, 99)
    with pytest.raises(LineageError, match=r"lacks lineage tags \['coinflow.kind'"):
        promote(registry, eval_set, POLICY, by_hand)
    with pytest.raises(ModelLoadError, match=f"v{broken} failed to load"):
        promote(registry, eval_set, POLICY, broken)
    with pytest.raises(LineageError, match=f"run {runs.parent} lacks lineage tags"):
        register_run(registry, runs.parent)  # the sweep parent: no lineage, no model
    good_tags = registry.client.get_run(runs.good).data.tags
    lineage_only = registry.client.create_run(
        runs.experiment_id, tags={k: v for k, v in good_tags.items() if k.startswith("coinflow.")}
    )
    registry.client.set_terminated(lineage_only.info.run_id)
    with pytest.raises(ModelLoadError, match="has no `model` pyfunc"):
        register_run(registry, lineage_only.info.run_id)
    assert aliases(registry) == before
    for version in (by_hand, broken):
        tags = registry.client.get_model_version(registry.name, str(version)).tags
        assert not any(k.startswith("coinflow.decision") for k in tags)
        assert latest_decision(registry, version) is None


def test_ge_failed_data_is_refused(
    registry: Registry, eval_set: EvalSet, runs: TrainedRuns, learnable_workspace: Path
) -> None:
    from registry.register import register_run

    seed(registry, eval_set, learnable_workspace)
    version = register_run(registry, runs.medium)
    registry.client.set_model_version_tag(
        registry.name, str(version), "coinflow.ge_status", "failed"
    )
    before = aliases(registry)
    with pytest.raises(LineageError, match="did not pass the Great Expectations gate"):
        promote(registry, eval_set, POLICY, version)
    assert aliases(registry) == before


def test_batched_scores_equal_pyfunc_predict(
    registry: Registry, eval_set: EvalSet, runs: TrainedRuns
) -> None:
    from registry.register import register_run
    from registry.scoring import served_quantiles, windowed_quantiles
    from registry.store import load_packaged

    py = load_packaged(registry, register_run(registry, runs.good))
    part = dataclasses.replace(
        eval_set,
        dates=eval_set.dates[:25],
        close=eval_set.close[:25],
        next_close=eval_set.next_close[:25],
        positions=eval_set.positions[:25],
    )
    batched = served_quantiles(py, part)  # torch float32, one batch, day by day calibration
    one_by_one = windowed_quantiles(py, part)  # MLflow predict(), NumPy float64, state advanced
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-7)
    assert np.abs(batched[:, py.median]).max() > 1e-4  # a real forecast, not persistence's 0
    assert (np.diff(batched, axis=1) >= 0).all()


def test_concurrent_promotions_end_consistent(
    registry: Registry, eval_set: EvalSet, runs: TrainedRuns, learnable_workspace: Path
) -> None:
    from registry.register import register_run

    persistence = seed(registry, eval_set, learnable_workspace)
    good, medium = register_run(registry, runs.good), register_run(registry, runs.medium)
    out = race_promotions(registry.name, learnable_workspace, (good, medium))
    check_race(registry.client, registry.name, out, persistence, good, medium)


def test_a_promotion_killed_at_any_write_leaves_a_complete_or_absent_record(
    registry: Registry, eval_set: EvalSet, runs: TrainedRuns, learnable_workspace: Path
) -> None:
    """SIGKILL the promoting process (a forked child) just before each of its writes
    to the store in turn, until a promotion completes before the kill point: the next promotion
    takes the dead holder's lock over at once, repairs the record, and every version's decision
    tags point at a complete record that agrees with the aliases.

    Every write is a distinct point of the protocol (registry.aliases), so each is a kill point:
    lock created; record run created; its JSON (log_dict); its scores (log_batch); previous-
    champion moved; champion moved (between the two, the aliases are half-moved); description;
    decision tag; record FINISHED; decision pointer tag; lock deleted."""
    import time

    from registry.aliases import expected_aliases, rollback
    from registry.records import record_runs
    from registry.register import register_run
    from tests.registry_scenarios import killed_promotion

    persistence = seed(registry, eval_set, learnable_workspace)
    good = register_run(registry, runs.good)
    kill_at, killed = 1, 0
    while True:
        report = killed_promotion(registry.name, learnable_workspace, good, kill_at)
        started = time.monotonic()
        try:  # the next promotion, as a user would run it
            promote(registry, eval_set, POLICY, good)
        except NothingToDoError:  # killed after the aliases moved: repaired, nothing left to do
            pass
        assert time.monotonic() - started < 30  # the dead holder's lock was taken over
        now = aliases(registry)
        assert now["champion"] == good, (kill_at, now)
        assert not record_runs(registry, status="RUNNING"), kill_at  # none left unfinished
        for version in (good, persistence):
            decided = latest_decision(registry, version)
            if decided is not None:  # a pointer always leads to a complete, applied record
                assert decided["action"] and decided["decided_at"] and decided["reason"]
                assert decided["record_run_id"]
        final = latest_decision(registry, good)
        assert final is not None and final["promoted"] is True, kill_at
        assert {a: now.get(a) for a in expected_aliases(final)} == expected_aliases(final)
        if report is not None:  # the whole promotion ran before the kill point: all covered
            assert report["completed"] and kill_at > len(report["writes"])
            writes: list[str] = report["writes"]
            break
        killed += 1
        rollback(registry, reason=f"fault-injection reset after write {kill_at}")
        assert aliases(registry)["champion"] == persistence
        kill_at += 1
    assert killed >= 6, killed
    assert killed == len(writes)  # killed before every write a whole promotion makes
    assert set(writes) >= {  # ... which include every step of the protocol
        "create_registered_model",  # the lock
        "create_run",  # the RUNNING record
        "log_dict",  # its JSON
        "set_registered_model_alias",
        "set_model_version_tag",  # the decision, then the pointer to the record
        "set_terminated",  # the record FINISHED
        "delete_registered_model",  # the lock released
    }, writes


def test_lock_is_exclusive_and_expires(registry: Registry) -> None:
    from core.tags import LOCK_EXPIRES as EXPIRES_TAG
    from registry.lock import RegistryLock, lock_name

    with RegistryLock(registry.client, registry.name) as held:
        waiter = RegistryLock(registry.client, registry.name, timeout_s=0.5, poll_s=0.1)
        with pytest.raises(LockTimeoutError, match=f"pid {os.getpid()} since"):
            waiter.acquire()
        held.verify()
    assert not registry.client.search_registered_models(f"name = '{lock_name(registry.name)}'")
    # A holder that died: its lock expired, the next promoter breaks it.
    RegistryLock(registry.client, registry.name, ttl_s=60).acquire()
    registry.client.set_registered_model_tag(
        lock_name(registry.name), EXPIRES_TAG, f"{time.time() - 1}"
    )
    with RegistryLock(registry.client, registry.name, timeout_s=5) as breaker:
        breaker.verify()


def test_persistence_gate_on_real_data(
    runs: TrainedRuns, real_versions: Path, features_v03: Path, tmp_path: Path
) -> None:
    """Real BTC v0.3: a tiny RNN's point forecast is within noise of tomorrow = today, so the
    mase rule keeps persistence; the crps rule judges its intervals by its own clauses."""
    import mlflow

    from core.files import file_md5
    from core.params import load_params
    from pipelines.gate.validate import outcome_record, validate_version
    from pipelines.training.tracked_run import tracked_training
    from pipelines.training.train import load_training_data
    from registry.policy import should_promote
    from registry.register import ensure_champion, register_run
    from registry.scoring import baseline_score, score_model
    from registry.store import load_packaged, open_registry
    from tests.params import train_params

    params = load_params(REPO / "params.yaml")
    path = real_versions / "v0.3.parquet"
    frame = pd.read_parquet(path)
    gate = validate_version(
        frame, "v0.3", params.data.versions["v0.3"], params.validate_, tmp_path / "docs"
    )
    proj = Project(tmp_path)
    proj.params_file.write_text((REPO / "params.yaml").read_text())
    proj.metrics.mkdir()
    proj.versions.parent.mkdir()
    proj.versions.symlink_to(real_versions)
    proj.features.symlink_to(features_v03)
    proj.metrics_file("validation").write_text(
        json.dumps({"v0.3": outcome_record(gate, file_md5(path))}, default=str)
    )
    mlflow.set_experiment(experiment_id=runs.experiment_id)
    run = tracked_training(
        train_params(hidden_size=8, max_epochs=2, lookback=10, lr=1e-3),
        load_training_data(features_v03),
        run_name="real-tiny",
        proj=proj,
    )
    registry = open_registry("btc-real-v03")
    eval_set = load_eval_set(proj)
    version = register_run(registry, run.run_id)
    persistence = ensure_champion(registry, eval_set, proj)
    out = promote(
        registry, eval_set, POLICY
    )  # the point rule: its median is within noise of persistence
    assert not out.decision.promote and "not below champion" in out.decision.reason
    assert out.decision.challenger.mase > 1.0 - POLICY.margin
    # The crps rule judges its bands instead; whatever it decides, it decides by its clauses on
    # the same rows for both, with the Diebold-Mariano test over every test day recorded.
    crps_rule = Policy.from_params(params.registry.model_copy(update={"metric": "crps"}))
    decision = should_promote(
        score_model(load_packaged(registry, version), eval_set, version),
        score_model(load_packaged(registry, persistence), eval_set, persistence),
        baseline_score(eval_set),
        crps_rule,
    )
    c, champ = decision.challenger, decision.champion
    assert champ is not None
    assert champ.crps == pytest.approx(decision.baseline.crps)  # persistence is the baseline
    beats = c.crps < (1 - crps_rule.margin) * champ.crps
    # The DM test runs (over every test day) once the challenger's CRPS clears the margin.
    assert (decision.dm is not None) == beats
    assert decision.dm is None or decision.dm.n == len(eval_set.dates)
    clauses = (
        beats,
        decision.dm is not None and decision.dm.p_value < crps_rule.alpha,
        abs(c.coverage_80 - 0.8) <= crps_rule.coverage_tol,
        abs(c.coverage_95 - 0.95) <= crps_rule.coverage_tol,
        c.mase <= crps_rule.max_mase,
    )
    assert decision.promote == all(clauses), decision.reason
    assert aliases(registry) == {"champion": persistence, "challenger": version}


def test_cli_and_promote_stage(
    runs: TrainedRuns,
    learnable_workspace: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`coinflow registry release` in a project root, then status / lineage / rollback CLI."""
    from cli.main import app
    from registry.flow import release as main

    shutil.copytree(learnable_workspace, tmp_path, dirs_exist_ok=True)
    (tmp_path / "metrics" / "sweep.json").write_text(
        json.dumps({"parent_run_id": runs.parent, "best_run_id": runs.good, "best_trial": 0})
    )
    monkeypatch.setenv("COINFLOW_WORKDIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    main()
    summary = json.loads((tmp_path / "metrics" / "promotion.json").read_text())
    assert summary["promoted"] and summary["champion_before"] is not None
    assert summary["challenger_mase"] < 0.95 and summary["baseline_mase"] == 1.0
    caplog.set_level(logging.INFO, logger="registry")
    caplog.clear()
    main()  # `dvc repro` again: nothing new registered, nothing moved
    again = json.loads((tmp_path / "metrics" / "promotion.json").read_text())
    # The log names the version each line is about: registering v3, the EWMA baseline's line
    # says it is v2's decision (not "v2: already judged" as if v2 were being registered).
    said = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith(
            f"btc-forecaster v2 (EWMA baseline, judged before registering run {runs.good})"
        )
        for m in said
    ), said
    assert f"run {runs.good} is already btc-forecaster v3: not registered again" in said
    assert f"btc-forecaster v3 (run {runs.good}) is the champion" in said
    assert not again["promoted"] and "already the champion" in again["reason"]
    assert again["champion_after"] == summary["champion_after"]

    cli = CliRunner()
    status = cli.invoke(app, ["registry", "status"])
    assert status.exit_code == 0, status.output
    # v1 persistence (the first champion), v2 the EWMA baseline (judged, refused), v3 the sweep's
    v = summary["champion_after"]
    assert v == 3, summary
    assert "btc-forecaster: champion v3, previous-champion v1" in status.output
    assert re.search(r"v3\s+champion\s+torch\s+syn-ar1", status.output)
    assert re.search(r"v2\s+-\s+ewma\s+syn-ar1", status.output), status.output
    lineage = cli.invoke(app, ["registry", "lineage", "champion"])
    assert lineage.exit_code == 0, lineage.output
    for needle in (
        runs.good,
        runs.parent,
        "syn-ar1",
        "matches data/versions/syn-ar1.parquet",
        "PASS",
        "promoted at",
    ):
        assert needle in lineage.output
    refused = cli.invoke(app, ["registry", "promote", "--version", "42"])
    assert refused.exit_code == 1 and "refused: " in refused.output
    assert "has no version 42" in refused.output
    rolled = cli.invoke(app, ["registry", "rollback", "--reason", "cli test"])
    assert rolled.exit_code == 0 and "champion v3 -> v1" in rolled.output

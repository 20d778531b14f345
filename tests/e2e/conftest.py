"""Browser-test fixtures: Debian's Chromium, the API and UI as child servers, a tiny registry."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, need_service
from tests.e2e.e2e_helpers import CHROMIUM, CHROMIUM_ARGS, MODEL_NAME, ChildServer, E2eRegistry


def _install_chromium(log: Path) -> None:
    """`apt-get install chromium` (Debian, ~20 s) when the test machine lacks it and we are root."""
    if CHROMIUM.is_file() or shutil.which("apt-get") is None or os.geteuid() != 0:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with log.open("wb") as out:
        subprocess.run(
            "apt-get update -qq && apt-get install -y -qq chromium",
            shell=True,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
            check=False,
        )


@pytest.fixture(scope="module")  # sync Playwright holds an event loop: end it with the module
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright (never `playwright install`)."""
    _install_chromium(tmp_path_factory.mktemp("apt") / "apt.log")
    need_service(CHROMIUM.is_file(), f"Chromium at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser page (own context: no state shared between tests)."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def e2e_registry(
    tmp_path_factory: pytest.TempPathFactory, features_v03: Path, real_versions: Path
) -> E2eRegistry:
    """The registry as the promote flow leaves it: persistence the first champion (v1), then a
    tiny model (2 epochs, v2) registered as challenger and refused by the real rule."""
    import mlflow
    from mlflow import MlflowClient

    from core.params import load_params
    from core.tracking import TrackingSettings, configure_mlflow, lineage_tags
    from pipelines.training.tracked_run import tracked_training
    from pipelines.training.train import load_training_data
    from registry.policy import Policy
    from registry.promote import promote
    from registry.register import ensure_champion, register_run
    from registry.scoring import load_eval_set
    from registry.store import Registry
    from tests.params import train_params
    from tests.project import linked_project

    root = tmp_path_factory.mktemp("e2e_registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_REGISTRY_URI": uri,
            "COINFLOW_ARTIFACT_ROOT": str(root / "mlartifacts"),
            "COINFLOW_EXPERIMENT": "coinflow-e2e",
        }.items():
            mp.setenv(key, value)
        mp.delenv("MLFLOW_EXPERIMENT_ID", raising=False)  # set_experiment exports it: restore
        experiment_id = configure_mlflow(
            TrackingSettings(
                mlflow_tracking_uri=uri,
                coinflow_artifact_root=str(root / "mlartifacts"),
                coinflow_experiment="coinflow-e2e",
            )
        )
        proj = linked_project(root / "project", features_v03, real_versions)
        data = load_training_data(features_v03)
        params = train_params(hidden_size=8, max_epochs=2, lookback=10)
        outcome = tracked_training(
            params,
            data,
            run_name="e2e-tiny",
            proj=proj,
        )
        assert outcome.status == "FINISHED", outcome
        lineage = lineage_tags(data.version, data.md5, proj)
        client = MlflowClient()
        registry = Registry(MODEL_NAME, client, experiment_id)
        eval_set = load_eval_set(proj)
        persistence_v = ensure_champion(registry, eval_set, proj)  # a first-champion record
        torch_v = register_run(registry, outcome.run_id)  # @challenger
        # The linked project holds no gate record (runs say ge_status=failed); v0.3 passes it.
        client.set_model_version_tag(MODEL_NAME, str(torch_v), "coinflow.ge_status", "success")
        policy = Policy.from_params(load_params(proj.params_file).registry)
        judged = promote(registry, eval_set, policy, torch_v)
        assert not judged.decision.promote, "the 2-epoch model must be refused (tests rely on it)"
        persistence_run = client.get_model_version(MODEL_NAME, str(persistence_v)).run_id
        # Leave no global MLflow state behind for later tests in this process.
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
        mlflow.tracking.fluent._active_experiment_id = None
    return E2eRegistry(
        root,
        uri,
        MODEL_NAME,
        {persistence_v: str(persistence_run), torch_v: outcome.run_id},
        data.version,
        data.md5,
        lineage["coinflow.git_sha"],
        judged.decision.reason,
    )


def _child_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("COINFLOW_", "MLFLOW_"))
    }  # nothing leaks from the test's shell
    return {
        **env,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "DVC_NO_ANALYTICS": "1",
        "COINFLOW_PREDICTION_LOG_URL": "",  # off unless a child is given one (the API is)
        **extra,
    }


@pytest.fixture(scope="module")
def servers(
    e2e_registry: E2eRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ChildServer, ChildServer]]:
    """`coinflow serve` over the e2e registry and `coinflow ui` pointed at it, started together."""
    logs = tmp_path_factory.mktemp("e2e_logs")
    cli = [sys.executable, "-m", "cli.main"]
    api_port, ui_port = free_port(), free_port()
    # cwd is a tmp dir: no repository .env can change the children's settings
    api = ChildServer(
        "API",
        [*cli, "serve", "--host", "127.0.0.1", "--port", str(api_port), "--log-level", "warning"],
        _child_env(
            MLFLOW_TRACKING_URI=e2e_registry.uri,
            MLFLOW_REGISTRY_URI=e2e_registry.uri,
            COINFLOW_MODEL_NAME=e2e_registry.name,
            COINFLOW_REFRESH_S="0",
            COINFLOW_PREDICTION_LOG_URL=e2e_registry.log_url,  # the Live tab reads it
            COINFLOW_WORKDIR=str(e2e_registry.root / "project"),  # the Compare tab's test days
        ),
        e2e_registry.root,
        api_port,
        "/ready",
        logs / "api.log",
    )
    ui = ChildServer(
        "UI",
        [*cli, "ui", "--host", "127.0.0.1", "--port", str(ui_port)],
        _child_env(
            COINFLOW_API_URL=api.url,
            COINFLOW_API_TIMEOUT_S="15",
            COINFLOW_MLFLOW_UI_URL="http://mlflow.e2e.invalid:5000",
            GRADIO_TEMP_DIR=str(e2e_registry.gradio_temp),  # where uploads would land
        ),
        logs,
        ui_port,
        "/",
        logs / "ui.log",
    )
    try:
        api.start()
        ui.start()
        api.wait_ready()
        ui.wait_ready()
        yield api, ui
    finally:
        ui.stop()
        api.stop()


@pytest.fixture
def live_history(e2e_registry: E2eRegistry) -> Iterator[list[str]]:
    """Six days of live scores in the API's log (v1 champion, v2 shadowed) and two real guarded
    rollbacks after v1's first-champion record in the registry's audit trail (v1 → v2 → v1,
    aliases as they were afterwards); yields the labels the Live tab should give those moves."""
    import datetime as dt

    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from registry.aliases import rollback
    from registry.store import Registry
    from serving import log_database
    from serving.monitoring import monitor

    today = dt.datetime.now(dt.UTC).date()
    scores = pd.DataFrame(
        [
            {
                "version": v,
                "role": role,
                "step": 1,
                "window": "30d",
                "day": day,
                "n": 10 + i,
                "mae": 800.0,
                "persistence_mae": 815.0,
                "mase": mase + i / 100,
                "coverage_80": 0.8,
                "coverage_95": 0.95,
                "pinball": 150.0,
                "crps": 600.0,
            }
            for v, role, mase in ((1, "champion", 0.98), (2, "shadow", 1.0))
            for i, day in enumerate(today - dt.timedelta(days=d) for d in range(5, -1, -1))
        ]
    )
    engine = log_database.engine_for(e2e_registry.log_url)
    log_database.migrate(engine)
    monitor.write_scores(engine, e2e_registry.name, scores)
    engine.dispose()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        mlflow.set_tracking_uri(e2e_registry.uri)
        mlflow.set_registry_uri(e2e_registry.uri)
        client = MlflowClient()
        experiment = client.get_experiment_by_name("coinflow-e2e")
        assert experiment is not None
        registry = Registry(e2e_registry.name, client, experiment.experiment_id)
        client.set_registered_model_alias(registry.name, "previous-champion", "2")
        rollback(registry, reason="e2e: the Live tab marks it")
        rollback(registry, reason="e2e: and back")
        client.set_registered_model_alias(registry.name, "challenger", "2")  # a rollback clears it
        client.delete_registered_model_alias(registry.name, "previous-champion")
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    # The first-champion record (e2e_registry) is a champion move too.
    yield [
        f"v1 first champion on {today}",
        f"rolled back to v2 on {today}",
        f"rolled back to v1 on {today}",
    ]

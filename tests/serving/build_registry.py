"""Builds the serving tests' MLflow store in its own process (MLflow's global URIs stay out of
pytest's): two tiny trained forecasters + persistence, registered under several model names
with coinflow's version tags and aliases, a sweep with trials, and reference forecasts computed
by each pyfunc's own predict() (the pandas path) for the API to match.

    python tests/serving/build_registry.py ROOT FEATURES_DIR VERSIONS_DIR NAME [NAME ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

NAMES_ALIASES = {"champion": 1, "challenger": 2, "baseline": 3}
REPO = Path(__file__).resolve().parents[2]


def main(root: Path, features_dir: Path, versions_dir: Path, names: list[str]) -> None:
    import mlflow
    import torch
    from mlflow import MlflowClient

    from core import tags
    from core.paths import Project
    from core.tracking import TrackingSettings, configure_mlflow
    from forecasting.forecast import input_frame
    from pipelines.training.tracked_run import tracked_training
    from pipelines.training.train import load_training_data
    from registry.lineage import version_tags_from_run
    from registry.register import baseline_run
    from registry.scoring import load_eval_set
    from registry.store import Registry
    from tests.params import train_params

    torch.set_num_threads(1)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    experiment_id = configure_mlflow(
        TrackingSettings(
            mlflow_tracking_uri=uri,
            coinflow_artifact_root=str(root / "mlartifacts"),
            coinflow_experiment="serving-tests",
        )
    )
    data = load_training_data(features_dir)
    proj = Project(root)  # data/ points at the shared features and versions; no gate record
    proj.features.parent.mkdir(parents=True, exist_ok=True)
    proj.features.symlink_to(features_dir)
    proj.versions.symlink_to(versions_dir)
    trained: dict[str, tuple[str, dict[str, Any]]] = {}
    for key, train in {
        "a": train_params(hidden_size=8, max_epochs=2, lookback=10),
        "b": train_params(hidden_size=8, max_epochs=2, lookback=12, seed=7, cell="gru"),
    }.items():
        outcome = tracked_training(
            train,
            data,
            run_name=f"tiny-{key}",
            proj=proj,
        )
        assert outcome.status == "FINISHED", outcome
        trained[key] = (outcome.run_id, train.model_dump())
    # The persistence baseline exactly as the promote flow logs it (empirical quantiles
    # calibrated on the version's validation days), from the repository's params.yaml.
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    registry = Registry(names[0], MlflowClient(), experiment_id)
    trained["p"] = (baseline_run(registry, load_eval_set(proj), "persistence", proj), {})

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    sources = [("a", "torch"), ("b", "torch"), ("p", "persistence")]
    for name in names:
        for key, kind in sources:
            run_id, _ = trained[key]
            model_version = mlflow.register_model(f"runs:/{run_id}/model", name)
            for tag, value in version_tags_from_run(client.get_run(run_id), kind).items():
                client.set_model_version_tag(name, model_version.version, tag, value)
        for alias, version in NAMES_ALIASES.items():
            client.set_registered_model_alias(name, alias, str(version))
    if "stale-code" in names:  # a version built by other model code (see serving_helpers)
        client.set_model_version_tag("stale-code", "2", tags.CODE, "0123456789ab")

    # Reference forecasts from each pyfunc's own predict() on its shipped rows.
    references: dict[str, Any] = {}
    for version, (key, _) in enumerate(sources, start=1):
        pyfunc = mlflow.pyfunc.load_model(f"models:/{names[0]}/{version}")
        py = pyfunc.unwrap_python_model().model
        frame = input_frame(py.recent_rows).tail(py.rows_needed).reset_index(drop=True)
        references[str(version)] = {
            "run_id": trained[key][0],
            "rows_needed": py.rows_needed,
            "recent_rows": py.recent_rows.to_dict(orient="records"),
            "forecasts": {
                str(h): pyfunc.predict(frame, params={"horizon": h}).to_dict("records")
                for h in (1, 7)
            },
        }

    # A sweep as pipelines.sweep records it: parent run + trial child runs (no training).
    sweep_tags = {"coinflow.kind": "sweep", "coinflow.study_name": "serving-sweep"}
    with mlflow.start_run(run_name="sweep", tags=sweep_tags) as parent:
        for number, (cell, hidden) in enumerate([("gru", 16), ("lstm", 32), ("rnn", 8)]):
            with mlflow.start_run(
                run_name=f"trial-{number}",
                nested=True,
                tags={"coinflow.kind": "trial", "coinflow.trial_number": str(number)},
            ):
                mlflow.log_params(
                    {
                        "cell": cell,
                        "hidden_size": hidden,
                        "num_layers": 1,
                        "lookback": 10 + number,
                        "lr": 0.001 * (number + 1),
                    }
                )
                mlflow.log_metrics(
                    {"best_val_loss": 0.5 + number / 10, "test_mase": 0.99 + number / 100}
                )

    manifest = {
        "uri": uri,
        "names": names,
        "versions": references,
        "sweep_parent": parent.info.run_id,
        "data_version": data.version,
        "dvc_md5": data.md5,
        "git_sha": client.get_run(trained["a"][0]).data.tags["coinflow.git_sha"],
    }
    (root / "manifest.json").write_text(json.dumps(manifest, default=str))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])

"""How a model version is packaged: a models-from-code pyfunc that ships its kernel.

A logged model holds JSON and state_dict files only (config.json, recent_rows.json and, for a
torch model, weights.pt: never a pickle), the pyfunc entry file pyfunc_model.py, and as its
`code_paths` exactly the `forecasting` kernel it was trained with. forecasting.packaged reads
those files back; whoever serves the version does so with the kernel it shipped (core.kernels).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.fingerprint import KERNEL_DIR
from core.paths import Project, project
from forecasting.features import INPUT_COLUMNS
from forecasting.forecast import input_frame
from forecasting.packaged import quantile_columns

if TYPE_CHECKING:
    from mlflow.models import ModelSignature
    from mlflow.models.model import ModelInfo

    from forecasting.network import Forecaster
    from forecasting.packaged import PackagedModel

ENTRY = Path(__file__).with_name("pyfunc_model.py")
RECENT_ROWS = 400  # raw rows shipped with each model: the baselines read 366
# Pinned explicitly: inferring them makes MLflow load the model in a subprocess (~4 s a log).
REQUIREMENTS = ("mlflow", "numpy", "pandas", "scipy")


def signature_for(input_example: pd.DataFrame, levels: tuple[float, ...]) -> ModelSignature:
    """Input rows → forecasts (date, median close, each level's close), with `horizon`."""
    from mlflow.models import infer_signature

    next_day = pd.Timestamp(input_example["date"].iloc[-1]) + pd.Timedelta(days=1)
    output = pd.DataFrame(
        {"date": [next_day.strftime("%Y-%m-%d")], "close": [1.0]}
        | {c: [1.0] for c in quantile_columns(levels)}
    )
    return infer_signature(input_example, output, params={"horizon": 1})


def pip_requirements(torch_model: bool) -> list[str]:
    """The model's pip requirements, pinned to the installed versions."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in (*REQUIREMENTS, *("torch",) * torch_model)]


def version_rows(version: str, proj: Project | None = None) -> pd.DataFrame:
    """Every raw input row of a dataset version (the platform's rows), indexed by date."""
    return pd.read_parquet((proj or project()).version_file(version))[INPUT_COLUMNS]


def recent_rows(version: str, proj: Project | None = None, n: int = RECENT_ROWS) -> pd.DataFrame:
    """The latest raw rows of a dataset version, as the pyfunc's input (date as ISO string)."""
    frame = version_rows(version, proj).tail(n)
    return frame.reset_index().assign(date=lambda f: f["date"].dt.strftime("%Y-%m-%d"))


def packaged_in_memory(
    config: dict[str, Any], rows: pd.DataFrame, net: Forecaster | None = None
) -> PackagedModel:
    """The version `log_packaged` would log, as its kernel loads it (no files written)."""
    from forecasting.packaged import PackagedModel, build_model

    records = input_frame(rows).to_dict(orient="records")
    weights = None if net is None else net.state_dict()
    return PackagedModel(config, records, build_model(config, weights))


def log_packaged(
    config: dict[str, Any], rows: pd.DataFrame, name: str = "model", net: Forecaster | None = None
) -> ModelInfo:
    """Log a version to the active run: its JSON config, latest raw rows, the network's
    state_dict (torch models) and the kernel folder as code."""
    import mlflow

    rows = input_frame(rows)
    example = rows.tail(int(config["lookback"]) + 1).reset_index(drop=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = {"config": Path(tmp) / "config.json", "recent_rows": Path(tmp) / "recent_rows.json"}
        files["config"].write_text(json.dumps(config, indent=2, default=str))
        files["recent_rows"].write_text(json.dumps(rows.to_dict(orient="records")))
        if net is not None:
            import torch

            files["weights"] = Path(tmp) / "weights.pt"
            torch.save(net.state_dict(), files["weights"])
        info: ModelInfo = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(ENTRY),
            artifacts={k: str(v) for k, v in files.items()},
            code_paths=[str(KERNEL_DIR)],
            pip_requirements=pip_requirements(torch_model=net is not None),
            signature=signature_for(example, tuple(config["levels"])),
            input_example=example,
        )
    return info

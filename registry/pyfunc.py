"""Models-from-code pyfuncs: a torch forecaster (state_dict + JSON, no pickle) and persistence."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.models.model import ModelInfo
from mlflow.pyfunc import PythonModel, PythonModelContext

from pipelines.features import Scaler
from pipelines.forecast import InputRowsError, check_rows, forecast_closes, input_frame

MODELS_DIR = Path(__file__).with_name("models")
# Pinned explicitly: inferring them makes MLflow load the model in a subprocess (~4 s a log).
REQUIREMENTS = ("mlflow", "numpy", "pandas", "pydantic", "pyyaml")
CODE_PATHS = [str(Path(__file__).resolve().parents[1] / pkg) for pkg in ("pipelines", "registry")]


def _as_rows(model_input: pd.DataFrame) -> pd.DataFrame:
    return model_input.assign(date=pd.to_datetime(model_input["date"]))


def _output(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(date=frame["date"].dt.strftime("%Y-%m-%d"))


class CoinflowModel(PythonModel):
    """Shared loading: the JSON config and the version's latest raw rows shipped with the model."""

    def load_context(self, context: PythonModelContext) -> None:
        self.config = json.loads(Path(context.artifacts["config"]).read_text())
        records = json.loads(Path(context.artifacts["recent_rows"]).read_text())
        self.recent_rows = input_frame(records)

    @property
    def rows_needed(self) -> int:
        """Raw daily rows one forecast reads: lookback windows need one extra day for returns."""
        return int(self.config["lookback"]) + 1


class TorchForecaster(CoinflowModel):
    """Next-day BTC close (USD) from the latest raw daily rows; `horizon` steps recursively."""

    def load_context(self, context: PythonModelContext) -> None:
        import torch

        from pipelines.model import Forecaster, ModelConfig

        super().load_context(context)
        self.scaler = Scaler(**self.config["scaler"])
        self.net = Forecaster(ModelConfig(**self.config["model"]))
        state = torch.load(context.artifacts["weights"], weights_only=True, map_location="cpu")
        self.net.load_state_dict(state)
        self.net.eval()

    def predict_returns(self, windows: np.ndarray) -> np.ndarray:
        """Scaled next-day log returns for a batch of scaled windows."""
        import torch

        with torch.inference_mode():
            return self.net(torch.from_numpy(windows)).numpy()

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        horizon = int((params or {}).get("horizon", 1))
        return _output(
            forecast_closes(
                self.predict_returns,
                self.scaler,
                self.config["lookback"],
                _as_rows(model_input),
                horizon,
            )
        )


class PersistenceForecaster(CoinflowModel):
    """The naive baseline: every future close equals the latest close."""

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        horizon = int((params or {}).get("horizon", 1))
        if not 1 <= horizon <= 30:
            raise InputRowsError(f"horizon must be between 1 and 30, got {horizon}")
        rows = check_rows(_as_rows(model_input), self.rows_needed)
        dates = rows.index[-1] + pd.to_timedelta(np.arange(1, horizon + 1), unit="D")
        last = float(rows["btc_close"].iloc[-1])
        return _output(pd.DataFrame({"date": dates, "close": [last] * horizon}))


def signature_for(input_example: pd.DataFrame) -> ModelSignature:
    """Input rows → forecasts (date, close), with the `horizon` inference parameter."""
    next_day = pd.Timestamp(input_example["date"].iloc[-1]) + pd.Timedelta(days=1)
    output = pd.DataFrame({"date": [next_day.strftime("%Y-%m-%d")], "close": [1.0]})
    return infer_signature(input_example, output, params={"horizon": 1})


def pip_requirements(torch_model: bool) -> list[str]:
    """The model's pip requirements, pinned to the installed versions."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in (*REQUIREMENTS, *("torch",) * torch_model)]


def _log(
    code_file: str, config: dict[str, Any], rows: pd.DataFrame, extra: dict[str, Path], name: str
) -> ModelInfo:
    """Log a models-from-code pyfunc whose artifacts are JSON/state_dict files (never pickle)."""
    rows = input_frame(rows)
    example = rows.tail(config["lookback"] + 1).reset_index(drop=True)
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "config.json"
        config_path.write_text(json.dumps(config, indent=2, default=str))
        rows_path = Path(tmp) / "recent_rows.json"
        rows_path.write_text(json.dumps(rows.to_dict(orient="records")))
        artifacts = {"config": config_path, "recent_rows": rows_path, **extra}
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(MODELS_DIR / code_file),
            artifacts={k: str(v) for k, v in artifacts.items()},
            code_paths=CODE_PATHS,
            pip_requirements=pip_requirements(torch_model="weights" in extra),
            signature=signature_for(example),
            input_example=example,
        )


def log_forecaster(
    net: Any, config: dict[str, Any], rows: pd.DataFrame, name: str = "model"
) -> ModelInfo:
    """Log a trained Forecaster: state_dict (torch.save, loaded weights_only) + JSON config."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.pt"
        torch.save(net.state_dict(), weights)
        return _log("forecaster.py", config, rows, {"weights": weights}, name)


def log_persistence(config: dict[str, Any], rows: pd.DataFrame, name: str = "model") -> ModelInfo:
    """Log the persistence baseline as a pyfunc with the same input schema."""
    return _log("persistence.py", config, rows, {}, name)

"""Models-from-code pyfuncs: a torch forecaster (state_dict + JSON, no pickle) and persistence.

Every coinflow model forecasts on arrays (`forecast_arrays`, the serving hot path) and scores a
whole test window at once (`next_day_returns`); `predict` is MLflow's DataFrame face of the same
arithmetic. Which code runs a registered version is checked by its code fingerprint
(registry.store.check_code) before it is ever loaded.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.pyfunc import PythonModel, PythonModelContext

from pipelines.features import CLOSE, Scaler, features_array, make_windows
from pipelines.forecast import (
    InputRowsError,
    check_arrays,
    check_horizon,
    forecast_arrays,
    input_frame,
    rows_to_arrays,
)

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

    from pipelines.model import Forecaster

MODELS_DIR = Path(__file__).with_name("models")
# Pinned explicitly: inferring them makes MLflow load the model in a subprocess (~4 s a log).
REQUIREMENTS = ("mlflow", "numpy", "pandas", "pydantic", "pyyaml")
CODE_PATHS = [str(Path(__file__).resolve().parents[1] / pkg) for pkg in ("pipelines", "registry")]


def _output(dates: np.ndarray, closes: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"date": np.datetime_as_string(dates, unit="D"), "close": closes})


class CoinflowModel(PythonModel):
    """Shared loading: the JSON config and the version's latest raw rows shipped with the model."""

    def load_context(self, context: PythonModelContext) -> None:
        self.config: dict[str, Any] = json.loads(Path(context.artifacts["config"]).read_text())
        records = json.loads(Path(context.artifacts["recent_rows"]).read_text())
        self.recent_rows = input_frame(records)

    @property
    def kind(self) -> str:
        """torch | persistence (the `coinflow.kind` it is registered as)."""
        return str(self.config.get("kind", "torch"))

    @property
    def rows_needed(self) -> int:
        """Raw daily rows one forecast reads: lookback windows need one extra day for returns."""
        return int(self.config["lookback"]) + 1

    def recent_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The shipped rows as (dates datetime64[D], values float64)."""
        return rows_to_arrays(self.recent_rows)

    def forecast_arrays(
        self, dates: np.ndarray, values: np.ndarray, horizon: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """`horizon` next-day closes (USD) after the latest `rows_needed` rows."""
        raise NotImplementedError

    def next_day_returns(self, values: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """The next-day log return forecast at each row index in `ends` of a raw-row array."""
        raise NotImplementedError

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        horizon = int((params or {}).get("horizon", 1))
        dates, values = rows_to_arrays(input_frame(model_input))
        return _output(*self.forecast_arrays(dates, values, horizon))


class TorchForecaster(CoinflowModel):
    """Next-day BTC close (USD) from the latest raw daily rows; `horizon` steps recursively."""

    def load_context(self, context: PythonModelContext) -> None:
        import torch

        from pipelines.model import Forecaster, ModelConfig

        super().load_context(context)
        self.scaler = Scaler(**self.config["scaler"])
        self.lookback = int(self.config["lookback"])
        self.net = Forecaster(ModelConfig(**self.config["model"]))
        state = torch.load(context.artifacts["weights"], weights_only=True, map_location="cpu")
        self.net.load_state_dict(state)
        self.net.eval()

    def predict_returns(self, windows: np.ndarray) -> np.ndarray:
        """Scaled next-day log returns for a batch of scaled windows."""
        import torch

        with torch.inference_mode():
            out: np.ndarray = self.net(torch.from_numpy(windows)).numpy()
        return out

    def forecast_arrays(
        self, dates: np.ndarray, values: np.ndarray, horizon: int
    ) -> tuple[np.ndarray, np.ndarray]:
        return forecast_arrays(
            self.predict_returns, self.scaler, self.lookback, dates, values, horizon
        )

    def next_day_returns(self, values: np.ndarray, ends: np.ndarray) -> np.ndarray:
        if len(ends) and ends.min() - self.lookback + 1 < 1:  # row 0 has no previous day
            raise InputRowsError(f"the first forecast day lacks {self.lookback} days of history")
        feats = np.vstack([np.full((1, values.shape[1]), np.nan), features_array(values)])
        windows = make_windows(self.scaler.transform(feats), self.lookback, ends).astype("float32")
        if not np.isfinite(windows).all():
            raise InputRowsError("a forecast window holds missing inputs")
        scaled = np.asarray(self.predict_returns(windows), dtype="float64")
        return np.asarray(self.scaler.target_from_scaled(scaled), dtype="float64")


class PersistenceForecaster(CoinflowModel):
    """The naive baseline: every future close equals the latest close."""

    def forecast_arrays(
        self, dates: np.ndarray, values: np.ndarray, horizon: int
    ) -> tuple[np.ndarray, np.ndarray]:
        check_horizon(horizon)
        dates, values = check_arrays(dates, values, self.rows_needed)
        out_dates = dates[-1] + np.arange(1, horizon + 1).astype("timedelta64[D]")
        return out_dates, np.full(horizon, values[-1, CLOSE])

    def next_day_returns(self, values: np.ndarray, ends: np.ndarray) -> np.ndarray:
        return np.zeros(len(ends))


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
        info: ModelInfo = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(MODELS_DIR / code_file),
            artifacts={k: str(v) for k, v in artifacts.items()},
            code_paths=CODE_PATHS,
            pip_requirements=pip_requirements(torch_model="weights" in extra),
            signature=signature_for(example),
            input_example=example,
        )
    return info


def log_forecaster(
    net: Forecaster, config: dict[str, Any], rows: pd.DataFrame, name: str = "model"
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

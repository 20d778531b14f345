"""Models-from-code pyfuncs: a torch forecaster (state_dict + JSON, no pickle) and the two
probabilistic baselines (persistence with empirical quantiles, EWMA volatility).

Every coinflow model forecasts quantiles of the next day's log return from raw daily rows
(`return_quantiles`, calibrated with conformal offsets fitted on validation rows). On top of
that one method: `forecast` gives the close quantiles of every forecast day (day 1 exact, later
days from seeded sampled paths: pipelines.forecast.forecast_quantiles), `next_day_quantiles`
scores a whole window of days at once, and `predict` is MLflow's DataFrame face of `forecast`.
Which code runs a registered version is checked by its code fingerprint
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

from pipelines.baselines import EmpiricalQuantiles, EwmaQuantiles
from pipelines.features import Scaler
from pipelines.forecast import (
    PATHS,
    forecast_quantiles,
    forecast_seed,
    input_frame,
    rows_to_arrays,
    windows_at,
)
from pipelines.quantiles import median_index

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

    from pipelines.model import Forecaster

MODELS_DIR = Path(__file__).with_name("models")
# Pinned explicitly: inferring them makes MLflow load the model in a subprocess (~4 s a log).
REQUIREMENTS = ("mlflow", "numpy", "pandas", "pydantic", "pyyaml", "scipy")
CODE_PATHS = [str(Path(__file__).resolve().parents[1] / pkg) for pkg in ("pipelines", "registry")]


def quantile_columns(levels: tuple[float, ...]) -> list[str]:
    """The output columns of `predict` holding each level's close (q0.025 ...)."""
    return [f"q{level:g}" for level in levels]


class CoinflowModel(PythonModel):
    """Shared loading: the JSON config and the version's latest raw rows shipped with the model."""

    def load_context(self, context: PythonModelContext) -> None:
        self.config: dict[str, Any] = json.loads(Path(context.artifacts["config"]).read_text())
        records = json.loads(Path(context.artifacts["recent_rows"]).read_text())
        self.recent_rows = input_frame(records)
        self.levels = tuple(float(t) for t in self.config["levels"])
        self.offsets = {float(k): float(v) for k, v in self.config.get("calibration", {}).items()}

    @property
    def kind(self) -> str:
        """torch | persistence | ewma (the `coinflow.kind` it is registered as)."""
        return str(self.config.get("kind", "torch"))

    @property
    def rows_needed(self) -> int:
        """Raw daily rows one forecast reads: lookback windows need one extra day for returns."""
        return int(self.config["lookback"]) + 1

    @property
    def median(self) -> int:
        return median_index(self.levels)

    def recent_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The shipped rows as (dates datetime64[D], values float64)."""
        return rows_to_arrays(self.recent_rows)

    def return_quantiles(self, windows: np.ndarray) -> np.ndarray:
        """(n, rows_needed, columns) raw rows → (n, levels) calibrated log-return quantiles."""
        raise NotImplementedError

    def forecast(
        self, dates: np.ndarray, values: np.ndarray, horizon: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(forecast dates, USD close quantiles (horizon, levels)) after the latest rows; the
        same rows always give the same bands (the path sampler is seeded by the rows read)."""
        seed = forecast_seed(
            self.kind, self.config.get("trained_at"), horizon, values=values[-self.rows_needed :]
        )
        return forecast_quantiles(self, dates, values, horizon, PATHS, seed)

    def next_day_quantiles(self, values: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Next-day log-return quantiles for each row index in `ends` of a raw-row array."""
        return self.return_quantiles(windows_at(values, ends, self.rows_needed))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        horizon = int((params or {}).get("horizon", 1))
        dates, closes = self.forecast(*rows_to_arrays(input_frame(model_input)), horizon)
        out = pd.DataFrame(closes, columns=quantile_columns(self.levels))
        out.insert(0, "close", closes[:, self.median])
        out.insert(0, "date", np.datetime_as_string(dates, unit="D"))
        return out


class TorchForecaster(CoinflowModel):
    """A trained Forecaster: windows → features → scaler → network → quantiles."""

    def load_context(self, context: PythonModelContext) -> None:
        import torch

        from pipelines.model import Forecaster, ModelConfig, NetQuantiles

        super().load_context(context)
        net = Forecaster(ModelConfig.from_dict(self.config["model"]))
        state = torch.load(context.artifacts["weights"], weights_only=True, map_location="cpu")
        net.load_state_dict(state)
        scaler = Scaler(**self.config["scaler"])
        self.model = NetQuantiles(net, scaler, int(self.config["lookback"]), self.offsets)

    def return_quantiles(self, windows: np.ndarray) -> np.ndarray:
        return self.model.return_quantiles(windows)


class PersistenceForecaster(CoinflowModel):
    """Persistence with the empirical quantiles of the trailing window's returns."""

    def load_context(self, context: PythonModelContext) -> None:
        super().load_context(context)
        self.model = EmpiricalQuantiles(self.levels, int(self.config["window"]), self.offsets)

    def return_quantiles(self, windows: np.ndarray) -> np.ndarray:
        return self.model.return_quantiles(windows)


class EwmaForecaster(CoinflowModel):
    """RiskMetrics EWMA volatility around persistence."""

    def load_context(self, context: PythonModelContext) -> None:
        super().load_context(context)
        self.model = EwmaQuantiles(
            self.levels, int(self.config["window"]), float(self.config["decay"]), self.offsets
        )

    def return_quantiles(self, windows: np.ndarray) -> np.ndarray:
        return self.model.return_quantiles(windows)


def signature_for(input_example: pd.DataFrame, levels: tuple[float, ...]) -> ModelSignature:
    """Input rows → forecasts (date, median close, each level's close), with `horizon`."""
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


def _log(
    code_file: str, config: dict[str, Any], rows: pd.DataFrame, extra: dict[str, Path], name: str
) -> ModelInfo:
    """Log a models-from-code pyfunc whose artifacts are JSON/state_dict files (never pickle)."""
    rows = input_frame(rows)
    example = rows.tail(int(config["lookback"]) + 1).reset_index(drop=True)
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
            signature=signature_for(example, tuple(config["levels"])),
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


BASELINE_FILES = {"persistence": "persistence.py", "ewma": "ewma.py"}


def log_baseline(config: dict[str, Any], rows: pd.DataFrame, name: str = "model") -> ModelInfo:
    """Log a baseline (config["kind"]: persistence | ewma) with the same input schema."""
    return _log(BASELINE_FILES[config["kind"]], config, rows, {}, name)

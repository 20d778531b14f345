"""Models-from-code entry: MLflow executes this file (never imported by coinflow) to build a
version's pyfunc. It delegates to the kernel found on the model's code path: the `forecasting`
folder that version shipped (pipelines.training.packaging)."""

from typing import Any

import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel, PythonModelContext


class CoinflowPyfunc(PythonModel):
    """MLflow's face of forecasting.packaged.PackagedModel: rows in, forecast days out."""

    def load_context(self, context: PythonModelContext) -> None:
        from forecasting.packaged import load_artifacts

        self.model = load_artifacts(context.artifacts)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return self.model.predict_frame(model_input, int((params or {}).get("horizon", 1)))


set_model(CoinflowPyfunc())

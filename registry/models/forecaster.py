"""Models-from-code entry: MLflow executes this file to build the torch forecaster pyfunc."""

from mlflow.models import set_model

from registry.pyfunc import TorchForecaster

set_model(TorchForecaster())

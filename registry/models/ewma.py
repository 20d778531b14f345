"""Models-from-code entry: MLflow executes this file to build the EWMA-volatility pyfunc."""

from mlflow.models import set_model

from registry.pyfunc import EwmaForecaster

set_model(EwmaForecaster())

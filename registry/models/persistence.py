"""Models-from-code entry: MLflow executes this file to build the persistence pyfunc."""

from mlflow.models import set_model

from registry.pyfunc import PersistenceForecaster

set_model(PersistenceForecaster())

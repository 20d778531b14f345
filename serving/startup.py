"""Background start-up of the API: build the model cache and load the default alias, retrying."""

from __future__ import annotations

import functools
import gc
import logging
import threading
from typing import TYPE_CHECKING

from core.tracking import quiet_mlflow
from registry.errors import RegistryError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from serving.prometheus import Metrics
    from serving.settings import ServingSettings

log = logging.getLogger(__name__)


def build_state(app: FastAPI, settings: ServingSettings) -> None:
    """Registry client and model cache for the app (MLflow is imported here, not at import);
    the cache reads calibration states from the prediction log's database when it is on."""
    import mlflow
    import torch

    # The running kernel, imported before any version loads (a version whose kernel differs
    # is served by its own shipped copy: core.kernels).
    import forecasting.packaged  # noqa: F401
    from serving import calibration_states
    from serving.cache import ModelCache
    from serving.registry_client import RegistryClient

    torch.set_num_threads(1)  # one small forecast per request: threads only contend
    quiet_mlflow()  # no artifact download bars in the server's log, one per version load
    settings.apply_mlflow_client_limits()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    metrics: Metrics = app.state.metrics
    client = RegistryClient.connect(
        settings.coinflow_model_name,
        settings.mlflow_tracking_uri,
        settings.registry_uri,
        settings.coinflow_registry_slots,
    )
    prediction_log = app.state.prediction_log
    states = None
    if prediction_log is not None:
        states = functools.partial(
            calibration_states.newest, prediction_log.engine, settings.coinflow_model_name
        )
    app.state.cache = ModelCache(
        client,
        settings.coinflow_cache_size,
        settings.coinflow_default_alias,
        on_change=metrics.alias_moved,
        states=states,
    )


class Startup:
    """Background start-up: build the model cache and load the default alias, retrying.

    The API answers /health at once and /ready says why it is not ready yet; a registry or
    database that is down only delays readiness (it is retried with back-off), and SIGTERM
    stops the process whatever the loader is waiting on (it runs in a daemon thread).
    """

    def __init__(self, app: FastAPI, settings: ServingSettings) -> None:
        self.app, self.settings = app, settings
        self.done = threading.Event()  # the first load attempt ended (model or not)
        self.stop = threading.Event()
        self.error: str | None = None
        self.thread = threading.Thread(target=self.run, name="model-loader", daemon=True)

    def run(self) -> None:
        delay = 1.0
        while not self.stop.is_set():
            try:
                if getattr(self.app.state, "cache", None) is None:
                    build_state(self.app, self.settings)
                self.app.state.cache.refresh()
                self.error = None
                break
            except RegistryError as exc:  # start anyway: /health answers, /ready says why
                self.error = str(exc)
                if getattr(self.app.state, "cache", None) is not None:
                    break  # the cache exists: the periodic refresh takes over from here
            except Exception as exc:  # a store that cannot even be opened (bad URI, DB down)
                self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            finally:
                self.done.set()
            log.warning("model API not ready, retrying in %.0f s: %s", delay, self.error)
            self.stop.wait(delay)
            delay = min(delay * 2, 30.0)
        # Start-up objects (modules, the model) are long-lived: keep them out of GC passes.
        gc.collect()
        gc.freeze()

"""Settings of the test's two Celery workers on one machine.

`hostname`, their `[core] hostname_callable`: the name in COINFLOW_WORKER_HOST. Two workers on
one host share its FQDN; each reports its own name instead, so the task instances show which
worker ran them (deployed, each worker's FQDN differs by itself).

`CELERY_CONFIG`, their `[celery] celery_config_options`: Airflow's default Celery config. The
worker imports this module once, before it forks its pool, and every task process is forked from
there: importing here the libraries the coinflow tasks import (each task again, ~3 s of a
quiet core) hands them to every task already loaded. Import-time work, on purpose: only the
workers name this module. With OpenMP and BLAS pinned to one thread (tests/conftest.py) the only
thread these imports start is jemalloc's background purger (pyarrow), which survives a fork.
"""

from __future__ import annotations

import importlib
import os

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

TASK_LIBRARIES = ("pandas", "torch", "mlflow", "optuna")

for _module in TASK_LIBRARIES:
    importlib.import_module(_module)

CELERY_CONFIG = DEFAULT_CELERY_CONFIG


def hostname() -> str:
    """This worker's name, as task instances record it."""
    return os.environ["COINFLOW_WORKER_HOST"]

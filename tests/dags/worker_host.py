"""`[core] hostname_callable` of the test's Celery workers: the name in COINFLOW_WORKER_HOST.

Two workers on one machine share its FQDN; each reports its own name instead, so the task
instances show which worker ran them (deployed, each worker's FQDN differs by itself).
"""

from __future__ import annotations

import os


def hostname() -> str:
    """This worker's name, as task instances record it."""
    return os.environ["COINFLOW_WORKER_HOST"]

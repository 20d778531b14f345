#!/bin/sh
# Entrypoint of the coinflow image: prepare per-container state from the environment, then
# exec the service's command (so it runs as PID 1's child of tini and gets the signals).
set -eu

# Airflow's SimpleAuthManager reads user passwords from a JSON file it must be able to write
# (it adds a generated password for any user missing there). Only the api-server gets
# AIRFLOW_ADMIN_PASSWORD; the file is rewritten at every start, so the password in .env rules.
if [ -n "${AIRFLOW_ADMIN_PASSWORD:-}" ]; then
    : "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?set AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE}"
    umask 077
    python - <<'PY'
import json
import os
from pathlib import Path

target = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
user = os.environ.get("AIRFLOW_ADMIN_USER") or "admin"
tmp = target.with_name(target.name + ".tmp")
tmp.write_text(json.dumps({user: os.environ["AIRFLOW_ADMIN_PASSWORD"]}) + "\n", encoding="utf-8")
tmp.replace(target)  # atomic: a reader never sees half a file
PY
fi

exec "$@"

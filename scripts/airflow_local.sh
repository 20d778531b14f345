#!/usr/bin/env bash
# `make airflow`: Airflow 3 (`airflow standalone`: api-server + scheduler + dag-processor +
# triggerer) on this machine, running the repo's DAGs: coinflow_fetch (dags/coinflow_fetch.py,
# daily: fetch exports from COINFLOW_DATA_SOURCE, cut + validate a version when new complete days
# arrived, emit the dataset Asset) and coinflow_train (dags/coinflow_train.py, on that Asset).
#   State: $AIRFLOW_HOME (default .airflow/, git-ignored) with SQLite metadata, a login of its
#   own and a JWT secret, all kept between runs. Port: AIRFLOW_PORT (default 8080).
#   The DAGs' stages run in the repo (COINFLOW_WORKDIR): MLflow store mlruns.db, Optuna journal
#   optuna/journal.log, unless MLFLOW_TRACKING_URI / COINFLOW_OPTUNA_STORAGE say otherwise.
# Stop with Ctrl-C.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$REPO/.venv/bin}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$REPO/.airflow}"
AIRFLOW_HOME="$(mkdir -p "$AIRFLOW_HOME" && cd "$AIRFLOW_HOME" && pwd)"
if [ "$AIRFLOW_HOME" = "$REPO" ]; then
    echo "AIRFLOW_HOME must not be the repository root (use .airflow/)" >&2
    exit 1
fi
[ -x "$BIN/airflow" ] || { echo "no $BIN/airflow: run \`make install\` first" >&2; exit 1; }
PORT="${AIRFLOW_PORT:-8080}"
USER_NAME="${AIRFLOW_ADMIN_USER:-admin}"

# A password and a JWT secret of our own, made once (umask: readable by this user only).
umask 077
PASSWORDS="$AIRFLOW_HOME/passwords.json"
if [ ! -s "$PASSWORDS" ]; then
    "$BIN/python" -c 'import json, secrets, sys; json.dump({sys.argv[1]: secrets.token_urlsafe(12)}, open(sys.argv[2], "w"))' \
        "$USER_NAME" "$PASSWORDS"
fi
[ -s "$AIRFLOW_HOME/jwt_secret" ] || "$BIN/python" -c 'import secrets; print(secrets.token_hex(48))' > "$AIRFLOW_HOME/jwt_secret"
PASSWORD="$("$BIN/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$PASSWORDS" "$USER_NAME")"

export AIRFLOW__CORE__DAGS_FOLDER="$REPO/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="$USER_NAME:admin"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$PASSWORDS"
export AIRFLOW__API_AUTH__JWT_SECRET="$(cat "$AIRFLOW_HOME/jwt_secret")"
export AIRFLOW__API__PORT="$PORT"
export AIRFLOW__API__BASE_URL="http://localhost:$PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://localhost:$PORT/execution/"
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"  # 2 sweep workers + slack
export COINFLOW_WORKDIR="${COINFLOW_WORKDIR:-$REPO}"
export DVC_NO_ANALYTICS=1 GIT_PYTHON_REFRESH=quiet PATH="$BIN:$PATH"

cat <<EOF
Airflow UI:  http://localhost:$PORT   (login: $USER_NAME / $PASSWORD)
DAGs:        coinflow_fetch (daily; exports from COINFLOW_DATA_SOURCE=${COINFLOW_DATA_SOURCE:-<unset>})
             -> Asset coinflow_dataset -> coinflow_train (sweep, register, promote)
             Both start paused: unpause them; trigger coinflow_train by hand with a data_version.
State:       $AIRFLOW_HOME (SQLite metadata, logs); stages run in $COINFLOW_WORKDIR
REST:        curl -s -X POST http://localhost:$PORT/auth/token -H 'Content-Type: application/json' \\
               -d '{"username": "$USER_NAME", "password": "$PASSWORD"}'
Stop:        Ctrl-C
EOF
exec "$BIN/airflow" standalone

#!/usr/bin/env bash
# `make airflow`: Airflow 3 (`airflow standalone`: api-server + scheduler + dag-processor +
# triggerer) on this machine, running the repo's DAGs: coinflow_fetch (dags/coinflow_fetch.py,
# daily: fetch exports from COINFLOW_DATA_SOURCE, cut + validate a version when new complete days
# arrived, emit the dataset Asset) and coinflow_train (dags/coinflow_train.py, on that Asset).
#   State: $AIRFLOW_HOME (default .airflow/, git-ignored) with SQLite metadata, a login of its
#   own and a JWT secret, all kept between runs. Port: AIRFLOW_PORT (default 8080).
#   The DAGs' stages run in the repo (COINFLOW_WORKDIR): MLflow store mlruns.db, Optuna journal
#   optuna/journal.log, unless MLFLOW_TRACKING_URI / COINFLOW_OPTUNA_STORAGE say otherwise.
#   The api-server listens on 127.0.0.1 (AIRFLOW__API__HOST to change it).
# Stop with Ctrl-C or SIGTERM: every process Airflow started is gone within 10 s.
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
export AIRFLOW__API__HOST="${AIRFLOW__API__HOST:-127.0.0.1}"  # not every interface
export AIRFLOW__API__BASE_URL="http://localhost:$PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://localhost:$PORT/execution/"
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"  # 2 sweep workers + slack
export COINFLOW_WORKDIR="${COINFLOW_WORKDIR:-$REPO}"
export DVC_NO_ANALYTICS=1 GIT_PYTHON_REFRESH=quiet PATH="$BIN:$PATH"

cat <<EOF
Airflow UI:  http://localhost:$PORT   (login: $USER_NAME / $PASSWORD; listening on $AIRFLOW__API__HOST)
DAGs:        coinflow_fetch (daily; exports from COINFLOW_DATA_SOURCE=${COINFLOW_DATA_SOURCE:-<unset>})
             -> Asset coinflow_dataset -> coinflow_train (sweep, register, promote)
             Both start paused: unpause them; trigger coinflow_train by hand with a data_version.
State:       $AIRFLOW_HOME (SQLite metadata, logs); stages run in $COINFLOW_WORKDIR
REST:        curl -s -X POST http://localhost:$PORT/auth/token -H 'Content-Type: application/json' \\
               -d '{"username": "$USER_NAME", "password": "$PASSWORD"}'
Stop:        Ctrl-C (or SIGTERM)
EOF

# Not `exec`: airflow standalone stops its components on SIGINT only, and a SIGTERM left the
# scheduler, triggerer, api-server and task processes running. It runs in a session of its own
# (task runners leave its process group, never its session); Ctrl-C / SIGTERM here stop that
# whole session: SIGTERM to each process, SIGKILL to whatever is left after the grace period.
GRACE_S="${AIRFLOW_STOP_GRACE_S:-6}"
session_pids() { ps -o pid=,stat= -s "$1" 2>/dev/null | awk '$2 !~ /^Z/ {print $1}' || true; }
signal_session() {  # signal_session SIGNAL: send it to every live process of the session
    local pids
    pids="$(session_pids "$AIRFLOW_SID")"
    [ -z "$pids" ] || kill "-$1" $pids 2>/dev/null || true
}
now_us() { echo "${EPOCHREALTIME//[.,]/}"; }  # wall clock: `ps` itself is slow on a busy box
wait_session() {  # wait_session SECONDS: until the session is empty (0) or the time is up (1)
    local deadline=$(($(now_us) + $1 * 1000000))
    while [ -n "$(session_pids "$AIRFLOW_SID")" ]; do
        [ "$(now_us)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}
stop_session() {
    trap "" INT TERM  # a second Ctrl-C must not cut the stop short
    echo "stopping Airflow (session $AIRFLOW_SID, up to ${GRACE_S} s) ..." >&2
    signal_session TERM
    wait_session "$GRACE_S" && return 0
    echo "killing what ignored SIGTERM: $(session_pids "$AIRFLOW_SID" | tr '\n' ' ')" >&2
    signal_session KILL
    wait_session 1 || echo "still running: $(session_pids "$AIRFLOW_SID" | tr '\n' ' ')" >&2
}

setsid "$BIN/airflow" standalone &
AIRFLOW_SID=$!  # a background job is no group leader, so setsid runs in place: pid = session
trap 'stop_session; exit 130' INT
trap 'stop_session; exit 143' TERM
status=0
wait "$AIRFLOW_SID" || status=$?
stop_session  # standalone ended by itself: leave none of its components behind
exit "$status"

#!/usr/bin/env bash
# `make demo`, after install: data → gate → features → sweep → promote on embedded defaults
# (SQLite MLflow store mlruns.db + mlartifacts/, Optuna journal in optuna/), a short replay of
# the newest version's last days through the API (so the Live tab has scores), then the API
# and the UI until Ctrl-C. DEMO_SERVE=0 stops after the summary (what CI-like runs want).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export PATH="$PWD/$BIN:$PATH" DVC_NO_ANALYTICS=1 GIT_PYTHON_REFRESH=quiet
export MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///mlruns.db}"
API_PORT="${API_PORT:-8000}" UI_PORT="${UI_PORT:-7860}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "data: dvc pull (data/raw from the shared remote)"
dvc pull -q data.dvc
step "pipeline: dvc repro (ingest → version → validate → features → store → train → sweep → promote)"
dvc repro
step "dataset versions"
coinflow data versions
step "persistence baseline (metrics/baseline.json)"
cat metrics/baseline.json
step "sweep (metrics/sweep.json)"
cat metrics/sweep.json
step "promotion decision (metrics/promotion.json)"
cat metrics/promotion.json
step "registry"
coinflow registry status
step "champion lineage"
coinflow registry lineage champion
REPLAY_DAYS="${DEMO_REPLAY_DAYS:-60}"
step "replay: the champion serves the newest version's last $REPLAY_DAYS days again (role replay)"
coinflow simulate --recent "$REPLAY_DAYS"
step "live scores of the replay (the monitor rule judges the champion role only)"
coinflow monitor score

cat <<TXT

Where to look:
  GE Data Docs      reports/validation/<version>/index.html
  sweep plots       plots/sweep/*.png
  MLflow UI         $BIN/mlflow ui --backend-store-uri $MLFLOW_TRACKING_URI   (http://127.0.0.1:5000)
  DVC metrics       $BIN/dvc metrics show
  forecast quality  $BIN/python benchmarks/forecast_quality.py   (CRPS, coverage, DM test)
  prediction log    predictions.db (every /predict answer); score it: coinflow monitor score
  live scores       UI Live tab, GET /monitoring: the replay above, role "replay" (not live)
TXT

[ "${DEMO_SERVE:-1}" = "1" ] || exit 0
mkdir -p reports
step "serving the API on :$API_PORT and the UI on :$UI_PORT (Ctrl-C stops both)"
coinflow serve --host 127.0.0.1 --port "$API_PORT" >reports/api.log 2>&1 &
api=$!
trap 'kill $api 2>/dev/null; wait $api 2>/dev/null' EXIT INT TERM
for _ in $(seq 60); do curl -fs "http://127.0.0.1:$API_PORT/health" >/dev/null && break; sleep 1; done
echo "API  http://127.0.0.1:$API_PORT/docs   (log: reports/api.log)"
echo "UI   http://127.0.0.1:$UI_PORT"
COINFLOW_API_URL="http://127.0.0.1:$API_PORT" coinflow ui --host 127.0.0.1 --port "$UI_PORT"

"""Names of the tags coinflow puts on MLflow runs and registered versions: defined here only."""

from __future__ import annotations

# --- lineage: on every run, copied onto the version registered from it -----------------------
KIND = "coinflow.kind"  # runs: train|trial|sweep|promotion|...; versions: the model kind
GIT_SHA = "coinflow.git_sha"
DATA_VERSION = "coinflow.data_version"
DVC_MD5 = "coinflow.dvc_md5"
GE_STATUS = "coinflow.ge_status"  # success | failed: the gate's record of that exact md5
CODE = "coinflow.code_fingerprint"  # core.fingerprint of the kernel it ran
MEDIAN = "coinflow.median"  # learned | persistence: where a model's median comes from
RUN_LINEAGE = (GIT_SHA, DATA_VERSION, DVC_MD5, GE_STATUS, CODE)

# --- sweeps --------------------------------------------------------------------------------
STUDY_NAME = "coinflow.study_name"
TRIAL_NUMBER = "coinflow.trial_number"
OPTUNA_STORAGE = "coinflow.optuna_storage"  # journal | sqlite | postgresql (never the URL)
OPTUNA_STATE = "coinflow.optuna_state"  # COMPLETE | PRUNED | FAIL, as Optuna ended it
FAILURE = "coinflow.failure"  # why a run ended FAILED
MODEL_URI = "coinflow.model_uri"  # on a trial run once its pyfunc is logged
BEST_MODEL_URI = "coinflow.best_model_uri"  # on the sweep parent
BEST_RUN_ID = "best_run_id"  # on the sweep parent (MLflow UI convention, no prefix)
PARENT_RUN_ID = "mlflow.parentRunId"  # MLflow's own nesting tag

# --- registered versions: the few searchable tags; the full decision is in the description ---
TEST_MASE = "coinflow.test_mase"
TEST_CRPS = "coinflow.test_crps"  # USD, on the training run's own test window
DECISION = "coinflow.decision"  # outcome of the latest decision on this version
DECISION_RUN = "coinflow.decision_run"  # the record run holding that decision's JSON
LIVE_ALERT = "coinflow.live.alert"  # the latest monitoring alert on this version, with numbers
# the version's newest 30-day next-day live figures (serving.monitoring.monitor)
LIVE_MASE_30D = "coinflow.live.mase_30d"
LIVE_COVERAGE_80_30D = "coinflow.live.coverage_80_30d"
LIVE_CRPS_30D = "coinflow.live.crps_30d"
LIVE_DAYS_30D = "coinflow.live.days_30d"
LIVE_AS_OF = "coinflow.live.as_of"

# --- decision / audit record runs (coinflow.kind = promotion) --------------------------------
RECORD_KIND = "promotion"
ACTION = "coinflow.action"  # first-champion | promote | refuse | rollback | code-upgrade
MODEL_NAME = "coinflow.model_name"
MODEL_VERSION = "coinflow.model_version"
REPAIRED = "coinflow.repaired"  # on a record a later lock holder finished after its writer died

# --- the registry lock (a registered model that exists while a promotion holds it) ----------
LOCK_OWNER = "coinflow.lock.owner"  # host:pid:token
LOCK_EXPIRES = "coinflow.lock.expires_at"

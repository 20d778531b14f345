"""coinflow_fetch: new exports → new complete day? → cut a version → GE gate → scores → Asset.

Thin TaskFlow wrappers over `pipelines/` (and `coinflow monitor score`); heavy libraries are
imported inside the tasks, so parsing this file stays fast. Where the exports are: the Airflow
Variable `coinflow_data_source`, else the env var COINFLOW_DATA_SOURCE (a directory or an http(s)
base URL holding btc.csv, eth.csv, gold.csv). Other deployment settings come from env:
COINFLOW_WORKDIR (the project root; default: the folder above dags/), COINFLOW_FETCH_SCHEDULE
(default @daily; `none`: only when triggered), COINFLOW_DVC_PUSH_REMOTE (a writable DVC remote
the merged data/raw is pushed to), COINFLOW_PREDICTION_LOG_URL (the API's prediction log: when
set, served forecasts made on the platform's rows are scored against the new closes and every
served version's calibration state is advanced by them, before any re-sweep),
COINFLOW_DAG_RETRIES (default 2).

A day that brings no new complete day (one on which BTC, ETH and gold all have a real row past
the newest version's cut-off) ends at `has_new_day`: cut, validate, score and announce are
skipped, so no Asset event is emitted and coinflow_train does not run. Idempotent: fetching the
same exports again changes nothing, and a version is cut only for days no version holds yet.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import dag, get_current_context, task
from coinflow_common import (
    DATASET,
    SOURCE_VARIABLE,
    START_DATE,
    TAGS,
    data_source,
    dataset_extra,
    default_args,
    ensure_raw,
    fetch_schedule,
    workdir,
)

log = logging.getLogger(__name__)

DAG_ID = "coinflow_fetch"


@dag(
    dag_id=DAG_ID,
    schedule=fetch_schedule(),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=TAGS,
    doc_md=__doc__,
)
def coinflow_fetch() -> None:
    """Fetch the day's exports; announce a new, validated dataset version."""

    @task
    def fetch() -> dict[str, int]:
        """Merge the source's exports into data/raw (`coinflow data fetch`), then parse them."""
        from airflow.sdk import Variable
        from airflow.sdk.exceptions import AirflowFailException

        from core.paths import project
        from pipelines.data import fetch as fetching
        from pipelines.data import ingest

        try:
            source = data_source(Variable.get(SOURCE_VARIABLE, default=None))
        except ValueError as err:
            raise AirflowFailException(str(err)) from err  # a person must set it: no retry
        proj = project(workdir())
        ensure_raw(proj)
        try:
            merges = fetching.fetch(source, proj)  # data/raw and data.dvc, all or nothing
        except fetching.FetchError as err:
            if type(err.__cause__).__module__.startswith("httpx"):
                raise  # the source was down or slow: worth a retry
            # rewritten history, a bad export: retrying cannot help; a person can
            raise AirflowFailException(str(err)) from err
        for m in merges:
            if m.added:
                log.info(
                    "%s: %d new day(s) %s .. %s", m.asset, len(m.added), m.added[0], m.added[-1]
                )
            if m.revised:
                log.info("%s: newest day %s revised: %s", m.asset, m.revised, m.revision)
        if any(m.changed for m in merges):
            log.info(merges.dvc or f"{proj.root} is not a DVC project: data.dvc not updated")
        else:
            log.info("nothing new from the source: data/raw unchanged")
        ingest.main(proj)  # data/interim: what the cut-off of a new version is read from
        return {m.asset: len(m.added) for m in merges}

    @task.short_circuit
    def has_new_day(added: dict[str, int]) -> bool:
        """True when the data holds a complete day past the newest version; else skip the rest."""
        from core.params import load_params
        from core.paths import project
        from pipelines.data.cut import last_complete_day

        proj = project(workdir())
        newest = max(load_params(proj.params_file).data.versions.values())
        latest = last_complete_day(proj)
        log.info("fetched %s; last complete day %s, newest cut-off %s", added, latest, newest)
        return latest > newest

    @task
    def cut_version() -> str:
        """Cut the next version (`coinflow data cut --use`) and write every version's file."""
        from core.params import load_params
        from core.paths import project
        from pipelines.data import cut as cutting
        from pipelines.data import version as stage

        proj = project(workdir())
        versions = load_params(proj.params_file).data.versions
        newest = max(versions, key=lambda v: versions[v])
        if versions[newest] >= cutting.last_complete_day(proj):  # a retry after the cut
            log.info("%s already holds every complete day: not cutting again", newest)
            name = newest
        else:
            done = cutting.cut(use=True, proj=proj)
            log.info("%s: cut-off %s, now data.version", done.name, done.cutoff)
            name = done.name
        for version in load_params(proj.params_file).data.versions:
            stage.main(version, proj)
        return name

    @task(retries=0)
    def validate(name: str) -> dict[str, str]:
        """The Great Expectations gate over every version: a failure stops the run, no retry."""
        from airflow.sdk.exceptions import AirflowFailException

        from core.files import file_md5
        from core.gate_record import passed
        from core.paths import project
        from pipelines.gate import validate as stage

        proj = project(workdir())
        try:
            stage.main(proj)
        except (stage.DataValidationError, stage.VersionFileError) as err:
            raise AirflowFailException(str(err)) from err
        md5 = file_md5(proj.version_file(name))
        if not passed(name, md5, proj):
            raise AirflowFailException(f"{name} (md5 {md5}) has no passing gate record")
        return {**dataset_extra(name, md5), "report": str(proj.validation_docs(name))}

    @task
    def monitor_score(gate: dict[str, str]) -> dict[str, str]:
        """`coinflow monitor score` against the new closes, when the prediction log is set:
        live scores, the monitor rule, and the served versions' calibration states advanced
        (the API swaps the new states in on its refresh loop)."""
        from serving.monitoring import cli as monitor_cli
        from serving.settings import ServingSettings

        settings = ServingSettings()
        if "coinflow_prediction_log_url" not in settings.model_fields_set or not (
            settings.coinflow_prediction_log_url
        ):
            log.info(
                "COINFLOW_PREDICTION_LOG_URL is not set: skipping `coinflow monitor score` "
                "(set it to the API's prediction log to score served forecasts on %s first)",
                gate["version"],
            )
            return gate
        monitor_cli.score()  # the command a user types; a refusal exits 1 and fails the task
        return gate

    @task(outlets=[DATASET])
    def announce(gate: dict[str, str]) -> dict[str, str]:
        """Emit the dataset Asset event: coinflow_train runs on this version."""
        extra: dict[str, Any] = dataset_extra(gate["version"], gate["md5"])
        get_current_context()["outlet_events"][DATASET].extra = extra
        log.info("dataset %s (md5 %s) announced", extra["version"], extra["md5"])
        return extra

    # At parse time each call returns an XComArg standing in for the value its task will return.
    added: Any = fetch()
    name: Any = cut_version()
    has_new_day(added) >> name
    gate: Any = validate(name)
    scored: Any = monitor_score(gate)
    announce(scored)


coinflow_fetch_dag = coinflow_fetch()

if __name__ == "__main__":
    coinflow_fetch_dag.test()

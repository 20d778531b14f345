"""Every registered version scored on the same days, with its latest decision (GET /models/compare).

The days are the test window of the dataset version the features stage built, the window
`coinflow registry promote` re-scores challenger and champion on (registry.scoring): so the
Compare tab never puts side by side CRPS from different test windows. A version's score on a
window never changes (its artifacts and kernel are immutable), so scores are kept per (data md5,
version) and a decision record per run id: a refresh only scores versions registered since.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from core import tags
from core.paths import project
from registry.errors import EvalDataError, ModelLoadError, NotFoundError, UnknownVersionError
from registry.records import SCORE_FIELDS, decision_view

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from registry.policy import ModelScore
    from registry.scoring import EvalSet
    from serving.cache import ModelCache

log = logging.getLogger(__name__)
NO_EVAL_DATA = (
    "the API has no evaluation data in its workspace (the features stage's output and its "
    "dataset version): run `coinflow data features` there, or set COINFLOW_WORKDIR to a "
    "workspace that has them"
)


def score_fields(score: ModelScore) -> dict[str, float | None]:
    """The compared numbers of a score, NaN as None (JSON has no NaN)."""
    values = asdict(score)
    return {k: float(values[k]) if math.isfinite(float(values[k])) else None for k in SCORE_FIELDS}


class SameDayScores:
    """Scores of every version on one set of test days, cached; one computation at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._eval: tuple[tuple[int, int], EvalSet] | None = None
        self._scores: dict[tuple[str, int], dict[str, Any]] = {}
        self._baselines: dict[str, dict[str, Any]] = {}
        self._records: dict[str, dict[str, Any]] = {}

    def eval_set(self) -> EvalSet:
        """The features stage's test window, re-read only when its meta.json changes."""
        from registry.scoring import load_eval_set

        proj = project()
        meta = proj.features / "meta.json"
        try:
            stat = meta.stat()
            key = (stat.st_mtime_ns, stat.st_size)
            if self._eval is None or self._eval[0] != key:
                self._eval = (key, load_eval_set(proj))
        except (OSError, EvalDataError) as exc:
            log.warning("same-day scores unavailable: %s", exc)  # the path stays in the log
            raise NotFoundError(NO_EVAL_DATA) from exc
        return self._eval[1]

    def _score(self, cache: ModelCache, version: int, eval_set: EvalSet) -> dict[str, Any]:
        from registry.scoring import score_model

        load = cache.registry.load
        key = (eval_set.md5, version)
        if key not in self._scores:
            loaded = cache.cached(version)  # a served version is scored without a reload
            try:
                py = loaded.py if loaded else cache.registry_call(lambda: load(version))
                score = score_model(py, eval_set, version)
            except ModelLoadError as exc:  # logged once: the failure is kept with the scores
                log.error("v%d not scored on the same days: %s", version, exc)
                self._scores[key] = {"error": f"v{version} does not load (see the API's log)"}
            except EvalDataError as exc:
                self._scores[key] = {"error": str(exc)[:300]}
            else:
                self._scores[key] = {"trained_on": score.trained_on, **score_fields(score)}
        return self._scores[key]

    def _decision(self, cache: ModelCache, model_version: ModelVersion) -> dict[str, Any] | None:
        run_id = (model_version.tags or {}).get(tags.DECISION_RUN)
        if not run_id:
            return None
        if run_id not in self._records:  # a finished record never changes
            try:
                record = cache.registry_call(lambda: cache.registry.decision(run_id))
            except UnknownVersionError:
                return None
            self._records[run_id] = decision_view({**record, "record_run_id": run_id})
        return self._records[run_id]

    def compare(self, cache: ModelCache) -> dict[str, Any]:
        """GET /models/compare: the window, the reference baseline and every version."""
        from registry.scoring import baseline_score

        with self._lock:
            eval_set = self.eval_set()
            aliases = cache.registry_call(cache.registry.aliases)
            versions = cache.registry_call(cache.registry.versions)
            if eval_set.md5 not in self._baselines:
                self._baselines[eval_set.md5] = score_fields(baseline_score(eval_set))
            entries = []
            for model_version in versions:
                number = int(model_version.version)
                entries.append(
                    {
                        "version": number,
                        "aliases": sorted(a for a, v in aliases.items() if v == number),
                        "kind": (model_version.tags or {}).get(tags.KIND),
                        **self._score(cache, number, eval_set),
                        "decision": self._decision(cache, model_version),
                    }
                )
            return {
                "name": cache.registry.name,
                "eval": eval_set.describe(),
                "baseline": {"kind": "persistence", **self._baselines[eval_set.md5]},
                "versions": entries,
            }

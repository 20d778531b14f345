"""Register → promote, the one flow `dvc repro` (`coinflow registry release`) and Airflow run.

Both steps are idempotent: a run registers once; a version already champion, or already judged
against the current champion on the same evaluation rows, is not judged again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from registry.errors import RegistryError
from registry.policy import Policy
from registry.records import latest_decision
from registry.store import CHALLENGER, CHAMPION, Registry, aliases

if TYPE_CHECKING:
    from core.paths import Project
    from registry.scoring import EvalSet

log = logging.getLogger(__name__)


def register_candidate(
    registry: Registry, run_id: str, eval_set: EvalSet, proj: Project, policy: Policy
) -> tuple[int, int]:
    """Register `run_id` (once), after making sure the registry holds its baselines: persistence
    with empirical quantiles as the first champion, the EWMA-volatility model judged like any
    challenger. Points `challenger` at the new version unless it is the champion; returns
    (version, champion)."""
    from registry.register import ensure_champion, register_baseline, register_run

    ensure_champion(registry, eval_set, proj)  # an empty registry: persistence is v1
    ewma = register_baseline(registry, eval_set, "ewma", proj)
    judged = promote_candidate(registry, ewma, eval_set, policy)
    # Says whose decision this is: registering run X is not when a reader expects "v2: ...".
    log.info(
        "%s v%d (EWMA baseline, judged before registering run %s): %s",
        registry.name,
        ewma,
        run_id,
        judged["reason"],
    )
    champion = int(aliases(registry)[CHAMPION])
    version = register_run(registry, run_id, alias=None)
    if version != champion and aliases(registry).get(CHALLENGER) != version:
        registry.client.set_registered_model_alias(registry.name, CHALLENGER, str(version))
    role = "the champion" if version == champion else f"challenger to champion v{champion}"
    log.info("%s v%d (run %s) is %s", registry.name, version, run_id, role)
    return version, champion


def _summary_from_record(version: int, record: dict[str, Any]) -> dict[str, Any]:
    def mase(role: str) -> Any:
        return (record.get(role) or {}).get("mase")

    return {
        "promoted": bool(record.get("promoted")),
        "version": version,
        "champion_before": record.get("champion_before"),
        "champion_after": record.get("champion_after"),
        "challenger_mase": mase("challenger"),
        "champion_mase": mase("champion"),
        "baseline_mase": mase("baseline"),
        "reason": (
            f"already judged against champion v{record.get('champion_before')}, not re-scored: "
            f"{record.get('reason', '')}"
        ),
        "rule": record.get("rule"),
        "record_run_id": record.get("record_run_id"),
    }


def promote_candidate(
    registry: Registry, version: int, eval_set: EvalSet, policy: Policy
) -> dict[str, Any]:
    """Judge `version` against the champion unless that is already done; the decision summary."""
    from registry.promote import promote

    champion = aliases(registry).get(CHAMPION)
    if champion == version:
        return {
            "promoted": False,
            "version": version,
            "champion_before": version,
            "champion_after": version,
            "reason": f"v{version} is already the champion",
        }
    judged = latest_decision(registry, version)
    if (
        judged is not None
        and judged.get("action") in ("promote", "refuse")
        and judged.get("champion_before") == champion
        and (judged.get("eval") or {}).get("dvc_md5") == eval_set.md5
    ):
        return _summary_from_record(version, judged)  # its caller logs the reason
    return promote(registry, eval_set, policy, version).summary()


def release(proj: Project | None = None) -> dict[str, Any]:
    """The dvc `promote` stage: register the sweep's best run, promote it if it wins, and write
    metrics/promotion.json."""
    import json

    from core.files import write_json
    from core.params import load_params
    from core.paths import project
    from registry.scoring import load_eval_set
    from registry.store import open_registry

    proj = proj or project()
    params, sweep_json = load_params(proj.params_file), proj.metrics_file("sweep")
    sweep = json.loads(sweep_json.read_text()) if sweep_json.is_file() else {}
    if not sweep.get("best_run_id"):
        raise RegistryError(f"{sweep_json} is missing or names no best_run_id: run the sweep")
    registry = open_registry(params.registry.model_name)
    eval_set = load_eval_set(proj)
    policy = Policy.from_params(params.registry)
    version, _ = register_candidate(registry, sweep["best_run_id"], eval_set, proj, policy)
    summary = promote_candidate(registry, version, eval_set, policy)
    write_json(proj.metrics_file("promotion"), summary)
    log.info("%s v%d: %s", registry.name, version, summary["reason"])
    return summary

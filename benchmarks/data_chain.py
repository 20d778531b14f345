"""Time ingest → version → validate → features on v0.3, each stage's main as `dvc repro` runs it.

Baseline, side by side: a naive lecture-style pandas read of the three CSVs (read_csv + string
clean-up, no validation), so the ratio shows what the gate and the versioning cost on top.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


def naive_read(raw: Path) -> None:
    import pandas as pd

    for asset in ("btc", "eth", "gold"):
        frame = pd.read_csv(raw / f"{asset}.csv", thousands=",")
        frame["Date"] = pd.to_datetime(frame["Date"], format="%m/%d/%Y")
        frame = frame.sort_values("Date")


def chain(workdir: Path) -> dict[str, float]:
    from core.params import load_params
    from core.paths import Project
    from pipelines.data import ingest, version
    from pipelines.gate import validate
    from pipelines.training import features

    proj = Project(workdir)
    names = list(load_params(proj.params_file).data.versions)
    timings = {}
    for name, stage in (
        ("ingest", lambda: ingest.main(proj)),
        ("version", lambda: [version.main(v, proj) for v in names]),
        ("validate", lambda: validate.main(proj)),
        ("features", lambda: features.main(proj=proj)),
    ):
        started = time.perf_counter()
        stage()
        timings[name] = time.perf_counter() - started
    return timings


def main(repeats: int = 3) -> None:
    import logging

    logging.disable(logging.INFO)
    raw = REPO / "data" / "raw"
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copy(REPO / "params.yaml", work / "params.yaml")
        shutil.copytree(raw, work / "data" / "raw")
        chain(work)  # warm-up: imports (GE alone takes ~2.5 s) are not the chain's cost
        for _ in range(repeats):
            runs.append(chain(work))
    naive = []
    for _ in range(repeats):
        started = time.perf_counter()
        naive_read(raw)
        naive.append(time.perf_counter() - started)
    stages = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    total = sum(stages.values())
    print(f"data chain on v0.3 (all three versions validated), median of {repeats}:")
    for name, seconds in stages.items():
        print(f"  {name:<9} {seconds:6.3f} s")
    print(f"  {'total':<9} {total:6.3f} s")
    baseline = statistics.median(naive)
    print(
        f"naive read_csv of the three files (no versions, no gate): {baseline:.3f} s; "
        f"ratio chain/naive = {total / baseline:.1f}x"
    )


if __name__ == "__main__":
    main()

"""Every version named in params.yaml is its own DVC output: adding one edits nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.files import file_md5
from tests.repo_copy import pulled_copy, run

pytestmark = [pytest.mark.data, pytest.mark.slow]


def test_a_version_added_to_params_is_a_dvc_output_with_its_hash(tmp_path: Path) -> None:
    work, env = pulled_copy(tmp_path / "repo", tmp_path)
    dvc_yaml = (work / "dvc.yaml").read_text()
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"]["versions"]["v0.4"] = "2024-06-30"  # within the data, after v0.3's start
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    run(["dvc", "repro", "validate"], work, env)

    lock = yaml.safe_load((work / "dvc.lock").read_text())
    (out,) = lock["stages"]["version@v0.4"]["outs"]
    assert out["path"] == "data/versions/v0.4.parquet"
    assert out["md5"] == file_md5(work / "data" / "versions" / "v0.4.parquet")
    hashes = {s: lock["stages"][s]["outs"][0]["md5"] for s in lock["stages"] if "@" in s}
    assert len(set(hashes.values())) == 4  # v0.1 ... v0.4, each its own content hash
    assert (work / "dvc.yaml").read_text() == dvc_yaml  # no hand edit of the pipeline
    status = run(["dvc", "status", "version@v0.4"], work, env)
    assert "up to date" in status

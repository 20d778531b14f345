"""Throughput and latency of coinflow's API vs `mlflow models serve` on the same version and rows,
load driven by `wrk` (a C load generator: it shares no interpreter with the servers).

    .venv/bin/python benchmarks/serving.py                      # scratch store, tiny training
    .venv/bin/python benchmarks/serving.py --tracking-uri sqlite:///mlruns.db --versions 3
    .venv/bin/python benchmarks/serving.py --quick              # issue 28's c=1 targets only

Needs `wrk` on PATH (Debian/Ubuntu: `apt-get install wrk`); without it the script says so and
exits 0. By default it trains a scratch store: a sweep-sized torch GRU (14-row requests) and
the persistence champion. Servers, all on 127.0.0.1 with the prediction log on: `coinflow
serve` with one worker and with two, and `mlflow models serve --env-manager local` (the
baseline: same version, same rows as `dataframe_split`). Requests: the default champion (no
body; ours only) and explicit rows. Rounds are interleaved (every server and request in turn,
then again), so a busy machine slows all of them alike; medians and ratios are reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.processes import free_port, stop_group  # noqa: E402  (needs REPO on sys.path)

# The scratch torch version: a sweep-sized GRU (15 units, lookback 13: 14-row requests), the
# shape of issue 28's figures; 2 epochs (the weights do not change the request path's cost).
SCRATCH_TORCH = {"cell": "gru", "hidden_size": 15, "num_layers": 1, "bidirectional": False}
SCRATCH_TORCH |= {"lookback": 13}


@dataclass(frozen=True)
class Result:
    """One load run: requests/s, latency percentiles (ms), errors."""

    name: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BENCH_BODY"), "rb"); wrk.body = f:read("*a"); f:close()
done = function(s, latency, requests)
  local e = s.errors
  io.write(string.format("RESULT %d %.6f %d %d %d %d\\n", s.requests, s.duration / 1e6,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


def drive(
    name: str, url: str, body: Path, concurrency: int, seconds: float, script: Path
) -> Result:
    """`wrk` POSTs `body` to `url` from `concurrency` keep-alive connections for `seconds`."""
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "10s"]
    cmd += ["-s", str(script), url]
    out = subprocess.run(
        cmd,
        env={**os.environ, "BENCH_BODY": str(body)},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    requests, duration, errors, non2xx, p50_us, p99_us = line.split()[1:]
    return Result(
        name,
        concurrency,
        int(requests),
        int(errors) + int(non2xx),
        float(duration),
        int(p50_us) / 1e3,
        int(p99_us) / 1e3,
    )


@contextlib.contextmanager
def server(cmd: list[str], env: dict[str, str], log: Path, port: int, ready: str) -> Iterator[None]:
    """A child server in its own process group, stopped (SIGTERM, then SIGKILL) afterwards."""
    import httpx

    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=log.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[:5]} did not start:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}{ready}", timeout=2).status_code == 200:
                    break
            time.sleep(0.3)
        yield
    finally:
        stop_group(proc, grace_s=20)


def scratch_registry(root: Path, name: str) -> tuple[str, int, int]:
    """A throwaway store: params.yaml's architecture trained 2 epochs (version 1) and the
    persistence baseline exactly as the promote flow logs it (version 2, the default champion)."""
    import shutil

    import mlflow
    import pandas as pd

    from core.files import file_md5
    from core.params import load_params
    from core.paths import Project
    from core.tracking import TrackingSettings, configure_mlflow
    from pipelines.training.features import write_features
    from pipelines.training.tracked_run import tracked_training
    from pipelines.training.train import load_training_data
    from registry.lineage import version_tags_from_run
    from registry.register import baseline_run
    from registry.scoring import load_eval_set
    from registry.store import Registry

    params = load_params(REPO / "params.yaml")
    versions = REPO / "data" / "versions"
    path = versions / f"{params.data.version}.parquet"
    if not path.is_file():  # a fresh clone (`dvc pull` only): cut the version from data/raw
        from pipelines.data.ingest import load_assets
        from pipelines.data.version import align_assets

        versions = root / "versions"
        versions.mkdir()
        path = versions / f"{params.data.version}.parquet"
        cutoff = params.data.versions[params.data.version]
        frame = align_assets(
            **load_assets(REPO / "data" / "raw"), start=params.data.start, cutoff=cutoff
        )
        frame.to_parquet(path)
    proj = Project(root)
    shutil.copy(REPO / "params.yaml", proj.params_file)
    proj.versions.parent.mkdir(parents=True, exist_ok=True)
    proj.versions.symlink_to(versions)
    write_features(
        pd.read_parquet(path),
        params.data.version,
        file_md5(path),
        params.features,
        proj.features,
        proj.metrics,
    )
    uri = f"sqlite:///{root / 'mlflow.db'}"
    experiment = configure_mlflow(
        TrackingSettings(
            mlflow_tracking_uri=uri,
            coinflow_experiment="benchmark",
            coinflow_artifact_root=str(root / "mlartifacts"),
        )
    )
    outcome = tracked_training(
        params.train.model_copy(update={"max_epochs": 2, **SCRATCH_TORCH}),
        load_training_data(proj.features),
        run_name="benchmark",
        proj=proj,
    )
    client = mlflow.MlflowClient()
    persistence = baseline_run(
        Registry(name, client, experiment), load_eval_set(proj), "persistence", proj
    )
    numbers = []
    for run_id, kind in ((outcome.run_id, "torch"), (persistence, "persistence")):
        tags = version_tags_from_run(client.get_run(run_id), kind)
        model_version = mlflow.register_model(f"runs:/{run_id}/model", name, tags=tags)
        numbers.append(int(model_version.version))
    client.set_registered_model_alias(name, "champion", str(numbers[1]))
    return uri, numbers[0], numbers[1]


def payload_rows(uri: str, name: str, version: int) -> tuple[list[dict[str, Any]], str]:
    """The version's own latest rows_needed rows (a realistic explicit-rows request), its kind."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    py = mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model().model
    frame = py.recent_rows.tail(py.rows_needed)
    return list(frame.to_dict(orient="records")), str(py.kind)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", help="existing store (default: a scratch one)")
    parser.add_argument("--model", default="btc-forecaster")
    parser.add_argument(
        "--versions", type=int, nargs="+", help="explicit-rows versions (default: the torch one)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats per setting")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the c=1 latency targets only: one worker, no mlflow baseline, 1 round of 3 s",
    )
    args = parser.parse_args()
    if args.quick:
        args.concurrency, args.rounds, args.seconds = [1], 1, 3.0
    if shutil.which("wrk") is None:
        print("benchmarks/serving.py skipped: `wrk` is not installed (apt-get install wrk)")
        return

    with tempfile.TemporaryDirectory(prefix="coinflow-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        if args.tracking_uri:
            uri, versions = args.tracking_uri, list(args.versions or [1])
        else:
            uri, torch_v, _ = scratch_registry(tmp, args.model)
            versions = list(args.versions or [torch_v])
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "COINFLOW_"))}
        env.update(
            MLFLOW_TRACKING_URI=uri,
            PYTHONPATH=str(REPO),
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        )
        print(f"load average before: {os.getloadavg()[0]:.2f} (2-core figures need a quiet box)")
        results = bench(args, uri, env, tmp, versions)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    report(results)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ | {"rps": r.rps} for r in results], indent=2))


def ours_cmd(port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cli.main",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]


def theirs_cmd(model: str, version: int, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        f"models:/{model}/{version}",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]


def bodies(tmp: Path, rows: list[dict[str, Any]], version: int) -> tuple[Path, Path]:
    """Request files: ours (explicit rows, horizon 1) and theirs (the same as dataframe_split)."""
    columns = list(rows[0])
    theirs = {
        "dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in rows]},
        "params": {"horizon": 1},
    }
    ours_path, theirs_path = tmp / f"ours-v{version}.json", tmp / f"theirs-v{version}.json"
    ours_path.write_text(json.dumps({"horizon": 1, "rows": rows}))
    theirs_path.write_text(json.dumps(theirs))
    return ours_path, theirs_path


def same_forecast(ours_url: str, ours: Path, theirs_url: str, theirs: Path) -> list[float]:
    """Both servers give the same median closes for the same rows (else the comparison is off)."""
    import httpx

    headers = {"content-type": "application/json"}
    a = httpx.post(ours_url, content=ours.read_bytes(), timeout=60, headers=headers).json()
    b = httpx.post(theirs_url, content=theirs.read_bytes(), timeout=60, headers=headers).json()
    ours_close = [f["close"] for f in a["forecasts"]]
    theirs_close = [p["close"] for p in b["predictions"]]
    if ours_close != theirs_close:
        raise SystemExit(f"the servers disagree: {ours_close} vs {theirs_close}")
    return ours_close


def bench(
    args: argparse.Namespace, uri: str, env: dict[str, str], tmp: Path, versions: list[int]
) -> list[Result]:
    """Every (server, request) pair, interleaved round by round at each concurrency."""
    script = tmp / "post.lua"
    script.write_text(WRK_SCRIPT)
    empty = tmp / "empty.json"
    empty.write_text("")
    one, two, theirs_ports = free_port(), free_port(), {v: free_port() for v in versions}
    # One client sends all the load: the per-client rate limit (20/s by default) is off here.
    base = {**env, "COINFLOW_MODEL_NAME": args.model, "COINFLOW_REFRESH_S": "0"}
    base["COINFLOW_RATE_LIMIT_PER_S"] = "0"
    runs: list[tuple[str, str, Path]] = []  # (name, url, body)
    with contextlib.ExitStack() as stack:
        for port, workers in ((one, 1),) if args.quick else ((one, 1), (two, 2)):
            log_on = {**base, "COINFLOW_PREDICTION_LOG_URL": f"sqlite:///{tmp / f'log-{port}.db'}"}
            log = tmp / f"ours-{workers}.log"
            stack.enter_context(server(ours_cmd(port, workers), log_on, log, port, "/health"))
            wait_ready(port)
            label = "coinflow" if workers == 1 else "coinflow x2"
            runs.append((f"champion {label}", f"http://127.0.0.1:{port}/predict", empty))
        for version in versions:
            rows, kind = payload_rows(uri, args.model, version)
            ours, theirs = bodies(tmp, rows, version)
            label = f"v{version} {kind} {len(rows)} rows"
            path = f"/predict?version={version}"
            if args.quick:  # ours alone: the latency targets need no baseline
                runs.append((f"{label} coinflow", f"http://127.0.0.1:{one}{path}", ours))
                continue
            port = theirs_ports[version]
            log = tmp / f"theirs-{version}.log"
            stack.enter_context(
                server(theirs_cmd(args.model, version, port), env, log, port, "/ping")
            )
            closes = same_forecast(
                f"http://127.0.0.1:{one}{path}",
                ours,
                f"http://127.0.0.1:{port}/invocations",
                theirs,
            )
            print(f"{label}: same forecast from both servers, median {closes}")
            runs += [
                (f"{label} coinflow", f"http://127.0.0.1:{one}{path}", ours),
                (f"{label} coinflow x2", f"http://127.0.0.1:{two}{path}", ours),
                (f"{label} mlflow", f"http://127.0.0.1:{port}/invocations", theirs),
            ]
        out: list[Result] = []
        for concurrency in args.concurrency:
            for name, url, body in runs:
                drive(name, url, body, concurrency, 1, script)  # warm-up
            rounds: dict[str, list[Result]] = {name: [] for name, *_ in runs}
            for _ in range(args.rounds):  # interleaved: each round runs every pair in turn
                for name, url, body in runs:
                    rounds[name].append(drive(name, url, body, concurrency, args.seconds, script))
            out += [summarise(name, concurrency, done) for name, done in rounds.items()]
    return out


def wait_ready(port: int, timeout_s: float = 300) -> None:
    """Until /ready says the default alias is served (workers load in the background)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the API on port {port} never became ready")


def summarise(name: str, concurrency: int, done: list[Result]) -> Result:
    """The median round (by throughput), flagged noisy when rounds differ by more than 15%."""
    rps = [r.rps for r in done]
    spread = (max(rps) - min(rps)) / median(rps)
    pick = sorted(done, key=lambda r: r.rps)[len(done) // 2]
    noisy = " (noisy)" if spread > 0.15 else ""
    return Result(
        name + noisy,
        concurrency,
        pick.requests,
        sum(r.errors for r in done),
        pick.seconds,
        median([r.p50_ms for r in done]),
        median([r.p99_ms for r in done]),
    )


def report(results: list[Result]) -> None:
    """A table, then ratios against `mlflow models serve` and the issue's targets."""
    print(
        f"\n{'server':<44} {'conc':>4} {'requests':>8} {'errors':>6} {'req/s':>8} "
        f"{'p50 ms':>7} {'p99 ms':>7}"
    )
    for r in results:
        print(
            f"{r.name:<44} {r.concurrency:>4} {r.requests:>8} {r.errors:>6} {r.rps:>8.0f} "
            f"{r.p50_ms:>7.2f} {r.p99_ms:>7.2f}"
        )
    print("(median of the interleaved rounds; '(noisy)': rounds differed by more than 15%)\n")
    at = {(r.name.replace(" (noisy)", ""), r.concurrency): r for r in results}
    for (name, concurrency), theirs in sorted(at.items()):
        if not name.endswith(" mlflow"):
            continue
        label = name.removesuffix(" mlflow")
        for mode in ("coinflow", "coinflow x2"):
            ours = at[(f"{label} {mode}", concurrency)]
            print(
                f"{label} c={concurrency:>2} {mode:<11}: throughput {ours.rps / theirs.rps:.1f}x, "
                f"p50 {theirs.p50_ms / ours.p50_ms:.1f}x lower, "
                f"p99 {theirs.p99_ms / ours.p99_ms:.1f}x lower than mlflow models serve"
            )
    targets(at)


def targets(at: dict[tuple[str, int], Result]) -> None:
    """Issue 28's targets, met or not, from this run's medians."""
    for (name, concurrency), r in sorted(at.items()):
        if name.endswith(" rows coinflow") and concurrency == 1:
            ok = r.p50_ms <= 0.7 and r.p99_ms <= 3
            print(f"target {name} c=1 p50 <= 0.7 ms, p99 <= 3 ms: {'met' if ok else 'NOT met'}")
        if name.endswith(" rows coinflow x2") and concurrency == 16:
            ratio = r.rps / at[(name.removesuffix(" coinflow x2") + " mlflow", 16)].rps
            verdict = "met" if ratio >= 10 else "NOT met"
            print(f"target {name} c=16 >= 10x mlflow: {ratio:.1f}x {verdict}")
        if name == "champion coinflow" and concurrency == 1:
            print(f"target champion c=1 p99 <= 2 ms: {'met' if r.p99_ms <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()

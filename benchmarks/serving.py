"""Throughput and latency of coinflow's API vs `mlflow models serve` on the same version and load.

    .venv/bin/python benchmarks/serving.py                      # scratch store, tiny training
    .venv/bin/python benchmarks/serving.py --tracking-uri sqlite:///mlruns.db --versions 3

By default: the persistence champion (what /predict serves by default) and a torch version,
each with the prediction log on and off, interleaved rounds, medians reported.

Both servers run on 127.0.0.1 with their own defaults (ours: `coinflow serve`, uvloop +
httptools, no access log; theirs: `mlflow models serve --env-manager local`). One asyncio
client process drives each with keep-alive HTTP/1.1 connections at each concurrency, bounded
in requests and seconds, and sends the same explicit rows (theirs as `dataframe_split`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
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


async def _worker(
    port: int,
    request: bytes,
    budget: list[int],
    deadline: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
            length = {k.strip().lower(): v for k, v in fields.items()}.get(b"content-length")
            if length is None:
                raise RuntimeError("the benchmark client needs Content-Length responses")
            await reader.readexactly(int(length))
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200"):
                errors[0] += 1
    finally:
        writer.close()


def drive(
    name: str, port: int, path: str, body: bytes, concurrency: int, requests: int, max_s: float
) -> Result:
    """POST `body` to 127.0.0.1:port `requests` times (or for `max_s` seconds), keep-alive."""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors = [0]

    async def main() -> float:
        budget = [requests]
        start = time.perf_counter()
        await asyncio.gather(
            *(
                _worker(port, request, budget, start + max_s, latencies, errors)
                for _ in range(concurrency)
            )
        )
        return time.perf_counter() - start

    seconds = asyncio.run(main())
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3  # noqa: E731
    return Result(name, concurrency, len(latencies), errors[0], seconds, pick(0.5), pick(0.99))


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
        params.train.model_copy(update={"max_epochs": 2}),
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
    parser.add_argument("--versions", type=int, nargs="+", help="default: torch and persistence")
    parser.add_argument("--requests", type=int, default=2000, help="per run, at most")
    parser.add_argument("--max-seconds", type=float, default=6.0, help="per run, at most")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats per setting")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="coinflow-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        if args.tracking_uri:
            uri, versions = args.tracking_uri, list(args.versions or [1])
        else:
            uri, torch_v, persistence_v = scratch_registry(tmp, args.model)
            versions = list(args.versions or [persistence_v, torch_v])
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "COINFLOW_"))}
        env.update(
            MLFLOW_TRACKING_URI=uri,
            PYTHONPATH=str(REPO),
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        )
        results: list[Result] = []
        for version in versions:
            results += bench_version(args, uri, env, tmp, version)
    report(results)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ | {"rps": r.rps} for r in results], indent=2))


def ours_cmd(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cli.main",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


def bench_version(
    args: argparse.Namespace, uri: str, env: dict[str, str], tmp: Path, version: int
) -> list[Result]:
    """One version: our API with the prediction log on and off vs `mlflow models serve`,
    interleaved round by round at each concurrency."""
    import httpx

    rows, kind = payload_rows(uri, args.model, version)
    logged, unlogged, theirs_port = free_port(), free_port(), free_port()
    theirs_cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        f"models:/{args.model}/{version}",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(theirs_port),
    ]
    ours_body = json.dumps({"horizon": 1, "rows": rows}).encode()
    columns = list(rows[0])
    theirs_body = json.dumps(
        {
            "dataframe_split": {
                "columns": columns,
                "data": [[r[c] for c in columns] for r in rows],
            },
            "params": {"horizon": 1},
        }
    ).encode()
    base = {**env, "COINFLOW_MODEL_NAME": args.model, "COINFLOW_REFRESH_S": "0"}
    log_on = {**base, "COINFLOW_PREDICTION_LOG_URL": f"sqlite:///{tmp / f'log-v{version}.db'}"}
    log_off = {**base, "COINFLOW_PREDICTION_LOG_URL": ""}
    path = f"/predict?version={version}"
    label = f"v{version} {kind}"
    out: list[Result] = []
    with (
        server(ours_cmd(logged), log_on, tmp / f"ours-on-{version}.log", logged, "/health"),
        server(ours_cmd(unlogged), log_off, tmp / f"ours-off-{version}.log", unlogged, "/health"),
        server(theirs_cmd, env, tmp / f"theirs-{version}.log", theirs_port, "/ping"),
    ):
        headers = {"content-type": "application/json"}
        ours = httpx.post(
            f"http://127.0.0.1:{logged}{path}", content=ours_body, timeout=60, headers=headers
        ).json()
        theirs = httpx.post(
            f"http://127.0.0.1:{theirs_port}/invocations",
            content=theirs_body,
            timeout=60,
            headers=headers,
        ).json()
        ours_close = [f["close"] for f in ours["forecasts"]]
        theirs_close = [p["close"] for p in theirs["predictions"]]
        if ours_close != theirs_close:
            raise SystemExit(f"the servers disagree: {ours_close} vs {theirs_close}")
        print(f"{label}: same forecast from both servers, median {ours_close} ({len(rows)} rows)")
        runs = (
            (f"{label} coinflow, log on", logged, path, ours_body),
            (f"{label} coinflow, log off", unlogged, path, ours_body),
            (f"{label} mlflow models serve", theirs_port, "/invocations", theirs_body),
        )
        for concurrency in args.concurrency:
            for name, port, url, body in runs:
                drive(name, port, url, body, concurrency, 200, 5)  # warm-up
            rounds: dict[str, list[Result]] = {name: [] for name, *_ in runs}
            for _ in range(args.rounds):  # interleaved: each round runs all three in turn
                for name, port, url, body in runs:
                    rounds[name].append(
                        drive(name, port, url, body, concurrency, args.requests, args.max_seconds)
                    )
            for name, done in rounds.items():
                out.append(summarise(name, concurrency, done))
    return out


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
    """A table, then ratios against `mlflow models serve` per version and concurrency."""
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
    labels = sorted({r.name.split(" coinflow")[0].split(" mlflow")[0] for r in results})
    for label in labels:
        for concurrency in sorted({r.concurrency for r in results}):
            at = {
                r.name.replace(" (noisy)", ""): r
                for r in results
                if r.concurrency == concurrency and r.name.startswith(label + " ")
            }
            theirs = at[f"{label} mlflow models serve"]
            for mode in ("log on", "log off"):
                ours = at[f"{label} coinflow, {mode}"]
                print(
                    f"{label} c={concurrency:>2} {mode:<7}: throughput "
                    f"{ours.rps / theirs.rps:.1f}x, p50 {theirs.p50_ms / ours.p50_ms:.1f}x lower, "
                    f"p99 {theirs.p99_ms / ours.p99_ms:.1f}x lower than mlflow models serve"
                )


if __name__ == "__main__":
    main()

"""Throughput and latency of coinflow's API vs `mlflow models serve` on the same version and load.

    .venv/bin/python benchmarks/serving.py                      # scratch store, tiny training
    .venv/bin/python benchmarks/serving.py --tracking-uri sqlite:///mlruns.db --version 3

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


def scratch_registry(root: Path, name: str) -> str:
    """A throwaway store with one model of params.yaml's architecture (2 epochs), version 1."""
    import mlflow
    import pandas as pd

    from pipelines.config import load_params
    from pipelines.features import write_features
    from pipelines.files import file_md5
    from pipelines.paths import Project
    from pipelines.tracked import tracked_training
    from pipelines.tracking import TrackingSettings, configure_mlflow
    from pipelines.train import load_training_data
    from registry.lineage import version_tags_from_run

    params = load_params(REPO / "params.yaml")
    versions = REPO / "data" / "versions"
    path = versions / f"{params.data.version}.parquet"
    proj = Project(root)
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
    configure_mlflow(
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
    run = mlflow.MlflowClient().get_run(outcome.run_id)
    mlflow.register_model(
        f"runs:/{outcome.run_id}/model", name, tags=version_tags_from_run(run, "torch")
    )
    return uri


def payload_rows(uri: str, name: str, version: int) -> list[dict[str, Any]]:
    """The version's own latest rows_needed rows: a realistic explicit-rows request."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    py = mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model()
    frame = py.recent_rows.tail(py.rows_needed)
    return list(frame.to_dict(orient="records"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", help="existing store (default: a scratch one)")
    parser.add_argument("--model", default="btc-forecaster")
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--requests", type=int, default=3000, help="per run, at most")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="per run, at most")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="coinflow-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        uri = args.tracking_uri or scratch_registry(tmp, args.model)
        rows = payload_rows(uri, args.model, args.version)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "COINFLOW_"))}
        env.update(
            MLFLOW_TRACKING_URI=uri,
            PYTHONPATH=str(REPO),
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        )
        ours_port, theirs_port = free_port(), free_port()
        ours_cmd = [
            sys.executable,
            "-m",
            "pipelines.cli",
            "serve",
            "--port",
            str(ours_port),
            "--log-level",
            "warning",
        ]
        theirs_cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            f"models:/{args.model}/{args.version}",
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
        ours_env = {**env, "COINFLOW_MODEL_NAME": args.model, "COINFLOW_REFRESH_S": "0"}
        results: list[Result] = []
        with (
            server(ours_cmd, ours_env, tmp / "ours.log", ours_port, "/health"),
            server(theirs_cmd, env, tmp / "theirs.log", theirs_port, "/ping"),
        ):
            import httpx

            path = f"/predict?version={args.version}"
            ours = httpx.post(
                f"http://127.0.0.1:{ours_port}{path}",
                content=ours_body,
                headers={"content-type": "application/json"},
                timeout=60,
            ).json()
            theirs = httpx.post(
                f"http://127.0.0.1:{theirs_port}/invocations",
                content=theirs_body,
                timeout=60,
                headers={"content-type": "application/json"},
            ).json()
            if ours["forecasts"] != theirs["predictions"]:
                raise SystemExit(f"the servers disagree: {ours['forecasts']} vs {theirs}")
            print(
                f"same forecast from both: {ours['forecasts']}  ({len(rows)} rows, "
                f"{args.model} v{args.version}, {ours['lineage']['kind']})"
            )
            for concurrency in args.concurrency:
                for name, port, url, body in (
                    ("coinflow /predict rows", ours_port, path, ours_body),
                    ("coinflow /predict default", ours_port, path, b'{"horizon": 1}'),
                    ("mlflow models serve", theirs_port, "/invocations", theirs_body),
                ):
                    drive(name, port, url, body, concurrency, 200, 10)  # warm-up
                    results.append(
                        drive(name, port, url, body, concurrency, args.requests, args.max_seconds)
                    )
    report(results)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ | {"rps": r.rps} for r in results], indent=2))


def report(results: list[Result]) -> None:
    """A table, then our/theirs ratios per concurrency."""
    print(
        f"\n{'server':<27} {'conc':>4} {'requests':>8} {'errors':>6} {'req/s':>8} "
        f"{'p50 ms':>7} {'p99 ms':>7}"
    )
    for r in results:
        print(
            f"{r.name:<27} {r.concurrency:>4} {r.requests:>8} {r.errors:>6} {r.rps:>8.0f} "
            f"{r.p50_ms:>7.2f} {r.p99_ms:>7.2f}"
        )
    print()
    for concurrency in sorted({r.concurrency for r in results}):
        at = {r.name: r for r in results if r.concurrency == concurrency}
        ours, theirs = at["coinflow /predict rows"], at["mlflow models serve"]
        print(
            f"concurrency {concurrency:>2}: throughput {ours.rps / theirs.rps:.1f}x, "
            f"p50 {theirs.p50_ms / ours.p50_ms:.1f}x lower, "
            f"p99 {theirs.p99_ms / ours.p99_ms:.1f}x lower (same rows, same version)"
        )


if __name__ == "__main__":
    main()

"""Prometheus metrics of one app instance (its own CollectorRegistry, so apps never collide);
under `coinflow serve --workers N` (PROMETHEUS_MULTIPROC_DIR set) every worker writes its
values to the shared folder and the registry collects all workers' files."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from serving.cache import ModelCache
    from serving.log_writer import PredictionLog

# Sub-millisecond buckets: a warm forecast takes well under 1 ms.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


@dataclass
class Metrics:
    """The app's counters, latency histogram and model-version gauges."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r: CollectorRegistry | None = self.registry
        # Several workers: gauges say how they combine (a per-worker fact keeps a pid label).
        per_worker: dict[str, Any] = {}
        summed: dict[str, Any] = {}
        queued: dict[str, Any] = {}
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            # /metrics: every worker's files
            multiprocess.MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
            r = None  # the metrics below write to this worker's files only
            per_worker, summed = {"multiprocess_mode": "liveall"}, {"multiprocess_mode": "sum"}
            queued = {"multiprocess_mode": "livesum"}
        self.requests = Counter(
            "coinflow_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "coinflow_http_request_duration_seconds",
            "Request latency by route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "coinflow_predictions", "Forecasts served by model version", ["version"], registry=r
        )
        self.model_version = Gauge(
            "coinflow_model_version",
            "Registry version an alias serves (0: alias not set)",
            ["alias"],
            registry=r,
            **per_worker,
        )
        self.alias_switches = Counter(
            "coinflow_alias_switches",
            "Times a served alias moved to another version",
            ["alias"],
            registry=r,
        )
        self.registry_up = Gauge(
            "coinflow_registry_up",
            "1 when the last registry contact succeeded",
            registry=r,
            **per_worker,
        )
        self.cached_models = Gauge(
            "coinflow_cached_models", "Model versions held in memory", registry=r, **per_worker
        )
        self.log_written = Gauge(
            "coinflow_prediction_log_written",
            "Forecast records written to the log",
            registry=r,
            **summed,
        )
        self.log_dropped = Gauge(
            "coinflow_prediction_log_dropped",
            "Forecast records dropped (queue full or database down)",
            registry=r,
            **summed,
        )
        self.log_queue = Gauge(
            "coinflow_prediction_log_queue",
            "Records waiting for the log writer",
            registry=r,
            **queued,
        )
        self.shadow_failures = Counter(
            "coinflow_shadow_failures",
            "Shadow forecasts that failed (never seen by users)",
            registry=r,
        )

    def sample(self, cache: ModelCache | None, log: PredictionLog | None) -> None:
        """Set the gauges read at scrape time (each worker also does it every second)."""
        self.registry_up.set(1 if cache is not None and cache.status.reachable else 0)
        self.cached_models.set(len(cache.loaded_versions()) if cache is not None else 0)
        if log is not None:
            status = log.snapshot()
            self.log_written.set(status.written)
            self.log_dropped.set(status.dropped)
            self.log_queue.set(status.depth)

    def alias_moved(self, alias: str, version: int | None) -> None:
        """Record an alias switch (called by the model cache)."""
        self.model_version.labels(alias).set(version or 0)
        self.alias_switches.labels(alias).inc()


class MetricsMiddleware:
    """Counts and times every request; the route label is the path template, never the raw URL."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "<unmatched>"
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)

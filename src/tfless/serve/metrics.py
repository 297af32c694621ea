"""Prometheus metrics of one server process, in a registry of its own."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CONTENT_TYPE = CONTENT_TYPE_LATEST
# The model label of requests naming a model the server does not have: one series for all
# of them (a label per name let 10,000 random names grow /metrics to 27 MB)
UNKNOWN_MODEL = "__unknown__"


class ServingMetrics:
    """Request count and latency per model/version/API, batch sizes, queue depth."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # which model names get their own label; set by the app to the repository's names
        self.known_model: Callable[[str], bool] = lambda name: False
        r = self.registry
        self.disconnects = Counter(
            "tfless_client_disconnects", "Requests whose client disconnected before the "
            "request was read (not answered, not counted in tfless_requests).", ["api"],
            registry=r)
        self.connections_refused = Counter(
            "tfless_connections_refused", "Connections closed when accepted because "
            "--max-connections were open.", registry=r)
        self.connections_timed_out = Counter(
            "tfless_connections_timed_out", "Connections closed because a request's headers "
            "did not arrive within --header-timeout.", registry=r)
        self.requests = Counter(
            "tfless_requests", "Model API requests by model, version, API and HTTP status.",
            ["model", "version", "api", "status"], registry=r)
        self.latency = Histogram(
            "tfless_request_latency_seconds", "Time from request to response, by model API.",
            ["model", "version", "api"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram(
            "tfless_batch_size", "Rows in each model call made by the batcher.",
            ["model", "version"], buckets=BATCH_BUCKETS, registry=r)
        self.inference = Histogram(
            "tfless_inference_seconds", "Time of each model call made by the batcher.",
            ["model", "version"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge(
            "tfless_queue_depth", "Requests waiting in the batcher's queue.",
            ["model", "version"], registry=r)
        self.available = Gauge(
            "tfless_model_version_available", "1 while a model version is loaded and serving.",
            ["model", "version"], registry=r)

    def observe_request(self, model: str, version: str, api: str, status: int,
                        seconds: float) -> None:
        if not self.known_model(model):
            model, version = UNKNOWN_MODEL, ""
        self.requests.labels(model, version, api, str(status)).inc()
        self.latency.labels(model, version, api).observe(seconds)

    def observe_batch(self, model: str, version: str, rows: int, seconds: float) -> None:
        self.batch_size.labels(model, version).observe(rows)
        self.inference.labels(model, version).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

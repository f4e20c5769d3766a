"""The server's Prometheus metrics, in a registry of its own (several apps in one process do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .batcher import BatchStats
from .errors import KINDS

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120)


class Metrics:
    """Requests by route and status, latency, queue depth, batch sizes and errors by kind."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("routehead_requests", "HTTP requests answered, by route and status code",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("routehead_request_seconds", "Time to answer a rerank request", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("routehead_queue_depth", "Requests waiting for a batch", registry=self.registry)
        self.batch_requests = Histogram("routehead_batch_requests", "Requests served by one batched engine call",
                                        buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry)
        self.batch_tokens = Histogram("routehead_batch_tokens", "Prompt tokens of one batched engine call",
                                      buckets=(256, 1024, 4096, 16384, 65536), registry=self.registry)
        self.batch_seconds = Histogram("routehead_batch_seconds", "Engine time of one batch",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.errors = Counter("routehead_errors", "Requests refused or failed, by kind", ["kind"],
                              registry=self.registry)

    def answered(self, route: str, status: int) -> None:
        """One request answered on ``route`` (``"other"``: no route of the server's) with ``status``; an error is
        counted by its kind too."""
        self.requests.labels(route, str(status)).inc()
        if status >= 400:
            self.errors.labels(KINDS.get(status, str(status))).inc()

    def batch(self, stats: BatchStats) -> None:
        self.batch_requests.observe(stats.requests)
        self.batch_tokens.observe(stats.tokens)
        self.batch_seconds.observe(stats.seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

"""Prometheus metrics, one registry per app (tests build many apps in one process).

Request metrics are recorded by a pure ASGI middleware labelled with the route *template*
(`/v1/documents/{doc_id}`), so label cardinality stays bounded whatever clients send.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from starlette.types import ASGIApp, Message, Receive, Scope, Send

disable_created_metrics()  # the *_created series only double the scrape size

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServeMetrics:
    """The service's counters, histograms and gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tdro_requests", "HTTP requests by route, method and status.", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "tdro_request_latency_seconds", "HTTP request latency.", ["route"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "tdro_batch_size", "Inputs per model call.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "tdro_batch_padded_tokens",
            "Padded tokens (inputs x longest) per model call.",
            buckets=tuple(b * 64 for b in _BATCH_BUCKETS),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "tdro_batch_seconds", "Time the model spends on one batch.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("tdro_queue_depth", "Inputs waiting for the model.", registry=r)
        self.tokens = Counter("tdro_tokens", "Input tokens embedded, by route.", ["route"], registry=r)
        self.inputs = Counter("tdro_inputs", "Inputs embedded, by route.", ["route"], registry=r)
        self.rejected = Counter(
            "tdro_rejected", "Requests refused before reaching the model, by reason.", ["reason"], registry=r
        )


class MetricsMiddleware:
    """Count every HTTP request and time it, by route template, method and status code."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(label, scope.get("method", ""), str(status)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - start)

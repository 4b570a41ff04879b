"""Prometheus metrics: request counts and latencies, job outcomes, delivery attempts."""
from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess

__all__ = ["init_app", "REQUESTS", "LATENCY", "JOBS_FINISHED", "DELIVERY_ATTEMPTS", "STEPS_EXECUTED"]

REQUESTS = Counter("runbook_manager_http_requests_total", "HTTP requests answered.", ["method", "endpoint", "status"])
LATENCY = Histogram(
    "runbook_manager_http_request_seconds", "Time to answer an HTTP request.", ["endpoint"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
JOBS_FINISHED = Counter("runbook_manager_jobs_finished_total", "Jobs that reached a final status.", ["status"])
STEPS_EXECUTED = Counter("runbook_manager_steps_total", "Step outcomes recorded.", ["action", "status"])
DELIVERY_ATTEMPTS = Counter("runbook_manager_delivery_attempts_total", "Webhook delivery attempts.", ["outcome"])


def _registry() -> CollectorRegistry | None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return None


def init_app(app: Flask) -> None:
    """Time every request and serve ``/metrics``."""

    @app.before_request
    def _start() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        endpoint = request.endpoint or "unmatched"
        if started is not None and endpoint != "metrics":
            LATENCY.labels(endpoint).observe(time.perf_counter() - started)
            REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        return response

    @app.get("/metrics", endpoint="metrics")
    def _metrics() -> Response:
        registry = _registry()
        payload = generate_latest(registry) if registry is not None else generate_latest()
        return Response(payload, mimetype=CONTENT_TYPE_LATEST)

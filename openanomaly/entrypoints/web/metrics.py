"""The web service's own metrics: requests by route template, and /metrics."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from openanomaly.bootstrap import ApiTelemetry, api_telemetry, exposition

_telemetry: ApiTelemetry | None = None


def telemetry() -> ApiTelemetry:
    """Built on first use in each process: under gunicorn, after the fork."""
    global _telemetry
    if _telemetry is None:
        _telemetry = api_telemetry()
    return _telemetry


class RequestMetrics:
    """Counts and times every request under its URL pattern (``api/pipelines/<name>``), so a
    label never holds a pipeline name, a token id or a made-up path."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Probes and scrapers address a pod or container by IP or service name, which
        # allowed_hosts need not list: these answer before the host is checked.
        if request.path in _PROBES:
            return _probe(request)
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        route = (match.route or match.view_name) if match is not None else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        telemetry().http.observe(method, route, response.status_code,
                                 time.perf_counter() - started)
        return response


_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format: this service's requests (every gunicorn worker's) and its
    processes' CPU and memory. Public, like /healthz: no pipeline data, no secrets."""
    body, content_type = exposition(telemetry().registry)
    return HttpResponse(body, content_type=content_type)



def _probe(request: HttpRequest) -> HttpResponse:
    # urls imports the API, which needs Django set up: imported at the first request.
    from openanomaly.entrypoints.web.urls import healthz, readyz

    return {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}[request.path](request)


_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})

"""The TSDB port for Prometheus-compatible databases: HTTP query API in, remote write out."""

from __future__ import annotations

import json
import logging
import math
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import numpy as np

from openanomaly import __version__
from openanomaly.adapters.http_retry import Closing, full_jitter, retry_after
from openanomaly.adapters.tsdb.remote_write import chunk_series, encode_write_request
from openanomaly.adapters.tsdb.settings import PrometheusSettings
from openanomaly.domain.detection import StoredScoreStats
from openanomaly.domain.errors import (
    DuplicateSamples,
    QueryRejected,
    TSDBError,
    TSDBUnavailable,
    WriteRejected,
)
from openanomaly.domain.series import Series

logger = logging.getLogger(__name__)

# Prometheus refuses more than 11,000 points per series in one query; stay well below.
MAX_POINTS_PER_REQUEST = 10_000
_RETRYABLE_STATUS = frozenset({429}) | frozenset(range(500, 600))
_BODY_EXCERPT = 500
# Prometheus 2.42 answers 500 for samples older than its out-of-order window, although
# retrying can never succeed; these texts mark a 5xx write answer as final.
_FINAL_WRITE_ERRORS = ("too old sample", "out of bounds", "out of order sample")

_WRITE_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def _seconds(ms: int) -> str:
    """Exact decimal seconds for a millisecond count (a float could round the last ms)."""
    sign = "-" if ms < 0 else ""
    whole, frac = divmod(abs(ms), 1000)
    return f"{sign}{whole}.{frac:03d}"


def _written(metric: str, pipeline: str) -> str:
    """The selector of an output series family one pipeline wrote."""
    return f'{metric}{{pipeline={json.dumps(pipeline, ensure_ascii=False)}}}'


def _seconds_range(ms: int) -> str:
    return f"{max(1, round(ms / 1000))}s"


def _redacted(url: str | httpx.URL) -> str:
    """The URL without user info or query string, safe to log and to put in errors."""
    parsed = httpx.URL(str(url))
    return str(parsed.copy_with(username=None, password=None, query=None, fragment=None))


def _excerpt(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _BODY_EXCERPT else text[:_BODY_EXCERPT] + "..."


def _final_write_error(response: httpx.Response) -> bool:
    return response.status_code >= 500 and any(e in response.text for e in _FINAL_WRITE_ERRORS)


def sub_ranges(start_ms: int, end_ms: int, step_ms: int) -> list[tuple[int, int]]:
    """Cut [start, end] into ranges of at most MAX_POINTS_PER_REQUEST steps on the same
    grid; each range starts one step after the previous one ends, so none overlap."""
    if step_ms <= 0:
        raise ValueError(f"step must be positive, got {step_ms} ms")
    if end_ms < start_ms:
        raise ValueError(f"end ({end_ms}) is before start ({start_ms})")
    span = (MAX_POINTS_PER_REQUEST - 1) * step_ms
    ranges = []
    lo = start_ms
    while lo <= end_ms:
        hi = min(lo + span, end_ms)
        ranges.append((lo, hi))
        lo = hi + step_ms
    return ranges


class PrometheusAdapter(Closing):
    """Reads with ``/api/v1/query_range`` and writes with remote write 1.0.

    One pooled HTTP client serves both directions; close it with :meth:`close` or use the
    adapter as a context manager.
    """

    def __init__(self, settings: PrometheusSettings) -> None:
        self.settings = settings
        self._query_url = f"{settings.url}/api/v1/query_range"
        self._write_url = settings.effective_remote_write_url
        self._client = httpx.Client(
            timeout=settings.timeout,
            verify=self._verify(settings),
            auth=self._auth(settings),
            headers=self._headers(settings),
        )

    @staticmethod
    def _verify(settings: PrometheusSettings) -> ssl.SSLContext | bool:
        if settings.tls_insecure_skip_verify:
            return False
        if settings.tls_ca_file:
            return ssl.create_default_context(cafile=settings.tls_ca_file)
        return True

    @staticmethod
    def _auth(settings: PrometheusSettings) -> httpx.BasicAuth | None:
        if settings.basic_auth is None:
            return None
        return httpx.BasicAuth(
            settings.basic_auth.username, settings.basic_auth.password.get_secret_value()
        )

    @staticmethod
    def _headers(settings: PrometheusSettings) -> dict[str, str]:
        headers = {"User-Agent": f"openanomaly/{__version__}", **settings.headers}
        if settings.bearer_token is not None:
            headers["Authorization"] = f"Bearer {settings.bearer_token.get_secret_value()}"
        return headers

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()

    # -- transport with retries --------------------------------------------------------

    def _backoff(self, retry: int, response: httpx.Response | None) -> float:
        cap = self.settings.retry_backoff_max
        hinted = retry_after(response)
        if hinted is not None:
            return min(hinted, cap)
        return full_jitter(retry, self.settings.retry_backoff, cap)

    def _send(
        self, method: str, url: str, final: Callable[[httpx.Response], bool] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries on connection errors, timeouts, 5xx and 429.

        Returns the first response with any other status, or one that ``final`` accepts;
        raises TSDBUnavailable once the retries are spent.
        """
        attempts = self.settings.max_retries + 1
        where = _redacted(url)
        for attempt in range(1, attempts + 1):
            response: httpx.Response | None = None
            try:
                response = self._client.request(method, url, **kwargs)
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                raise TSDBError(
                    f"cannot send to {url!r}: {str(exc).rstrip('.')}; "
                    "set a URL such as http://prometheus:9090"
                ) from exc
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.status_code not in _RETRYABLE_STATUS or (
                    final is not None and final(response)
                ):
                    return response
                error = f"HTTP {response.status_code}: {_excerpt(response.text)}"
            if attempt == attempts:
                raise TSDBUnavailable(
                    f"{method} {where} failed after {attempts} attempt(s); last error: {error}. "
                    "Check that the database is running and reachable at this URL."
                )
            delay = self._backoff(attempt - 1, response)
            logger.warning(
                "retrying %s %s (attempt %d of %d failed: %s) in %.2fs",
                method, where, attempt, attempts, error, delay,
                extra={"attempt": attempt, "max_attempts": attempts, "delay_s": delay,
                       "url": where},
            )
            time.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    # -- reads -------------------------------------------------------------------------

    def query_range(self, query: str, start_ms: int, end_ms: int, step_ms: int) -> list[Series]:
        """Evaluate ``query`` at start, start+step, ... <= end; every label kept.

        Long ranges are fetched in several requests and merged per label set; steps where
        the query has no value are absent from the result (never zero-filled).
        """
        merged: dict[frozenset[tuple[str, str]], list[tuple[np.ndarray, np.ndarray]]] = {}
        labels_of: dict[frozenset[tuple[str, str]], dict[str, str]] = {}
        for lo, hi in sub_ranges(start_ms, end_ms, step_ms):
            form = {
                "query": query,
                "start": _seconds(lo),
                "end": _seconds(hi),
                "step": _seconds(step_ms),
            }
            for labels, timestamps, values in self._fetch_matrix(query, form):
                key = frozenset(labels.items())
                labels_of.setdefault(key, labels)
                merged.setdefault(key, []).append((timestamps, values))
        return [self._join(labels_of[key], parts) for key, parts in merged.items()]

    # -- the project's own outputs, read back for calibration --------------------------

    def read_written(self, metric: str, pipeline: str, start_ms: int, end_ms: int,
                     step_ms: int) -> list[Series]:
        return self.query_range(_written(metric, pipeline), start_ms, end_ms, step_ms)

    def peak_written(self, metric: str, pipeline: str, start_ms: int, end_ms: int,
                     step_ms: int) -> Series | None:
        found = self.query_range(
            f"max(max_over_time({_written(metric, pipeline)}[{_seconds_range(step_ms)}]))",
            start_ms, end_ms, step_ms)
        return found[0] if found else None

    def score_stats(self, metric: str, pipeline: str, at_ms: int, quantile: float,
                    quantile_window_ms: int, peak_window_ms: int | None,
                    ) -> list[StoredScoreStats]:
        """Two instant evaluations (``quantile_over_time`` and ``max_over_time``) at
        ``at``, joined by label set; the function results carry no ``__name__``."""
        selector = _written(metric, pipeline)

        def at_instant(query: str) -> dict[frozenset[tuple[str, str]], float]:
            # An instant evaluation as a one-step range keeps one code path for reads.
            return {frozenset(found.labels.items()): float(found.values[-1])
                    for found in self.query_range(query, at_ms, at_ms, 1000)
                    if found.values.size}

        quantiles = at_instant(f"quantile_over_time({quantile:g}, "
                               f"{selector}[{_seconds_range(quantile_window_ms)}])")
        peaks = (at_instant(f"max_over_time({selector}[{_seconds_range(peak_window_ms)}])")
                 if peak_window_ms is not None else {})
        return [StoredScoreStats(dict(key), quantiles.get(key, math.nan),
                                 peaks.get(key, math.nan))
                for key in quantiles.keys() | peaks.keys()]

    @staticmethod
    def _join(labels: dict[str, str], parts: list[tuple[np.ndarray, np.ndarray]]) -> Series:
        timestamps = np.concatenate([p[0] for p in parts])
        values = np.concatenate([p[1] for p in parts])
        order = np.argsort(timestamps, kind="stable")
        return Series(labels, timestamps[order], values[order])

    def _fetch_matrix(
        self, query: str, form: dict[str, str]
    ) -> list[tuple[dict[str, str], np.ndarray, np.ndarray]]:
        response = self._send("POST", self._query_url, data=form)
        where = _redacted(self._query_url)
        status = response.status_code
        if status in (400, 422):
            raise QueryRejected(
                f"Prometheus at {where} rejected the query {query!r}: {self._error_text(response)}"
            )
        if status >= 300:
            raise TSDBError(self._status_message(f"query {query!r}", where, response))
        try:
            payload = response.json()
            data = payload["data"]
            result_type = data["resultType"]
            result = data["result"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise TSDBError(
                f"{where} answered the query {query!r} with something that is not a "
                f"Prometheus API response ({exc!r}): {_excerpt(response.text)}"
            ) from exc
        for warning in payload.get("warnings") or []:
            logger.warning("Prometheus warning for query %r: %s", query, warning)
        if result_type != "matrix":
            raise QueryRejected(
                f"the query {query!r} returned a {result_type}; it must return a range vector "
                "of series (an instant-vector expression such as a metric selector, rate(...) "
                "or sum by (...) (...), not a scalar or string)"
            )
        return [self._parse_series(item) for item in result]

    @staticmethod
    def _parse_series(item: dict[str, Any]) -> tuple[dict[str, str], np.ndarray, np.ndarray]:
        labels = dict(item.get("metric") or {})
        points = item.get("values") or []
        if item.get("histograms"):
            logger.warning("ignoring native histogram samples of series %s", labels)
        seconds = np.fromiter((p[0] for p in points), dtype=np.float64, count=len(points))
        timestamps = np.rint(seconds * 1000).astype(np.int64)
        # float() reads Prometheus' "NaN", "+Inf" and "-Inf" spellings.
        values = np.fromiter((float(p[1]) for p in points), dtype=np.float64, count=len(points))
        return labels, timestamps, values

    @staticmethod
    def _error_text(response: httpx.Response) -> str:
        try:
            error = response.json().get("error")
        except (json.JSONDecodeError, AttributeError):
            error = None
        return str(error) if error else _excerpt(response.text)

    @staticmethod
    def _status_message(what: str, where: str, response: httpx.Response) -> str:
        hint = ""
        if response.status_code in (401, 403):
            hint = " Check bearer_token or basic_auth in the prometheus settings."
        elif response.status_code == 404:
            hint = " Check the URL (and its path prefix, e.g. /prometheus for Mimir)."
        return (
            f"{where} answered {what} with HTTP {response.status_code}: "
            f"{_excerpt(response.text)}.{hint}"
        )

    # -- writes ------------------------------------------------------------------------

    def write(self, series: Sequence[Series]) -> None:
        """Push ``series`` with remote write, in requests of at most write_batch_samples.

        Chunks are sent in order; if one fails, the earlier ones stay written (a re-run
        writes identical samples, which Prometheus accepts).
        """
        for chunk in chunk_series(series, self.settings.write_batch_samples):
            self._write_chunk(encode_write_request(chunk))

    def _write_chunk(self, body: bytes) -> None:
        response = self._send(
            "POST", self._write_url, final=_final_write_error, content=body,
            headers=_WRITE_HEADERS,
        )
        if response.status_code < 300:
            return
        where = _redacted(self._write_url)
        text = _excerpt(response.text)
        if _final_write_error(response):
            raise WriteRejected(
                f"{where} rejected the remote write with HTTP {response.status_code}: {text} "
                "(samples outside the database's accepted time range; for history, raise "
                "storage.tsdb.out_of_order_time_window in the Prometheus config)"
            )
        if response.status_code == 400 and "duplicate sample for timestamp" in text:
            raise DuplicateSamples(
                f"{where} already holds different values at some written timestamps "
                f"(HTTP 400: {text}); the slot was written before with other values"
            )
        if 400 <= response.status_code < 500:
            raise WriteRejected(
                f"{where} rejected the remote write with HTTP {response.status_code}: {text}"
            )
        raise TSDBError(self._status_message("the remote write", where, response))

    # -- health ------------------------------------------------------------------------

    def ping(self) -> None:
        """Check once, without retries, that the query API answers.

        Raises TSDBUnavailable when unreachable, TSDBError when it answers with an error
        (bad credentials, wrong path).
        """
        url = f"{self.settings.url}/api/v1/status/buildinfo"
        where = _redacted(url)
        try:
            response = self._client.get(url)
            if response.status_code == 404:
                # Not every compatible database serves buildinfo; any query will do.
                url = f"{self.settings.url}/api/v1/query"
                where = _redacted(url)
                response = self._client.get(url, params={"query": "vector(1)"})
        except httpx.TransportError as exc:
            raise TSDBUnavailable(
                f"cannot reach {where}: {type(exc).__name__}: {exc}. "
                "Check that the database is running and the URL is right."
            ) from exc
        if response.status_code >= 500:
            raise TSDBUnavailable(self._status_message("a health check", where, response))
        if response.status_code >= 300:
            raise TSDBError(self._status_message("a health check", where, response))

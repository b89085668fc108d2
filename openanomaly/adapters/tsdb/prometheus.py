"""The TSDB port for Prometheus-compatible databases: HTTP query API in, remote write out."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from openanomaly import __version__
from openanomaly.adapters.http_retry import Closing, full_jitter, retry_after
from openanomaly.adapters.tsdb.answers import (
    Budget,
    RawSeries,
    decode_matrix,
    excerpt,
    query_budget,
)
from openanomaly.adapters.tsdb.remote_write import chunk_series, encode_write_request
from openanomaly.adapters.tsdb.settings import PrometheusSettings
from openanomaly.adapters.tsdb.tls import tls_context
from openanomaly.domain.detection import StoredScoreStats
from openanomaly.domain.errors import (
    BadResponse,
    DuplicateSamples,
    OutOfOrderSamples,
    QueryRejected,
    ResponseTooLarge,
    TSDBError,
    TSDBUnavailable,
    WriteRejected,
)
from openanomaly.domain.redaction import redact
from openanomaly.domain.series import Series
from openanomaly.domain.stages import part

logger = logging.getLogger(__name__)

# Names which statistic a row of the combined tail query holds (see score_stats).
_STAT_LABEL = "openanomaly_statistic"

# Prometheus refuses more than 11,000 points per series in one query; stay well below.
MAX_POINTS_PER_REQUEST = 10_000
# Points of all series in one answer, at most (by the query's series bound): a large
# query is read in time slices whose answers each decode within bounded memory.
MAX_POINTS_PER_ANSWER = 5_000_000
# Reads that name no series bound (the demo, tools) get the budget of a pipeline with
# the default max_series.
DEFAULT_SERIES_BOUND = 1000
_RETRYABLE_STATUS = frozenset({429}) | frozenset(range(500, 600))
# Error answers (and write answers) are only quoted in messages: the start of the body
# says what went wrong.
_QUOTED_BODY_BYTES = 64 * 1024
_PING_BODY_BYTES = 1024 * 1024
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


@dataclass(frozen=True)
class _Answer:
    """A response whose body was read (within a byte limit) and whose stream is closed."""

    response: httpx.Response  # status and headers only: the body is ``body``
    body: bytes

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def _final_write_error(answer: _Answer) -> bool:
    return answer.status_code >= 500 and any(e in answer.text for e in _FINAL_WRITE_ERRORS)


def _read_start(response: httpx.Response, size: int) -> bytes:
    """The first ``size`` bytes of the body; the rest is never read."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= size:
            break
    return bytes(body[:size])


def _read_within(response: httpx.Response, budget: Budget, describe: str) -> bytes:
    """The whole (decompressed) body, refused as soon as it grows past the budget."""
    def too_large() -> ResponseTooLarge:
        return ResponseTooLarge(
            f"{describe} with more than {budget.limit:,} bytes, {budget.reason}")

    declared = response.headers.get("Content-Length", "")
    # A compressed body's length says nothing about its decoded size.
    if ("Content-Encoding" not in response.headers and declared.isdigit()
            and int(declared) > budget.limit):
        raise too_large()
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > budget.limit:
            raise too_large()
    return bytes(body)


def sub_ranges(start_ms: int, end_ms: int, step_ms: int,
               max_series: int = DEFAULT_SERIES_BOUND) -> list[tuple[int, int]]:
    """Cut [start, end] into ranges on the same grid of at most MAX_POINTS_PER_REQUEST
    steps, and of at most MAX_POINTS_PER_ANSWER points for ``max_series`` series (but
    never under 60 steps); each range starts one step after the previous one ends, so
    none overlap."""
    if step_ms <= 0:
        raise ValueError(f"step must be positive, got {step_ms} ms")
    if end_ms < start_ms:
        raise ValueError(f"end ({end_ms}) is before start ({start_ms})")
    steps = min(MAX_POINTS_PER_REQUEST, max(60, MAX_POINTS_PER_ANSWER // max(1, max_series)))
    span = (steps - 1) * step_ms
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
        # Per request, they win over the client's shared headers of the same name; the
        # remote-write protocol's own headers win over the user's.
        self._read_headers = dict(settings.read_headers)
        self._write_headers = {**settings.write_headers, **_WRITE_HEADERS}
        self._client = httpx.Client(
            timeout=settings.timeout,
            verify=tls_context(settings),
            auth=self._auth(settings),
            headers=self._headers(settings),
        )

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

    def _backoff(self, retry: int, answer: _Answer | None) -> float:
        cap = self.settings.retry_backoff_max
        hinted = retry_after(answer.response if answer is not None else None)
        if hinted is not None:
            return min(hinted, cap)
        return full_jitter(retry, self.settings.retry_backoff, cap)

    def _request(self, method: str, url: str, budget: Budget | None, describe: str,
                 **kwargs: Any) -> _Answer:
        """One request, its body streamed: a successful answer's within ``budget``; an
        error answer's, or one without a budget (a write's), first bytes only."""
        try:
            with self._client.stream(method, url, **kwargs) as response:
                if response.status_code >= 300 or budget is None:
                    return _Answer(response, _read_start(response, _QUOTED_BODY_BYTES))
                return _Answer(response, _read_within(response, budget, describe))
        except httpx.DecodingError as exc:
            raise BadResponse(f"{redact(url)} answered with a body that cannot be decoded as "
                              f"its Content-Encoding says: {redact(str(exc))}") from None

    def _send(
        self, method: str, url: str, *, budget: Budget | None = None, describe: str = "",
        final: Callable[[_Answer], bool] | None = None, **kwargs: Any,
    ) -> _Answer:
        """Send with retries on connection errors, timeouts, 5xx and 429.

        Returns the first answer with any other status, or one that ``final`` accepts;
        raises TSDBUnavailable once the retries are spent, ResponseTooLarge for a body
        over ``budget``.
        """
        attempts = self.settings.max_retries + 1
        where = redact(url)
        for attempt in range(1, attempts + 1):
            answer: _Answer | None = None
            try:
                answer = self._request(method, url, budget, describe, **kwargs)
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                raise TSDBError(
                    f"cannot send to {where!r}: {redact(str(exc)).rstrip('.')}; "
                    "set a URL such as http://prometheus:9090"
                ) from None
            except httpx.TransportError as exc:
                error = (f"{type(exc).__name__}: {redact(str(exc))}" if str(exc)
                         else type(exc).__name__)
            else:
                if answer.status_code not in _RETRYABLE_STATUS or (
                    final is not None and final(answer)
                ):
                    return answer
                error = f"HTTP {answer.status_code}: {excerpt(answer.text)}"
            if attempt == attempts:
                hint = ("Check tls_ca_file, tls_client_cert and tls_client_key in the "
                        "prometheus settings" if "[SSL" in error else
                        "Check that the database is running and reachable at this URL")
                raise TSDBUnavailable(f"{method} {where} failed after {attempts} attempt(s); "
                                      f"last error: {error}. {hint}.")
            delay = self._backoff(attempt - 1, answer)
            logger.warning(
                "retrying %s %s (attempt %d of %d failed: %s) in %.2fs",
                method, where, attempt, attempts, error, delay,
                extra={"attempt": attempt, "max_attempts": attempts, "delay_s": delay,
                       "url": where},
            )
            time.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    # -- reads -------------------------------------------------------------------------

    def query_range(self, query: str, start_ms: int, end_ms: int, step_ms: int, *,
                    max_series: int | None = None) -> list[Series]:
        """Evaluate ``query`` at start, start+step, ... <= end; every label kept.

        Long ranges are fetched in several requests and merged per label set; steps where
        the query has no value are absent from the result (never zero-filled). Each answer
        is read within a byte budget for ``max_series`` series (ResponseTooLarge beyond).
        """
        merged: dict[frozenset[tuple[str, str]], list[tuple[np.ndarray, np.ndarray]]] = {}
        labels_of: dict[frozenset[tuple[str, str]], dict[str, str]] = {}
        for lo, hi in sub_ranges(start_ms, end_ms, step_ms,
                                 max_series or DEFAULT_SERIES_BOUND):
            form = {
                "query": query,
                "start": _seconds(lo),
                "end": _seconds(hi),
                "step": _seconds(step_ms),
            }
            budget = query_budget(self.settings.max_response_bytes,
                                  max_series or DEFAULT_SERIES_BOUND, (hi - lo) // step_ms + 1)
            for labels, timestamps, values in self._fetch_matrix(query, form, budget):
                key = frozenset(labels.items())
                labels_of.setdefault(key, labels)
                merged.setdefault(key, []).append((timestamps, values))
        with part("decode"):
            return [self._join(labels_of[key], parts) for key, parts in merged.items()]

    # -- the project's own outputs, read back for calibration --------------------------

    def read_written(self, metric: str, pipeline: str, start_ms: int, end_ms: int,
                     step_ms: int, *, max_series: int | None = None) -> list[Series]:
        return self.query_range(_written(metric, pipeline), start_ms, end_ms, step_ms,
                                max_series=max_series)

    def peak_written(self, metric: str, pipeline: str, start_ms: int, end_ms: int,
                     step_ms: int) -> Series | None:
        found = self.query_range(
            f"max(max_over_time({_written(metric, pipeline)}[{_seconds_range(step_ms)}]))",
            start_ms, end_ms, step_ms, max_series=1)  # max(...) is one series at most
        return found[0] if found else None

    def score_stats(self, metric: str, pipeline: str, at_ms: int, quantile: float,
                    quantile_window_ms: int, peak_window_ms: int | None, *,
                    max_series: int | None = None,
                    tail_levels: Sequence[float] = (),
                    recurring: tuple[int, int] | None = None,
                    recent_levels: Sequence[float] = (),
                    recent_below: int | None = None) -> list[StoredScoreStats]:
        """Instant evaluations (``quantile_over_time``, ``max_over_time``, and for the tail
        and for the recent statistics one query each of quantiles and ``count_over_time``)
        at ``at`` (the recurring maximum at its own end), joined by label set; the function
        results carry no ``__name__``."""
        selector = _written(metric, pipeline)
        window = _seconds_range(quantile_window_ms)

        def at_instant(query: str, per_series: int = 1, when_ms: int = at_ms,
                       ) -> dict[frozenset[tuple[str, str]], float]:
            # An instant evaluation as a one-step range keeps one code path for reads.
            bound = None if max_series is None else max_series * per_series
            return {frozenset(found.labels.items()): float(found.values[-1])
                    for found in self.query_range(query, when_ms, when_ms, 1000,
                                                  max_series=bound)
                    if found.values.size}

        # Full precision: a rounded level would read back another quantile than a
        # backfill computes in memory.
        quantiles = at_instant(f"quantile_over_time({quantile!r}, {selector}[{window}])")
        peaks = (at_instant(f"max_over_time({selector}[{_seconds_range(peak_window_ms)}])")
                 if peak_window_ms is not None else {})
        again = ({} if recurring is None else at_instant(
            f"max_over_time({selector}[{_seconds_range(recurring[1])}])",
            when_ms=recurring[0]))

        def levels_and_count(levels: Sequence[float], over: str, below: int | None = None,
                             ) -> dict[frozenset[tuple[str, str]], dict[str, float]]:
            # One request: each statistic is told apart by a label of its own.
            count = f"count_over_time({selector}[{over}])"
            parts = [f"quantile_over_time({level!r}, {selector}[{over}])" for level in levels]
            if below is not None:
                # Only the series with fewer samples: the others send nothing back.
                count = f"{count} < {below}"
                parts = [f"{part} and {count}" for part in parts]
            parts.append(count)
            names = [f"q{index}" for index in range(len(levels))] + ["count"]
            query = " or ".join(
                f'label_replace({part}, "{_STAT_LABEL}", "{name}", "", "")'
                for part, name in zip(parts, names, strict=True))
            found: dict[frozenset[tuple[str, str]], dict[str, float]] = {}
            for key, value in at_instant(query, len(parts)).items():
                labels = dict(key)
                stat = labels.pop(_STAT_LABEL, "")
                found.setdefault(frozenset(labels.items()), {})[stat] = value
            return found

        tails = levels_and_count(tail_levels, window) if tail_levels else {}
        asked_recent = bool(recent_levels) and peak_window_ms is not None
        recent = (levels_and_count(recent_levels, _seconds_range(peak_window_ms or 0),
                                   recent_below) if asked_recent else {})
        out = []
        for key in quantiles.keys() | peaks.keys() | tails.keys() | again.keys():
            found = tails.get(key, {})
            tail = (tuple(found.get(f"q{i}", math.nan) for i in range(len(tail_levels)))
                    if tail_levels else ())
            latest = recent.get(key, {})
            levels = (tuple(latest.get(f"q{i}", math.nan) for i in range(len(recent_levels)))
                      if asked_recent else ())
            out.append(StoredScoreStats(dict(key), quantiles.get(key, math.nan),
                                        peaks.get(key, math.nan), tail,
                                        found.get("count", math.nan),
                                        again.get(key, math.nan),
                                        levels, latest.get("count", math.nan)))
        return out

    @staticmethod
    def _join(labels: dict[str, str], parts: list[tuple[np.ndarray, np.ndarray]]) -> Series:
        timestamps = np.concatenate([p[0] for p in parts])
        values = np.concatenate([p[1] for p in parts])
        order = np.argsort(timestamps, kind="stable")
        return Series(labels, timestamps[order], values[order])

    def _fetch_matrix(self, query: str, form: dict[str, str], budget: Budget,
                      ) -> list[RawSeries]:
        where = redact(self._query_url)
        describe = f"{where} answered the query {query!r}"
        with part("http"):
            answer = self._send("POST", self._query_url, budget=budget, describe=describe,
                                data=form, headers=self._read_headers)
        status = answer.status_code
        if status in (400, 422):
            raise QueryRejected(
                f"Prometheus at {where} rejected the query {query!r}: {self._error_text(answer)}"
            )
        if status >= 300:
            raise TSDBError(self._status_message(f"query {query!r}", where, answer))
        with part("decode"):
            series, warnings = decode_matrix(answer.body, describe)
        for warning in warnings:
            logger.warning("Prometheus warning for query %r: %s", query, warning)
        return series

    @staticmethod
    def _error_text(answer: _Answer) -> str:
        try:
            error = json.loads(answer.body).get("error")
        except (ValueError, AttributeError):  # not JSON (UnicodeDecodeError is a ValueError)
            error = None
        return excerpt(str(error)) if error else excerpt(answer.text)

    @staticmethod
    def _status_message(what: str, where: str, answer: _Answer) -> str:
        hint = ""
        if answer.status_code in (401, 403):
            hint = (" Check bearer_token, basic_auth, the TLS client certificate and the "
                    "tenant headers in the prometheus settings.")
        elif answer.status_code == 404:
            hint = " Check the URL (and its path prefix, e.g. /prometheus for Mimir)."
        return (
            f"{where} answered {what} with HTTP {answer.status_code}: "
            f"{excerpt(answer.text)}.{hint}"
        )

    # -- writes ------------------------------------------------------------------------

    def write(self, series: Sequence[Series]) -> None:
        """Push ``series`` with remote write, in requests of at most write_batch_samples.

        Chunks are sent in order; if one fails, the earlier ones stay written, and a re-run
        of the slot finds them stored (the first write stands).
        """
        with part("encode"):
            chunks = chunk_series(series, self.settings.write_batch_samples)
        for chunk in chunks:
            with part("encode"):
                body = encode_write_request(chunk)
            with part("http"):
                self._write_chunk(body)

    def _write_chunk(self, body: bytes) -> None:
        answer = self._send(
            "POST", self._write_url, final=_final_write_error, content=body,
            headers=self._write_headers,
        )
        if answer.status_code < 300:
            return
        where = redact(self._write_url)
        text = excerpt(answer.text)
        if answer.status_code in (400, 500) and "out of order sample" in text:
            raise OutOfOrderSamples(
                f"{where} rejected the remote write with HTTP {answer.status_code}: {text} "
                "(it holds newer samples of these series: a re-run of a written slot, or "
                "history written without storage.tsdb.out_of_order_time_window)")
        if _final_write_error(answer):
            raise WriteRejected(
                f"{where} rejected the remote write with HTTP {answer.status_code}: {text} "
                "(samples outside the database's accepted time range; for history, raise "
                "storage.tsdb.out_of_order_time_window in the Prometheus config)"
            )
        if answer.status_code == 400 and "duplicate sample for timestamp" in text:
            raise DuplicateSamples(
                f"{where} already holds different values at some written timestamps "
                f"(HTTP 400: {text}); the slot was written before with other values"
            )
        if 400 <= answer.status_code < 500:
            raise WriteRejected(
                f"{where} rejected the remote write with HTTP {answer.status_code}: {text}"
            )
        raise TSDBError(self._status_message("the remote write", where, answer))

    # -- health ------------------------------------------------------------------------

    def ping(self) -> None:
        """Check once, without retries, that the query API answers.

        Raises TSDBUnavailable when unreachable, TSDBError when it answers with an error
        (bad credentials, wrong path).
        """
        url = f"{self.settings.url}/api/v1/status/buildinfo"
        where = redact(url)
        budget = Budget(_PING_BODY_BYTES, "too large for a health check")
        try:
            answer = self._request("GET", url, budget, f"{where} answered a health check",
                                   headers=self._read_headers)
            if answer.status_code == 404:
                # Not every compatible database serves buildinfo; any query will do.
                url = f"{self.settings.url}/api/v1/query"
                where = redact(url)
                answer = self._request("GET", url, budget, f"{where} answered a health check",
                                       params={"query": "vector(1)"},
                                       headers=self._read_headers)
        except httpx.TransportError as exc:
            raise TSDBUnavailable(
                f"cannot reach {where}: {type(exc).__name__}: {redact(str(exc))}. "
                "Check that the database is running and the URL is right."
            ) from None
        if answer.status_code >= 500:
            raise TSDBUnavailable(self._status_message("a health check", where, answer))
        if answer.status_code >= 300:
            raise TSDBError(self._status_message("a health check", where, answer))

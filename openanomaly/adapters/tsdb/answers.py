"""The answers of the Prometheus query API: how many bytes one may take, and strict
decoding of its JSON.

Any answer that does not have the documented shape becomes a ``BadResponse`` that quotes
the offending part, never a Python exception from deep inside the decoding.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from openanomaly.domain.errors import BadResponse, QueryRejected
from openanomaly.domain.redaction import redact

logger = logging.getLogger(__name__)

# A point is written as [1714000000.123,"12345.678901234"] (about 35 bytes); 64 leaves
# room for long floats. Labels of one series rarely take more than a kilobyte.
BYTES_PER_POINT = 64
BYTES_PER_SERIES = 4096
# status, resultType, warnings: the answer's frame around the series.
ENVELOPE_BYTES = 64 * 1024
EXCERPT_CHARS = 500

RawSeries = tuple[dict[str, str], np.ndarray, np.ndarray]
"""Labels, timestamps (int64 ms) and values (float64) of one series of an answer."""


def excerpt(text: str) -> str:
    """At most EXCERPT_CHARS of ``text``, secrets masked: for error messages."""
    text = redact(text.strip())
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "..."


def _shown(value: Any) -> str:
    return excerpt(json.dumps(value, ensure_ascii=False, allow_nan=True))


@dataclass(frozen=True)
class Budget:
    """The most bytes one answer may take, and how to raise it (for the error)."""

    limit: int
    reason: str


def query_budget(max_response_bytes: int | None, max_series: int, points: int) -> Budget:
    """The byte limit of an answer holding at most ``max_series`` series of ``points``
    points each, unless prometheus.max_response_bytes sets one."""
    if max_response_bytes is not None:
        return Budget(max_response_bytes, f"prometheus.max_response_bytes={max_response_bytes}"
                      "; raise it, or narrow the query")
    limit = max_series * (points * BYTES_PER_POINT + BYTES_PER_SERIES) + ENVELOPE_BYTES
    return Budget(limit, (
        f"the limit for max_series={max_series} series of {points} point(s) "
        f"({BYTES_PER_POINT} bytes a point, {BYTES_PER_SERIES} bytes of labels a series); "
        "narrow the query, raise the pipeline's max_series, or set "
        "prometheus.max_response_bytes"))


class _Malformed(Exception):
    """A part of the answer that is not what the API documents."""

    def __init__(self, problem: str, part: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.part = part


def decode_matrix(body: bytes, describe: str) -> tuple[list[RawSeries], list[str]]:
    """The series and warnings of a query_range answer.

    ``describe`` starts every message, e.g. "http://db/api/v1/query_range answered the
    query 'up'". Raises BadResponse for anything but the API's matrix answer, and
    QueryRejected when the query evaluates to something that is not series.
    """
    fast = _decode_typed(body)
    # Anything the typed decoding did not take is judged part by part, to name what is
    # wrong.
    return fast if fast is not None else _decode_generic(body, describe)


def _decode_generic(body: bytes, describe: str) -> tuple[list[RawSeries], list[str]]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadResponse(f"{describe} with a body that is not JSON ({exc}): "
                          f"{excerpt(body[:4 * EXCERPT_CHARS].decode('utf-8', 'replace'))}"
                          ) from None
    try:
        data = _data(payload)
        result_type = data.get("resultType")
        if result_type in ("vector", "scalar", "string"):
            raise QueryRejected(
                f"{describe} with a {result_type}: {_shown(data.get('result'))}; it must "
                "return a range vector of series (an instant-vector expression such as a "
                "metric selector, rate(...) or sum by (...) (...), not a scalar or string)")
        if result_type != "matrix":
            raise _Malformed("data.resultType is not matrix", data)
        result = data.get("result")
        if not isinstance(result, list):
            raise _Malformed("data.result is not a list", data)
        warnings = payload.get("warnings") or []
        if not isinstance(warnings, list):
            warnings = [warnings]
        return [_series(item) for item in result], [str(w) for w in warnings]
    except _Malformed as exc:
        raise BadResponse(f"{describe} with something that is not a Prometheus API answer: "
                          f"{exc.problem}: {_shown(exc.part)}") from None


class _TypedSeries(msgspec.Struct):
    metric: dict[str, str] = {}
    values: list[tuple[float, str | float]] = []
    histograms: Any = None


class _TypedData(msgspec.Struct):
    resultType: str
    result: list[_TypedSeries]


class _TypedAnswer(msgspec.Struct):
    status: str = "success"
    data: _TypedData | None = None
    warnings: list[str] = []


# A well-formed matrix answer, decoded in one pass without a Python object per point's
# list: about four times faster than the generic decoding, which stays as the judge of
# anything else.
_TYPED = msgspec.json.Decoder(_TypedAnswer)


def _decode_typed(body: bytes) -> tuple[list[RawSeries], list[str]] | None:
    """The series and warnings of a well-formed matrix answer; None for anything else."""
    try:
        answer = _TYPED.decode(body)
    except msgspec.DecodeError:  # also a ValidationError: another shape
        return None
    data = answer.data
    if answer.status != "success" or data is None or data.resultType != "matrix":
        return None
    out: list[RawSeries] = []
    for item in data.result:
        points = item.values
        try:
            # float() spellings, as for the generic decoding: "NaN", "+Inf", "-Inf".
            values = np.array([value for _, value in points], dtype=np.float64)
        except (TypeError, ValueError):
            return None
        if item.histograms:
            logger.warning("ignoring native histogram samples of series %s", item.metric)
        seconds = np.fromiter((at for at, _ in points), np.float64, len(points))
        out.append((item.metric, np.rint(seconds * 1000).astype(np.int64), values))
    return out, answer.warnings


def _data(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise _Malformed("the body is not a JSON object", payload)
    status = payload.get("status", "success")
    if status != "success":
        raise _Malformed(f"status is {status!r}", payload)
    data = payload.get("data")
    if not isinstance(data, dict):
        raise _Malformed("data is missing or not an object", payload)
    return data


def _series(item: Any) -> RawSeries:
    if not isinstance(item, dict):
        raise _Malformed("a series is not an object", item)
    labels = item.get("metric", {})
    if not isinstance(labels, dict) or not all(
            isinstance(v, str) for v in labels.values()):
        raise _Malformed("a series' metric is not an object of string labels", item)
    points = item.get("values", [])
    if not isinstance(points, list):
        raise _Malformed("a series' values is not a list", item)
    if item.get("histograms"):
        logger.warning("ignoring native histogram samples of series %s", labels)
    pairs = np.array([_point(p, labels) for p in points], dtype=np.float64).reshape(-1, 2)
    timestamps = np.rint(pairs[:, 0] * 1000).astype(np.int64)
    return labels, timestamps, pairs[:, 1]


def _point(point: Any, labels: dict[str, str]) -> tuple[float, float]:
    where = {"metric": labels, "sample": point}
    if not isinstance(point, list) or len(point) != 2:
        raise _Malformed("a sample is not a [timestamp, value] pair", where)
    seconds, value = point
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise _Malformed("a sample's timestamp is not a number", where)
    # The API sends values as strings (NaN and Inf too); a plain number is read as well.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Malformed("a sample's value is not a number", where)
    try:
        # float() reads Prometheus' "NaN", "+Inf" and "-Inf" spellings.
        return float(seconds), float(value)
    except ValueError:
        raise _Malformed("a sample's value is not a number", where) from None

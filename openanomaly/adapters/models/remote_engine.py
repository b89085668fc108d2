"""The HTTP client of an OpenAnomaly model server (``openanomaly serve-model``).

Requests travel in the binary tensor framing, which ``entrypoints.model_server.app``
describes in full: a 4-byte little-endian header length, a UTF-8 JSON header with ``shape``
and ``dtype``, then the little-endian array. The framing helpers live here, beside the client,
so that the server (an entrypoint) imports them from the adapter and not the other way round.
"""

from __future__ import annotations

import json
import logging
import math
import struct
import time
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from openanomaly.adapters.http_retry import Closing, full_jitter, retry_after
from openanomaly.adapters.models.settings import RemoteSettings
from openanomaly.domain.errors import ModelError, UnknownModel
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast
from openanomaly.domain.series import FloatArray

log = logging.getLogger(__name__)

TENSOR_MEDIA_TYPE = "application/x-openanomaly-tensor"
DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8")}
_HEADER_LENGTH = struct.Struct("<I")
# Longest wait a server's Retry-After may impose on one retry.
_MAX_RETRY_AFTER = 30.0


class FrameError(ValueError):
    """A tensor frame is malformed: the message says which part and how."""


def encode_frame(header: dict[str, Any], values: np.ndarray, dtype: str = "float64") -> bytes:
    """Frame ``values`` with ``header``; ``shape`` and ``dtype`` are filled in from the array."""
    data = np.ascontiguousarray(values, dtype=DTYPES[dtype])
    full = {**header, "shape": list(data.shape), "dtype": dtype}
    raw = json.dumps(full, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return b"".join((_HEADER_LENGTH.pack(len(raw)), raw, data.tobytes()))


def decode_frame(body: bytes) -> tuple[dict[str, Any], FloatArray]:
    """Split a frame into its JSON header and its array, as float64 of the header's shape."""
    if len(body) < _HEADER_LENGTH.size:
        raise FrameError(
            f"body of {len(body)} bytes is shorter than the 4-byte header length that starts it"
        )
    (length,) = _HEADER_LENGTH.unpack_from(body)
    start = _HEADER_LENGTH.size + length
    if start > len(body):
        raise FrameError(
            f"the header length says {length} bytes but only {len(body) - 4} follow it"
        )
    try:
        header = json.loads(body[_HEADER_LENGTH.size:start].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FrameError(f"the header is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise FrameError("the header must be a JSON object")
    shape = header.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise FrameError(f"header shape must be a list of non-negative integers, got {shape!r}")
    dtype = DTYPES.get(str(header.get("dtype")))
    if dtype is None:
        raise FrameError(
            f"header dtype must be one of {', '.join(DTYPES)}, got {header.get('dtype')!r}"
        )
    count = math.prod(shape)
    expected, actual = count * dtype.itemsize, len(body) - start
    if expected != actual:
        raise FrameError(
            f"shape {shape} of {header['dtype']} needs {expected} bytes of data after the "
            f"header, the body has {actual}"
        )
    values = np.frombuffer(body, dtype=dtype, count=count, offset=start)
    return header, values.reshape(shape).astype(np.float64)


class RemoteModelEngine(Closing):
    """ModelEngine that forecasts on a model server; one pooled connection set per engine.

    Safe to share between threads. Forecasts are pure functions of the request, so a POST
    is retried like a GET.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.2,
    ) -> None:
        self.url = url.rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def forecast(self, model: str, request: ForecastRequest) -> QuantileForecast:
        body = encode_frame(
            {
                "horizon": request.horizon,
                "quantiles": list(request.quantiles),
                "step_seconds": request.step_seconds,
            },
            request.context,
        )
        response = self._send(
            "POST",
            f"/v1/models/{quote(model, safe='')}/forecast",
            model=model,
            content=body,
            headers={"Content-Type": TENSOR_MEDIA_TYPE, "Accept": TENSOR_MEDIA_TYPE},
        )
        try:
            header, values = decode_frame(response.content)
        except FrameError as exc:
            raise ModelError(
                f"model server {self.url} sent an unreadable forecast for {model!r}: {exc}; "
                "check that url points to an openanomaly model server of this version"
            ) from None
        expected = (request.context.shape[0], request.horizon, len(request.quantiles))
        if values.shape != expected:
            raise ModelError(
                f"model server {self.url} answered {model!r} with shape {values.shape}, "
                f"expected {expected}"
            )
        quantiles = tuple(float(q) for q in header.get("quantiles", request.quantiles))
        return QuantileForecast(quantiles, values)

    def list_models(self) -> list[dict[str, Any]]:
        """The server's models: name, backend, device, batch_size, max_context."""
        models: list[dict[str, Any]] = self._send("GET", "/v1/models").json()["models"]
        return models

    def close(self) -> None:
        self._client.close()

    def _send(
        self, method: str, path: str, model: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        attempts = self.max_retries + 1
        last = "no attempt made"
        for attempt in range(1, attempts + 1):
            hinted = 0.0
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                # Connection refused or reset, DNS, timeouts: the server may come back.
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return response
                error = _error_text(response)
                if response.status_code != 429 and response.status_code < 500:
                    raise self._refused(response.status_code, error, model)
                last = f"HTTP {response.status_code}: {error}"
                hinted = min(retry_after(response) or 0.0, _MAX_RETRY_AFTER)
            if attempt == attempts:
                break
            delay = max(full_jitter(attempt - 1, self.backoff, math.inf), hinted)
            log.warning(
                "model server request failed; retrying",
                extra={"url": self.url, "path": path, "attempt": attempt, "error": last,
                       "retry_in_s": round(delay, 3)},
            )
            time.sleep(delay)
        raise ModelError(
            f"model server {self.url} failed {attempts} attempt(s) of {method} {path}; "
            f"last error: {last}. Check that the server runs and is reachable from here."
        )

    def _refused(self, status: int, error: str, model: str | None) -> ModelError:
        if status == 404 and model is not None:
            return UnknownModel(
                f"model server {self.url}: {error} (HTTP 404); fix the model name "
                "(remote_model) or the url"
            )
        if status == 401:
            return ModelError(
                f"model server {self.url} refused the request (HTTP 401: {error}); set token "
                "to the server's model_server.token"
            )
        return ModelError(f"model server {self.url} refused the request (HTTP {status}): {error}")


class RemoteBackend:
    """``backend: remote``: a configured model that forecasts on a model server."""

    def __init__(self, name: str, settings: RemoteSettings) -> None:
        self.name = name
        self.remote_model = settings.remote_model or name
        self.engine = RemoteModelEngine(
            settings.url,
            token=settings.token.get_secret_value() if settings.token else None,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
        )

    def forecast(self, request: ForecastRequest) -> QuantileForecast:
        return self.engine.forecast(self.remote_model, request)

    def close(self) -> None:
        self.engine.close()


def _error_text(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])
    return response.text[:300]

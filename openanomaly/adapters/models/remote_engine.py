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
import ssl
import struct
import time
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pydantic_core

from openanomaly.adapters.http_retry import Closing, full_jitter, retry_after
from openanomaly.adapters.models.settings import RemoteSettings
from openanomaly.domain.errors import ConfigError, ModelError, ModelRejected, UnknownModel
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast
from openanomaly.domain.redaction import redact
from openanomaly.domain.series import FloatArray

log = logging.getLogger(__name__)

TENSOR_MEDIA_TYPE = "application/x-openanomaly-tensor"
DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8")}
_HEADER_LENGTH = struct.Struct("<I")
# Far above a real header (shape, dtype, horizon, quantiles, step): a bound on what the
# server parses before it checks anything else.
MAX_HEADER_BYTES = 64 * 1024
MAX_DIMENSIONS = 8
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
    header, start = decode_header(body)
    return header, decode_values(body, header, start)


def decode_header(body: bytes) -> tuple[dict[str, Any], int]:
    """A frame's header, checked against the length of the data after it, and where that
    data starts: enough to judge a request before its array is copied."""
    if len(body) < _HEADER_LENGTH.size:
        raise FrameError(
            f"body of {len(body)} bytes is shorter than the 4-byte header length that starts it"
        )
    (length,) = _HEADER_LENGTH.unpack_from(body)
    if length > MAX_HEADER_BYTES:
        raise FrameError(f"the header length says {length} bytes, over the {MAX_HEADER_BYTES} "
                         "bytes a header may have")
    start = _HEADER_LENGTH.size + length
    if start > len(body):
        raise FrameError(
            f"the header length says {length} bytes but only {len(body) - 4} follow it"
        )
    try:
        # pydantic's parser bounds nesting and number sizes with a ValueError, where the
        # json module raises RecursionError on a deeply nested header.
        header = pydantic_core.from_json(body[_HEADER_LENGTH.size:start])
    except ValueError as exc:
        raise FrameError(f"the header is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise FrameError("the header must be a JSON object")
    shape = header.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise FrameError(f"header shape must be a list of non-negative integers, got {shape!r}")
    if len(shape) > MAX_DIMENSIONS:
        raise FrameError(f"header shape has {len(shape)} dimensions; a frame has at most "
                         f"{MAX_DIMENSIONS}")
    dtype = DTYPES.get(str(header.get("dtype")))
    if dtype is None:
        raise FrameError(
            f"header dtype must be one of {', '.join(DTYPES)}, got {header.get('dtype')!r}"
        )
    expected, actual = math.prod(shape) * dtype.itemsize, len(body) - start
    if expected != actual:
        raise FrameError(
            f"shape {shape} of {header['dtype']} needs {expected} bytes of data after the "
            f"header, the body has {actual}"
        )
    return header, start


def decode_values(body: bytes, header: dict[str, Any], start: int) -> FloatArray:
    """The array of a frame whose ``header`` and ``start`` ``decode_header`` returned."""
    shape = header["shape"]
    values = np.frombuffer(body, dtype=DTYPES[header["dtype"]], count=math.prod(shape),
                           offset=start)
    return values.reshape(shape).astype(np.float64)


def client_tls(ca_file: str | None, cert_file: str | None,
               key_file: str | None) -> ssl.SSLContext | bool:
    """How the client checks the server (and proves itself): True for the system's CAs."""
    if ca_file is None and cert_file is None:
        return True
    try:
        # The system's CAs when no tls_ca_file is set; a client certificate alone may suffice.
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls_ca_file {ca_file}: cannot load the CA certificates: "
                          f"{exc}") from None
    if cert_file is not None:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"tls_client_cert {cert_file} / tls_client_key {key_file}: "
                              f"cannot load the client certificate and key: {exc}") from None
    return context


class RemoteModelEngine(Closing):
    """ModelEngine that forecasts on a model server; one pooled connection set per engine.

    Safe to share between threads. Forecasts are pure functions of the request, so a POST
    is retried like a GET. Every message it raises or logs shows the URL through ``redact``:
    a URL may carry credentials.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.2,
        tls_ca_file: str | None = None,
        tls_client_cert: str | None = None,
        tls_client_key: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.shown_url = redact(self.url)
        self.max_retries = max_retries
        self.backoff = backoff
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify = client_tls(tls_ca_file, tls_client_cert, tls_client_key)
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout,
                                    verify=verify)

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
            raise ModelError(redact(
                f"model server {self.shown_url} sent an unreadable forecast for {model!r}: "
                f"{exc}; check that url points to an openanomaly model server of this version"
            )) from None
        expected = (request.context.shape[0], request.horizon, len(request.quantiles))
        if values.shape != expected:
            raise ModelError(
                f"model server {self.shown_url} answered {model!r} with shape {values.shape}, "
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
                last = redact(f"{type(exc).__name__}: {exc}")
            else:
                if response.is_success:
                    return response
                error = _error_text(response)
                if response.status_code != 429 and response.status_code < 500:
                    raise self._refused(response.status_code, error, model)
                last = redact(f"HTTP {response.status_code}: {error}")
                hinted = min(retry_after(response) or 0.0, _MAX_RETRY_AFTER)
            if attempt == attempts:
                break
            delay = max(full_jitter(attempt - 1, self.backoff, math.inf), hinted)
            log.warning(
                "model server request failed; retrying",
                extra={"url": self.shown_url, "path": path, "attempt": attempt, "error": last,
                       "retry_in_s": round(delay, 3)},
            )
            time.sleep(delay)
        raise ModelError(
            f"model server {self.shown_url} failed {attempts} attempt(s) of {method} {path}; "
            f"last error: {last}. Check that the server runs and is reachable from here."
        )

    def _refused(self, status: int, error: str, model: str | None) -> ModelError:
        error = redact(error)
        if status == 404 and model is not None:
            return UnknownModel(
                f"model server {self.shown_url}: {error} (HTTP 404); fix the model name "
                "(remote_model) or the url"
            )
        if status == 401:
            return ModelRejected(
                f"model server {self.shown_url} refused the request (HTTP 401: {error}); set "
                "token to the server's model_server.token"
            )
        return ModelRejected(
            f"model server {self.shown_url} refused the request (HTTP {status}): {error}")


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
            tls_ca_file=settings.tls_ca_file,
            tls_client_cert=settings.tls_client_cert,
            tls_client_key=settings.tls_client_key,
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

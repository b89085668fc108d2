"""``openanomaly serve-model``: the configured models behind HTTP, for remote engines.

Endpoints
---------
``GET /healthz``                 200 while the process serves requests.
``GET /readyz``                  200 once every model in ``model_server.preload`` is loaded;
                                 503 ``{"error": ...}`` while loading or after loading failed.
``GET /v1/models``               ``{"models": [{name, backend, device, batch_size,
                                 max_context}, ...]}`` for every configured model.
``GET /metrics``                 Prometheus text exposition (prometheus_client).
``POST /v1/models/{name}/forecast``  quantile forecasts, in one of two encodings:

JSON (``Content-Type: application/json``)::

    {"context": [[1.0, null, 2.5, ...], ...], "horizon": 12,
     "quantiles": [0.1, 0.5, 0.9], "step_seconds": 300}

``null`` is a gap; rows may differ in length and are aligned at their last step (left
padded with gaps). The answer is ``{"model": name, "quantiles": [...], "forecast": F}``
where ``F[series][step][quantile]``, ``null`` where the model has no forecast (NaN).

Binary (``Content-Type: application/x-openanomaly-tensor``), for large batches::

    uint32 little-endian N | N bytes UTF-8 JSON header | little-endian array

The request header is ``{"shape": [n_series, n_steps], "dtype": "float32"|"float64",
"horizon", "quantiles", "step_seconds"}`` and the array holds the contexts row by row, NaN in
gaps. The answer uses the same framing with the header ``{"shape": [n_series, horizon,
n_quantiles], "dtype": "float64", "quantiles": [...], "model": name}``.

Every other endpoint than /healthz and /readyz needs ``Authorization: Bearer <token>`` when
``model_server.token`` is set. Errors are ``{"error": "..."}`` with a 4xx or 5xx status.

Limits, per request (keys of ``model_server``): ``max_horizon`` steps (422),
``max_context_steps`` per series and ``max_context_values`` in all, every row counted at
the longest row's length (413), and ``request_timeout`` seconds from the request's headers
to its answer (504); ``model_server.per_model.NAME`` sets ``max_horizon``,
``max_context_steps`` or ``request_timeout`` for one model. Context values must fit
float32 (magnitude up to 3.4e38; 422), ``step_seconds`` must be at least 0.001, and a
binary header may have at most 64 KiB.

A request that times out is answered at once. If it still waits in its model's queue it
is dropped and never reaches the model. If its engine call already runs, that call cannot
be interrupted (a forward pass runs in a worker thread to its end): the model finishes it,
the result is dropped, and requests queued behind it wait until then. ``max_horizon`` and
``max_batch_series`` bound how long one engine call can take.

Dynamic batching: concurrent requests for one model with the same horizon, quantiles and
step are merged into one engine call. A request waits at most ``batch_wait_ms`` for company
(or until ``max_batch_series`` series are queued); the merged contexts are left padded with
NaN to a common length, forecast in a worker thread, and split back, so every client gets
what its request alone would have got. Backends whose forecasts depend on the padded width
(all but those in PADDING_INVARIANT_BACKENDS) merge only requests of equal context length.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from openanomaly import __version__
from openanomaly.bootstrap import model_server_engine
from openanomaly.config import AppConfig
from openanomaly.domain.errors import ConfigError, ModelError, UnknownModel
from openanomaly.domain.forecast import ForecastRequest
from openanomaly.entrypoints.model_server.batching import ModelBatcher
from openanomaly.entrypoints.model_server.errors import ApiError
from openanomaly.entrypoints.model_server.limits import RequestLimits
from openanomaly.entrypoints.model_server.metrics import Metrics
from openanomaly.entrypoints.model_server.security import check_exposure, uvicorn_tls
from openanomaly.entrypoints.model_server.wire import (
    TENSOR_MEDIA_TYPE,
    ErrorAnswer,
    JsonForecastAnswer,
    JsonForecastBody,
    encode_json_answer,
    encode_tensor_answer,
    parse_json_body,
    parse_tensor_body,
)

if TYPE_CHECKING:
    from openanomaly.adapters.models.local_engine import LocalModelEngine

log = logging.getLogger(__name__)

JSON_MEDIA_TYPE = "application/json"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# Backends whose forecast of a row depends on that row's observed values alone, so requests
# of different context lengths may share a batch after left padding (tested for both).
# The others merge only requests of equal width: their results can move in the last float
# digits with padding, and a retry must write the same samples as the first run.
PADDING_INVARIANT_BACKENDS = frozenset({"fracast", "seasonal_naive"})


class ModelServer:
    """State of one server: the engine, its batchers, readiness and metrics."""

    def __init__(self, config: AppConfig, engine: LocalModelEngine) -> None:
        self.settings = config.model_server
        self.engine = engine
        self.metrics = Metrics(engine.models)
        engine.telemetry = self.metrics.models
        self.limit_bytes = int(self.settings.max_request_mb * 1024 * 1024)
        self.loading: list[str] = list(dict.fromkeys(self.settings.preload))
        self.load_error: str | None = None
        self._batchers: dict[str, ModelBatcher] = {}
        self.limits = {name: RequestLimits.of(self.settings, name) for name in engine.models}

    async def preload(self) -> None:
        for name in list(self.loading):
            started = time.perf_counter()
            try:
                await asyncio.to_thread(self.engine.get, name)
            except ModelError as exc:
                self.load_error = f"model_server.preload: {exc}"
                log.error("model preload failed", extra={"model": name, "error": str(exc)})
                return
            except Exception as exc:
                self.load_error = f"model {name!r} failed to load: {type(exc).__name__}: {exc}"
                log.exception("model preload failed", extra={"model": name})
                return
            self.loading.remove(name)
            log.info("model ready", extra={"model": name,
                                           "seconds": round(time.perf_counter() - started, 3)})

    async def close(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()

    def batcher(self, name: str) -> ModelBatcher:
        batcher = self._batchers.get(name)
        if batcher is None:
            settings = self.engine.models[name]
            batcher = ModelBatcher(
                name,
                lambda request: self.engine.forecast(name, request),
                self.metrics,
                wait_s=self.settings.batch_wait_ms / 1000.0,
                max_series=self.settings.max_batch_series,
                pad_across_lengths=settings.backend in PADDING_INVARIANT_BACKENDS,
            )
            self._batchers[name] = batcher
        return batcher

    def models(self) -> list[dict[str, Any]]:
        return [
            # None where the backend has no such setting (an ensemble has no device).
            {"name": name, "backend": s.backend, "device": getattr(s, "device", None),
             "batch_size": getattr(s, "batch_size", None),
             "max_context": getattr(s, "max_context", None)}
            for name, s in sorted(self.engine.models.items())
        ]

    async def forecast(self, name: str, request: Request) -> Response:
        if name not in self.engine.models:
            known = ", ".join(sorted(self.engine.models)) or "none"
            raise ApiError(404, f"unknown model {name!r}; this server has: {known}")
        media = request.headers.get("content-type", JSON_MEDIA_TYPE).split(";")[0].strip()
        if media.lower() not in (JSON_MEDIA_TYPE, TENSOR_MEDIA_TYPE):
            raise ApiError(415, f"Content-Type {media!r} is not supported; send "
                                f"{JSON_MEDIA_TYPE} or {TENSOR_MEDIA_TYPE}")
        binary = media.lower() == TENSOR_MEDIA_TYPE
        limits = self.limits[name]
        try:
            async with asyncio.timeout(limits.request_timeout):
                content = await self._answer(name, request, binary, limits)
        except TimeoutError:
            log.warning("forecast request timed out", extra={
                "model": name, "limit_s": limits.request_timeout})
            raise limits.timed_out() from None
        return Response(content, media_type=TENSOR_MEDIA_TYPE if binary else JSON_MEDIA_TYPE)

    async def _answer(self, name: str, request: Request, binary: bool,
                      limits: RequestLimits) -> bytes:
        body = await self._read_body(request)
        parse = parse_tensor_body if binary else parse_json_body
        # Parsing and encoding megabytes of numbers would stall every other request.
        forecast_request = await asyncio.to_thread(parse, body, limits)
        self._check_answer_size(forecast_request)
        try:
            # Cancelled by the time limit, the request leaves the model's queue (see the
            # module docstring for an engine call already running).
            forecast = await self.batcher(name).forecast(forecast_request)
        except UnknownModel as exc:
            raise ApiError(404, str(exc)) from None
        except ModelError as exc:
            raise ApiError(422, str(exc)) from None
        encode = encode_tensor_answer if binary else encode_json_answer
        return await asyncio.to_thread(encode, name, forecast)

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit_bytes:
            raise ApiError(413, self._too_large(f"of {int(declared)} bytes"))
        body = bytearray()
        # Content-Length may be absent (chunked) or wrong: count what actually arrives.
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.limit_bytes:
                raise ApiError(413, self._too_large(f"over {len(body)} bytes"))
        return bytes(body)

    def _too_large(self, size: str) -> str:
        return (f"request body {size} is over this server's limit of {self.limit_bytes} bytes "
                "(model_server.max_request_mb); send fewer series per request")

    def _check_answer_size(self, request: ForecastRequest) -> None:
        cells = request.context.shape[0] * request.horizon * len(request.quantiles)
        if cells * 8 > self.limit_bytes:
            raise ApiError(400, f"the forecast would take {cells * 8} bytes, over this server's "
                                f"limit of {self.limit_bytes} (model_server.max_request_mb); ask "
                                "for a shorter horizon, fewer quantiles or fewer series")


class BearerAuth:
    """Refuses requests without the server's bearer token, except on OPEN_PATHS."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        sent = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                sent = value
        # compare_digest takes as long for a near miss as for a wild guess.
        if hmac.compare_digest(sent, self._expected):
            await self.app(scope, receive, send)
            return
        reason = "missing" if not sent else "wrong"
        response = JSONResponse(
            {"error": f"{reason} bearer token; send Authorization: Bearer <model_server.token>"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_FORECAST_BODY = {
    "required": True,
    "description": "JSON, or the binary framing of the module docstring for large batches: "
    "uint32 LE header length, UTF-8 JSON header {shape: [n_series, n_steps], dtype: float32|"
    "float64, horizon, quantiles, step_seconds}, then the little-endian array (NaN = gap).",
    "content": {
        JSON_MEDIA_TYPE: {"schema": JsonForecastBody.model_json_schema()},
        TENSOR_MEDIA_TYPE: _BINARY,
    },
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorAnswer, "description": "malformed body or a series without values"},
    401: {"model": ErrorAnswer, "description": "missing or wrong bearer token"},
    404: {"model": ErrorAnswer, "description": "unknown model; the message lists the known"},
    413: {"model": ErrorAnswer, "description": "body over model_server.max_request_mb, or "
          "context over max_context_steps or max_context_values"},
    415: {"model": ErrorAnswer, "description": "neither JSON nor the binary tensor framing"},
    422: {"model": ErrorAnswer, "description": "invalid parameters, horizon over "
          "max_horizon, values beyond float32, or quantiles the model cannot forecast"},
    500: {"model": ErrorAnswer, "description": "unexpected failure (see the server log)"},
    504: {"model": ErrorAnswer, "description": "took longer than model_server.request_timeout"},
}


def create_app(config: AppConfig, engine: LocalModelEngine | None = None) -> FastAPI:
    server = ModelServer(config, engine or model_server_engine(config))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(server.preload(), name="preload")
        try:
            yield
        finally:
            loading.cancel()
            await server.close()

    app = FastAPI(
        title="OpenAnomaly model server",
        version=__version__,
        description=__doc__ or "",
        lifespan=lifespan,
    )
    app.state.model_server = server
    if config.model_server.token is not None:
        app.add_middleware(BearerAuth, token=config.model_server.token.get_secret_value())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = (f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": "; ".join(problems)}, 422)

    @app.get("/healthz", openapi_extra={"security": []})
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", openapi_extra={"security": []}, responses={503: {"model": ErrorAnswer}})
    async def readyz() -> JSONResponse:
        if server.load_error:
            return JSONResponse({"error": server.load_error}, 503)
        if server.loading:
            return JSONResponse({"error": f"loading models: {', '.join(server.loading)}"}, 503)
        return JSONResponse({"status": "ready"})

    @app.get("/v1/models")
    async def models() -> dict[str, list[dict[str, Any]]]:
        return {"models": server.models()}

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        body, content_type = server.metrics.render()
        return Response(body, media_type=content_type)

    @app.post(
        "/v1/models/{name}/forecast",
        summary="Quantile forecasts of a batch of series",
        openapi_extra={"requestBody": _FORECAST_BODY},
        responses={200: {"model": JsonForecastAnswer, "content": {TENSOR_MEDIA_TYPE: _BINARY},
                         "description": "forecast, in the encoding of the request"}, **_ERRORS},
    )
    async def forecast(name: str, request: Request) -> Response:
        status = 500
        started = time.perf_counter()
        try:
            response = await server.forecast(name, request)
            status = response.status_code
            return response
        except ApiError as exc:
            status = exc.status
            return exc.response()
        except Exception:
            log.exception("forecast failed", extra={"model": name})
            return ApiError(500, f"forecast with model {name!r} failed unexpectedly; see the "
                                 "server log").response()
        finally:
            # Unknown names are folded into one label so that clients cannot grow the metrics.
            label = name if name in server.engine.models else "_unknown"
            server.metrics.observe_request(label, status)
            log.debug("forecast request", extra={
                "model": name, "status": status,
                "seconds": round(time.perf_counter() - started, 4)})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            if config.model_server.token is not None:
                schema.setdefault("components", {})["securitySchemes"] = {
                    "bearer": {"type": "http", "scheme": "bearer"}}
                schema["security"] = [{"bearer": []}]
            # The names this server answers for, so that clients (and generated tests) see them.
            forecast_op = schema["paths"]["/v1/models/{name}/forecast"]["post"]
            for parameter in forecast_op["parameters"]:
                if parameter["name"] == "name":
                    parameter["schema"]["enum"] = sorted(server.engine.models)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def serve(config: AppConfig, host: str | None = None, port: int | None = None,
          insecure: bool = False) -> None:
    """Serve until SIGINT or SIGTERM; in-flight requests finish first.

    Refuses (ConfigError) a host other machines reach when no token or client certificate
    authenticates clients, unless ``insecure``.
    """
    import uvicorn

    settings = config.model_server
    host = host or settings.host
    port = settings.port if port is None else port
    check_exposure(settings, host, insecure)
    tls = uvicorn_tls(settings)
    sock = _listen(host, port)
    bound_port = sock.getsockname()[1]
    scheme = "https" if tls else "http"
    url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{bound_port}"
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_config=None,
                                           access_log=False, **tls))
    logging.getLogger("uvicorn.error").addFilter(_drop_color_message)
    received: list[str] = []

    def note(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)

    # uvicorn re-raises the signal that stopped it once it is done; with these handlers in
    # place that ends in a clean return instead of a KeyboardInterrupt or a signal death.
    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    log.info("model server listening", extra={
        "url": url, "models": ",".join(sorted(config.models)),
        "auth": settings.token is not None, "tls": bool(tls),
        "client_certs": settings.tls_client_ca_file is not None,
        "batch_wait_ms": settings.batch_wait_ms})
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("model server stopped", extra={"signal": ",".join(received) or "none"})


def _drop_color_message(record: logging.LogRecord) -> bool:
    # uvicorn attaches an ANSI-coloured copy of its messages, which our formatters would
    # print as one more field on every line.
    record.__dict__.pop("color_message", None)
    return True


def _listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ConfigError(
            f"model_server: cannot listen on {host}:{port}: {exc.strerror or exc}; choose "
            "another --port or host, or stop the process that holds it"
        ) from None

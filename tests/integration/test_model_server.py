"""The model server in this process, with the real models: encodings, limits, errors."""

import asyncio
import json
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.remote_engine import (
    TENSOR_MEDIA_TYPE,
    RemoteModelEngine,
    decode_frame,
    encode_frame,
)
from openanomaly.adapters.models.settings import StatsForecastSettings, default_models
from openanomaly.config import AppConfig
from openanomaly.domain.errors import ModelError
from openanomaly.domain.forecast import ForecastRequest
from openanomaly.entrypoints.model_server import create_app

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT_MB = 0.25
QUANTILES = [0.1, 0.5, 0.9]


@pytest.fixture(scope="module")
def engine():
    return LocalModelEngine({**default_models(),
                             "autoets": StatsForecastSettings(backend="autoets")})


def server_config(**model_server):
    settings = {"token": TOKEN, "max_request_mb": LIMIT_MB, "batch_wait_ms": 20, **model_server}
    return AppConfig.model_validate({"model_server": settings,
                                     "models": {"autoets": {"backend": "autoets"}}})


@pytest.fixture(scope="module")
def client(engine):
    app = create_app(server_config(preload=["fracast", "seasonal_naive"]), engine)
    with TestClient(app) as test_client:
        deadline = time.monotonic() + 60
        while test_client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, test_client.get("/readyz").text
            time.sleep(0.05)
        yield test_client


def daily(n, seed, period=288):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50 + 20 * np.sin(2 * np.pi * t / period) + rng.normal(0, 1, n)


def ragged_rows():
    """Three series of different lengths with gaps, as JSON rows (None in gaps)."""
    rows = [daily(400, 1), daily(650, 2), daily(90, 3)]
    rows[0][100:130] = np.nan
    rows[1][-3] = np.nan
    return rows


def left_padded(rows):
    width = max(len(row) for row in rows)
    context = np.full((len(rows), width), np.nan)
    for index, row in enumerate(rows):
        context[index, width - len(row):] = row
    return context


def json_body(rows, horizon=12, quantiles=QUANTILES, step_seconds=300.0):
    context = [[None if np.isnan(v) else float(v) for v in row] for row in rows]
    return {"context": context, "horizon": horizon, "quantiles": quantiles,
            "step_seconds": step_seconds}


def tensor_body(context, horizon=12, quantiles=QUANTILES, step_seconds=300.0, dtype="float64"):
    header = {"horizon": horizon, "quantiles": quantiles, "step_seconds": step_seconds}
    return encode_frame(header, context, dtype)


def post_tensor(client, model, body, headers=AUTH):
    return client.post(f"/v1/models/{model}/forecast", content=body,
                       headers={**headers, "Content-Type": TENSOR_MEDIA_TYPE})


def json_values(answer):
    return np.array(answer["forecast"], dtype=np.float64)  # None becomes NaN


def test_health_and_readiness_need_no_token(client):
    assert client.get("/healthz").json() == {"status": "alive"}
    assert client.get("/readyz").json() == {"status": "ready"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": TOKEN}])
@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/models"), ("GET", "/metrics"), ("GET", "/openapi.json"),
    ("POST", "/v1/models/fracast/forecast"),
])
def test_every_other_endpoint_needs_the_token(client, headers, method, path):
    response = client.request(method, path, headers=headers, json=json_body([[1.0] * 20]))
    assert response.status_code == 401
    assert "bearer token" in response.json()["error"]
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_models_lists_every_configured_model(client):
    models = {m["name"]: m for m in client.get("/v1/models", headers=AUTH).json()["models"]}
    assert models["fracast"] == {"name": "fracast", "backend": "fracast", "device": "cpu",
                                 "batch_size": 8, "max_context": None}
    # A statistical model has no device or batch size: None, not an error.
    assert models["seasonal_naive"] == {"name": "seasonal_naive", "backend": "seasonal_naive",
                                        "device": None, "batch_size": None, "max_context": None}


@pytest.mark.parametrize("model", ["fracast", "seasonal_naive"])
def test_json_and_binary_encodings_give_the_numbers_of_the_engine(client, engine, model):
    rows = ragged_rows()
    context = left_padded(rows)
    expected = engine.forecast(model, ForecastRequest(context, 12, tuple(QUANTILES), 300.0))

    as_json = client.post(f"/v1/models/{model}/forecast", headers=AUTH, json=json_body(rows))
    assert as_json.status_code == 200, as_json.text
    answer = as_json.json()
    assert answer["model"] == model and answer["quantiles"] == QUANTILES
    np.testing.assert_array_equal(json_values(answer), expected.values)

    as_tensor = post_tensor(client, model, tensor_body(context))
    assert as_tensor.status_code == 200, as_tensor.text
    assert as_tensor.headers["content-type"] == TENSOR_MEDIA_TYPE
    header, values = decode_frame(as_tensor.content)
    assert header == {"shape": [3, 12, 3], "dtype": "float64", "quantiles": QUANTILES,
                      "model": model}
    np.testing.assert_array_equal(values, expected.values)


def test_float32_tensors_are_accepted(client, engine):
    context = left_padded(ragged_rows()).astype(np.float32)
    response = post_tensor(client, "fracast", tensor_body(context, dtype="float32"))
    assert response.status_code == 200, response.text
    expected = engine.forecast(
        "fracast", ForecastRequest(context.astype(np.float64), 12, tuple(QUANTILES), 300.0))
    np.testing.assert_array_equal(decode_frame(response.content)[1], expected.values)


def test_nan_in_the_answer_is_null_in_json(client):
    # Fracast leaves series with fewer than 8 observed points unforecast (NaN).
    response = client.post("/v1/models/fracast/forecast", headers=AUTH,
                           json=json_body([daily(300, 5), [1.0, 2.0, 3.0]]))
    assert response.status_code == 200, response.text
    forecast = response.json()["forecast"]
    assert forecast[1][0] == [None, None, None]
    assert all(isinstance(v, float) for v in forecast[0][0])


def test_unknown_model_is_404_listing_the_known_ones(client):
    response = client.post("/v1/models/gpt/forecast", headers=AUTH, json=json_body([[1.0] * 9]))
    assert response.status_code == 404
    assert response.json()["error"] == (
        "unknown model 'gpt'; this server has: autoets, fracast, seasonal_naive")


def test_body_over_the_limit_is_413_by_header_and_by_size(client):
    limit = int(LIMIT_MB * 1024 * 1024)
    big = tensor_body(np.ones((1, limit // 8 + 1)))
    declared = post_tensor(client, "fracast", big)
    assert declared.status_code == 413
    assert "model_server.max_request_mb" in declared.json()["error"]

    # Chunked, without Content-Length: the server counts what arrives.
    def chunks():
        for start in range(0, len(big), 64 * 1024):
            yield big[start:start + 64 * 1024]

    streamed = client.post("/v1/models/fracast/forecast", content=chunks(),
                           headers={**AUTH, "Content-Type": TENSOR_MEDIA_TYPE})
    assert streamed.status_code == 413
    assert "over" in streamed.json()["error"]


def test_a_row_without_values_is_400_naming_it(client):
    response = client.post("/v1/models/fracast/forecast", headers=AUTH,
                           json=json_body([daily(50, 1), [np.nan] * 50, daily(50, 2)]))
    assert response.status_code == 400
    assert response.json()["error"].startswith("context row 1 has no finite value")
    response = post_tensor(client, "seasonal_naive", tensor_body(np.full((2, 4), np.nan)))
    assert response.status_code == 400
    assert "context row 0 (and 1 more rows) has no finite value" in response.json()["error"]


def test_quantiles_the_model_cannot_forecast_are_422_with_its_message(client):
    response = client.post("/v1/models/fracast/forecast", headers=AUTH,
                           json=json_body([daily(100, 1)], quantiles=[0.01, 0.5]))
    assert response.status_code == 422
    assert "forecasts quantiles 0.1..0.9" in response.json()["error"]
    assert "[0.01]" in response.json()["error"]


def frame(header, payload):
    raw = json.dumps(header).encode()
    return struct.pack("<I", len(raw)) + raw + payload


@pytest.mark.parametrize(("body", "status", "message"), [
    (frame({"shape": [1, 2, 3], "dtype": "float64", "horizon": 1, "quantiles": [0.5],
            "step_seconds": 60}, bytes(48)), 400, "must be [n_series, n_steps]"),
    (frame({"shape": [2, 10], "dtype": "float64", "horizon": 1, "quantiles": [0.5],
            "step_seconds": 60}, bytes(80)), 400, "needs 160 bytes of data after the header"),
    (frame({"shape": [1, 10], "dtype": "int32", "horizon": 1, "quantiles": [0.5],
            "step_seconds": 60}, bytes(40)), 400, "dtype must be one of float32, float64"),
    (frame({"shape": [1, 1], "dtype": "float64", "horizon": 0, "quantiles": [0.5],
            "step_seconds": 60}, bytes(8)), 422, "horizon: Input should be greater than"),
    (frame({"shape": [1, 1], "dtype": "float64", "horizon": 1, "quantiles": [0.5],
            "step_seconds": 60, "horizont": 3}, bytes(8)), 422, "horizont: Extra inputs"),
    (struct.pack("<I", 500) + b"{}", 400, "the header length says 500 bytes"),
    (b"\x01", 400, "shorter than the 4-byte header length"),
    (struct.pack("<I", 4) + b"\xff" * 4, 400, "not UTF-8 JSON"),
])
def test_malformed_tensor_bodies_are_refused_with_the_reason(client, body, status, message):
    response = post_tensor(client, "seasonal_naive", body)
    assert response.status_code == status
    assert message in response.json()["error"]


@pytest.mark.parametrize(("change", "message"), [
    ({"horizon": 0}, "horizon: Input should be greater than or equal to 1"),
    ({"quantiles": [0.9, 0.1]}, "ascending and distinct"),
    ({"quantiles": [0.5, 1.5]}, "between 0 and 1"),
    ({"quantiles": []}, "quantiles: List should have at least 1 item"),
    ({"step_seconds": 0}, "step_seconds: Input should be greater than 0"),
    ({"context": [[1.0, "x"]]}, "context[0][1]: Input should be a valid number"),
    ({"context": 5}, "context: Input should be a valid array"),
])
def test_invalid_json_parameters_are_422_naming_the_field(client, change, message):
    body = {**json_body([daily(20, 1)]), **change}
    response = client.post("/v1/models/seasonal_naive/forecast", headers=AUTH, json=body)
    assert response.status_code == 422
    assert message in response.json()["error"]


def test_other_content_types_and_broken_json_are_refused(client):
    response = client.post("/v1/models/fracast/forecast", content=b"x=1",
                           headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415
    assert TENSOR_MEDIA_TYPE in response.json()["error"]
    response = client.post("/v1/models/fracast/forecast", content=b"{\"context\": [[1,",
                           headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422
    assert "Invalid JSON" in response.json()["error"]


def test_openapi_describes_the_forecast_path_and_both_encodings(client):
    schema = client.get("/openapi.json", headers=AUTH).json()
    operation = schema["paths"]["/v1/models/{name}/forecast"]["post"]
    body = operation["requestBody"]["content"]
    assert set(body) == {"application/json", TENSOR_MEDIA_TYPE}
    assert "horizon" in body["application/json"]["schema"]["properties"]
    assert TENSOR_MEDIA_TYPE in operation["responses"]["200"]["content"]
    assert {"404", "413", "422"} <= set(operation["responses"])
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["paths"]["/healthz"]["get"]["security"] == []


def test_metrics_are_prometheus_text(client):
    client.post("/v1/models/seasonal_naive/forecast", headers=AUTH, json=json_body([[1.0] * 9]))
    response = client.get("/metrics", headers=AUTH)
    assert response.headers["content-type"].startswith("text/plain; version=")
    text = response.text
    assert "# TYPE openanomaly_model_server_requests_total counter" in text
    assert 'openanomaly_model_server_requests_total{model="seasonal_naive",status="200"}' in text
    assert 'openanomaly_model_server_requests_total{model="_unknown",status="404"}' in text
    for name in ("batches_total", "batched_requests_total", "series_total"):
        assert f'openanomaly_model_server_{name}{{model="fracast"}}' in text
    assert ('openanomaly_model_server_forecast_duration_seconds_bucket'
            '{le="+Inf",model="fracast"}') in text


def test_readiness_reports_a_failed_preload(engine):
    config = server_config(preload=["seasonal_naive", "missing"])
    with TestClient(create_app(config, engine)) as test_client:
        deadline = time.monotonic() + 10
        while (response := test_client.get("/readyz")).json()["error"].startswith("loading"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert response.status_code == 503
        assert "unknown model 'missing'" in response.json()["error"]


def metric(text, name, model):
    for line in text.splitlines():
        if line.startswith(f'openanomaly_model_server_{name}{{model="{model}"}} '):
            return float(line.split()[-1])
    raise AssertionError(f"{name} for {model} not in metrics")


@pytest.mark.parametrize(("model", "lengths", "merged_batches"), [
    # Fracast forecasts each row from its own observations: every length shares the batch.
    ("fracast", [300, 120, 300, 700], 1),
    ("seasonal_naive", [300, 120, 300, 700], 1),
    # Backends not known to be padding-invariant share a batch only at equal lengths.
    ("autoets", [300, 700, 300, 700], 2),
])
def test_concurrent_requests_share_engine_calls_and_get_their_own_results(
    engine, model, lengths, merged_batches
):
    app = create_app(server_config(batch_wait_ms=200, token=None), engine)
    rows = [daily(n, seed) for seed, n in enumerate(lengths)]
    alone = [engine.forecast(model, ForecastRequest(row[None, :], 12, tuple(QUANTILES), 300.0))
             for row in rows]

    async def together():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://server") as http:
            answers = await asyncio.gather(*(
                http.post(f"/v1/models/{model}/forecast", json=json_body([row]))
                for row in rows))
            return answers, (await http.get("/metrics")).text

    answers, metrics = asyncio.run(together())
    for answer, expected in zip(answers, alone, strict=True):
        assert answer.status_code == 200, answer.text
        # Equal up to float rounding: a model's floats may move at ~1e-7 with the
        # composition of its batch on some CPUs; another series' forecast is far off.
        np.testing.assert_allclose(json_values(answer.json()), expected.values, rtol=1e-5)
    assert metric(metrics, "batched_requests_total", model) == len(rows)
    assert metric(metrics, "batches_total", model) == merged_batches
    assert metric(metrics, "series_total", model) == len(rows)


class FaultyServer:
    """A stub that answers with scripted statuses: faults the real server gives on no demand."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.seen = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                status, body = stub.answers[min(stub.seen, len(stub.answers) - 1)]
                stub.seen += 1
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self):
        self.http.shutdown()
        self.http.server_close()


def test_remote_engine_retries_5xx_and_429_then_succeeds():
    values = np.arange(6.0).reshape(1, 2, 3)
    answer = encode_frame({"quantiles": QUANTILES, "model": "m"}, values)
    stub = FaultyServer([(503, b'{"error": "busy"}'), (429, b"slow down"), (200, answer)])
    try:
        with RemoteModelEngine(stub.url, max_retries=2, backoff=0.01) as engine:
            wanted = ForecastRequest(np.ones((1, 5)), 2, tuple(QUANTILES), 60)
            forecast = engine.forecast("m", wanted)
    finally:
        stub.close()
    assert stub.seen == 3
    np.testing.assert_array_equal(forecast.values, values)


def test_remote_engine_gives_up_after_its_retries_with_the_last_error():
    stub = FaultyServer([(500, b'{"error": "out of GPU memory"}')])
    try:
        with RemoteModelEngine(stub.url, max_retries=2, backoff=0.01) as engine, \
                pytest.raises(ModelError) as failure:
            engine.forecast("m", ForecastRequest(np.ones((1, 5)), 2, (0.5,), 60))
    finally:
        stub.close()
    assert stub.seen == 3
    assert str(failure.value).startswith(f"model server {stub.url} failed 3 attempt(s)")
    assert "HTTP 500: out of GPU memory" in str(failure.value)


def test_serve_model_keeps_its_models_within_inference_cache_mb():
    config = AppConfig.model_validate({"inference": {"cache_mb": 0.0001}})
    app = create_app(config)
    engine = app.state.model_server.engine
    assert engine.cache_bytes == int(0.0001 * 2**20)
    body = {"context": [daily(300, 1).tolist()], "horizon": 4, "quantiles": QUANTILES,
            "step_seconds": 300}
    with TestClient(app) as test_client:
        for model in ("fracast", "seasonal_naive"):
            response = test_client.post(f"/v1/models/{model}/forecast", json=body)
            assert response.status_code == 200, response.text
    # Fracast's weights do not fit such a cache: loading the next model unloaded it.
    assert engine.loaded() == ["seasonal_naive"]

"""The model server's limits, with the real models: each refusal names the limit and the
setting that raises it, and comes before the work (or the memory) it guards against."""

import asyncio
import json
import struct
import threading
import time
import tracemalloc

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.remote_engine import TENSOR_MEDIA_TYPE, encode_frame
from openanomaly.config import AppConfig
from openanomaly.entrypoints.model_server import create_app
from tests import gated_model

QUANTILES = [0.1, 0.5, 0.9]
JSON = {"Content-Type": "application/json"}
TENSOR = {"Content-Type": TENSOR_MEDIA_TYPE}


def server_config(**model_server):
    return AppConfig.model_validate({
        "model_server": {"batch_wait_ms": 0, **model_server},
        "models": {"gated": {"backend": "custom", "factory": "tests.gated_model:gated"}},
    })


@pytest.fixture(scope="module")
def engine():
    return LocalModelEngine(server_config().models)


@pytest.fixture(scope="module")
def client(engine):
    """A server with the default limits, but Fracast held to 60 steps."""
    config = server_config(per_model={"fracast": {"max_horizon": 60}})
    with TestClient(create_app(config, engine)) as test_client:
        yield test_client


def series(n, seed=0):
    rng = np.random.default_rng(seed)
    return (50 + 10 * np.sin(np.arange(n) / 20) + rng.normal(0, 1, n)).tolist()


def body(context, horizon=12, step_seconds=300.0):
    return {"context": context, "horizon": horizon, "quantiles": QUANTILES,
            "step_seconds": step_seconds}


def tensor(context, horizon=12, step_seconds=300.0, dtype="float64"):
    header = {"horizon": horizon, "quantiles": QUANTILES, "step_seconds": step_seconds}
    return encode_frame(header, np.asarray(context, dtype=np.float64), dtype)


def post(client, model, content, headers):
    return client.post(f"/v1/models/{model}/forecast", content=content, headers=headers)


def refusal(response, status):
    assert response.status_code == status, response.text
    return response.json()["error"]


# --- horizon ---------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "binary"])
def test_a_horizon_over_the_limit_is_422_naming_the_setting(client, encoding):
    # Horizon 9,600 once held Fracast for 19.5 s (200 passes) and every client behind it.
    context = [series(300)]
    content = (json.dumps(body(context, horizon=9600)).encode() if encoding == "json"
               else tensor(context, horizon=9600))
    started = time.monotonic()
    error = refusal(post(client, "seasonal_naive", content,
                         JSON if encoding == "json" else TENSOR), 422)
    assert error.startswith("horizon 9600 is over the limit of 2048 steps for model "
                            "'seasonal_naive' (model_server.max_horizon)")
    assert time.monotonic() - started < 10, "refused before any forecast"


def test_a_models_own_horizon_limit_names_its_own_setting(client):
    context = [series(300)]
    fine = client.post("/v1/models/fracast/forecast", json=body(context, horizon=60))
    assert fine.status_code == 200, fine.text
    assert len(fine.json()["forecast"][0]) == 60
    error = refusal(client.post("/v1/models/fracast/forecast", json=body(context, horizon=61)),
                    422)
    assert "limit of 60 steps for model 'fracast' " \
           "(model_server.per_model.fracast.max_horizon)" in error
    # Other models keep the server-wide limit.
    other = client.post("/v1/models/seasonal_naive/forecast", json=body(context, horizon=61))
    assert other.status_code == 200, other.text


# --- context size and memory -----------------------------------------------------------


@pytest.mark.parametrize(("row", "empty_rows"), [
    # A 137 KB body that once raised peak memory by 1.1 GB (2,048 x 65,536 float64).
    (65_536, 2_047),
    # A 2 MB body that once asked for 14.9 GiB and answered 500 (MemoryError).
    (1_000_000, 2_000),
])
def test_ragged_json_is_refused_before_the_padded_array_is_allocated(client, row, empty_rows):
    content = ('{"context":[[' + ",".join(["1"] * row) + "]" + ",[]" * empty_rows
               + '],"horizon":12,"quantiles":[0.5],"step_seconds":60}').encode()
    tracemalloc.start()
    try:
        response = post(client, "fracast", content, JSON)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    error = refusal(response, 413)
    assert error.startswith(f"context of {row} steps is over the limit of 16384 steps per "
                            "series for model 'fracast' (model_server.max_context_steps)")
    # Parsing the body costs some 80 bytes per number; the padded array would be gigabytes.
    assert peak < 100 * row + 50 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_rows_times_the_longest_row_is_held_to_max_context_values(engine):
    config = server_config(max_context_values=10_000)
    with TestClient(create_app(config, engine)) as small:
        fine = small.post("/v1/models/seasonal_naive/forecast",
                          json=body([series(2_000, s) for s in range(5)]))
        assert fine.status_code == 200, fine.text
        # One long row pads every short one to its length: 9 x 2,000 > 10,000.
        ragged = [series(2_000), *[[1.0] * 8 for _ in range(8)]]
        error = refusal(small.post("/v1/models/seasonal_naive/forecast", json=body(ragged)),
                        413)
        assert error == (
            "context of 9 series x 2000 steps (every row padded to the longest) = 18000 "
            "values is over the limit of 10000 context values per request "
            "(model_server.max_context_values); send fewer series per request")
        error = refusal(post(small, "seasonal_naive", tensor(np.ones((6, 2_000))), TENSOR), 413)
        assert "context of 6 series x 2000 steps" in error
        # More numbers than the limit are refused by counting commas, before parsing.
        error = refusal(small.post("/v1/models/seasonal_naive/forecast",
                                   json=body([[1.0] * 6_000, [1.0] * 6_000])), 413)
        assert error.startswith("JSON body of 12")
        assert "(model_server.max_context_values)" in error


@pytest.mark.parametrize("encoding", ["json", "binary"])
def test_steps_over_the_limit_are_413(client, encoding):
    context = [series(16_385)]
    content = json.dumps(body(context)).encode() if encoding == "json" else tensor(context)
    error = refusal(post(client, "seasonal_naive", content,
                         JSON if encoding == "json" else TENSOR), 413)
    assert "context of 16385 steps is over the limit of 16384 steps per series" in error
    assert "(model_server.max_context_steps)" in error


# --- values and parameters the models cannot compute with ------------------------------


@pytest.mark.parametrize("encoding", ["json", "binary"])
@pytest.mark.parametrize("model", ["fracast", "seasonal_naive"])
def test_values_beyond_float32_are_422_not_500(client, encoding, model):
    row = series(100)
    row[40] = 1e308  # passes a finiteness check in float64, overflows in float32
    content = json.dumps(body([row])).encode() if encoding == "json" else tensor([row])
    error = refusal(post(client, model, content, JSON if encoding == "json" else TENSOR), 422)
    assert error.startswith("context row 0 holds 1e+308, beyond the +-3.403e+38 of the float32")


def test_values_just_inside_float32_are_forecast(client):
    row = (np.array(series(100)) * 3e36).tolist()
    response = client.post("/v1/models/fracast/forecast", json=body([row]))
    assert response.status_code == 200, response.text


def test_a_step_below_a_millisecond_is_422(client):
    # 5e-324 s per step made a season of infinitely many steps: OverflowError, 500.
    error = refusal(client.post("/v1/models/seasonal_naive/forecast",
                                json=body([series(50)], step_seconds=5e-324)), 422)
    assert "step_seconds must be at least 0.001" in error


def frame(raw_header, payload=b""):
    return struct.pack("<I", len(raw_header)) + raw_header + payload


@pytest.mark.parametrize(("content", "message"), [
    # json.loads raised RecursionError on this header: 500.
    (frame(b"[" * 30_000 + b"]" * 30_000), "the header is not UTF-8 JSON: recursion limit"),
    (frame(b'{"shape": ' + b"[" * 500 + b"]" * 500 + b"}"), "recursion limit"),
    (frame(b'{"horizon": 1' + b"0" * 5_000 + b"}"), "the header is not UTF-8 JSON"),
    (frame(json.dumps({"shape": [1] * 100, "dtype": "float64"}).encode(), bytes(8)),
     "header shape has 100 dimensions; a frame has at most 8"),
    (frame(b" " * (64 * 1024 + 1)), "over the 65536 bytes a header may have"),
])
def test_hostile_tensor_headers_are_400(client, content, message):
    error = refusal(post(client, "fracast", content, TENSOR), 400)
    assert message in error


def test_deeply_nested_json_is_422(client):
    content = b'{"context": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert "recursion limit" in refusal(post(client, "fracast", content, JSON), 422)


# --- the time limit --------------------------------------------------------------------


@pytest.fixture
def gate():
    """The gated model's gate, closed; opened at the end whatever happens."""
    gated_model.GATES["gated"] = gate = threading.Event()
    gated_model.ENTERED["gated"] = threading.Event()
    gated_model.CALLS["gated"] = []
    yield gate
    gate.set()


def test_a_request_over_its_time_limit_is_504_and_leaves_the_queue(engine, gate):
    config = server_config(per_model={"gated": {"request_timeout": 2}})
    app = create_app(config, LocalModelEngine(config.models))
    message = ("the forecast with model 'gated' took longer than the limit of 2 s "
               "(model_server.per_model.gated.request_timeout) and was abandoned")

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://server",
                                     timeout=30) as http:
            def ask(rows):
                return http.post("/v1/models/gated/forecast",
                                 json=body([series(20, s) for s in range(rows)]))

            running = asyncio.create_task(ask(1))
            # The first request's engine call runs (and blocks) before the second arrives.
            entered = await asyncio.to_thread(gated_model.ENTERED["gated"].wait, 30)
            assert entered, "the first request never reached the model"
            queued = await ask(2)
            first = await running
            gate.set()
            after = await ask(3)
            return first, queued, after, (await http.get("/metrics")).text

    first, queued, after, metrics = asyncio.run(scenario())
    assert refusal(first, 504).startswith(message)
    assert refusal(queued, 504).startswith(message)
    assert after.status_code == 200, after.text
    # The engine call of the first request ran to its end; the timed-out second request
    # (2 series) never reached the model.
    assert gated_model.CALLS["gated"] == [1, 3]
    assert 'openanomaly_model_server_requests_total{model="gated",status="504"} 2' in metrics

"""Generated requests against the model server, with the real models: Schemathesis over its
OpenAPI document (every operation, JSON and binary bodies), and Hypothesis over well-formed
requests with hostile numbers. No answer may be a server error."""

from __future__ import annotations

import math
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.remote_engine import TENSOR_MEDIA_TYPE, encode_frame
from openanomaly.config import AppConfig
from openanomaly.entrypoints.model_server import create_app

TOKEN = "schema-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FORECAST = "/v1/models/{name}/forecast"
MODELS = ["autoets", "fracast", "seasonal_naive"]
# Generated binary bodies are sent as they are, like application/octet-stream.
schemathesis.serializer.alias(TENSOR_MEDIA_TYPE, "application/octet-stream")


@pytest.fixture(scope="module")
def served():
    """The server on a free port of this machine, in a thread: one event loop, real HTTP."""
    config = AppConfig.model_validate({
        "models": {"autoets": {"backend": "autoets"}},
        # Fracast's passes and AutoETS' fits cost most; their own limits keep generated
        # requests quick. seasonal_naive keeps the defaults.
        "model_server": {"token": TOKEN, "batch_wait_ms": 1, "max_request_mb": 1,
                         "per_model": {"fracast": {"max_horizon": 96},
                                       "autoets": {"max_horizon": 96,
                                                   "max_context_steps": 512}}},
    })
    app = create_app(config, LocalModelEngine(config.models))
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def ascending(case):
    """Quantiles sorted and distinct, as the schema cannot say, so more requests reach a
    model instead of stopping at validation."""
    if isinstance(case.body, dict) and isinstance(case.body.get("quantiles"), list):
        levels = case.body["quantiles"]
        if all(isinstance(q, int | float) for q in levels):
            case.body["quantiles"] = sorted(set(levels))
    return case


def test_no_generated_request_makes_the_model_server_fail(served):
    schema = schemathesis.openapi.from_url(f"{served}/openapi.json", headers=AUTH)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/models", FORECAST}
    for operation in operations:
        forecast = operation.path == FORECAST
        # Bodies of both media types, valid and invalid ones, for the forecast.
        for mode in list(GenerationMode) if forecast else [GenerationMode.POSITIVE]:
            strategy = operation.as_strategy(generation_mode=mode).map(ascending)

            # Plain Hypothesis over each operation's strategy (the pytest plugin's lazy
            # loading does not run on this pytest).
            @given(case=strategy)
            @settings(max_examples=100 if forecast else 10, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def one(case):
                case.call_and_validate(headers=AUTH, checks=[not_a_server_error])

            one()


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=False, width=64),
    st.floats(-1e6, 1e6),
    st.sampled_from([0.0, -0.0, 3.4e38, -3.4e38, 1e-45, 5e-324, float("nan")]),
)
requests = st.fixed_dictionaries({
    "model": st.sampled_from(MODELS),
    "context": st.integers(1, 4).flatmap(lambda rows: st.integers(1, 80).flatmap(
        lambda steps: st.lists(st.lists(values, min_size=steps, max_size=steps),
                               min_size=rows, max_size=rows))),
    "horizon": st.integers(1, 100),
    "quantiles": st.lists(st.floats(0.0, 1.0, exclude_min=True, exclude_max=True),
                          min_size=1, max_size=5, unique=True).map(sorted),
    "step_seconds": st.one_of(st.floats(1e-3, 1e9), st.sampled_from([1e-3, 60.0, 86400.0])),
    "binary": st.booleans(),
})


def test_hostile_numbers_in_well_formed_requests_are_never_a_server_error(served):
    with httpx.Client(base_url=served, headers=AUTH, timeout=120) as http:

        @given(wanted=requests)
        @settings(max_examples=80, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def one(wanted):
            params = {k: wanted[k] for k in ("horizon", "quantiles", "step_seconds")}
            path = f"/v1/models/{wanted['model']}/forecast"
            if wanted["binary"]:
                frame = encode_frame(params, np.array(wanted["context"]))
                response = http.post(path, content=frame,
                                     headers={"Content-Type": TENSOR_MEDIA_TYPE})
            else:
                rows = [[None if math.isnan(v) else v for v in row]
                        for row in wanted["context"]]
                response = http.post(path, json={"context": rows, **params})
            assert response.status_code < 500, response.text

        one()

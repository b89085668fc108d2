"""Faults a real Prometheus does not produce on demand, injected by a tiny HTTP stub."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from urllib.parse import parse_qs

import numpy as np
import pytest

from openanomaly import __version__
from openanomaly.adapters.tsdb.prometheus import PrometheusAdapter
from openanomaly.adapters.tsdb.remote_write import decode_write_request
from openanomaly.adapters.tsdb.settings import PrometheusSettings
from openanomaly.domain.errors import (
    DuplicateSamples,
    QueryRejected,
    TSDBError,
    TSDBUnavailable,
    WriteRejected,
)
from openanomaly.domain.series import Series
from tests.http_stub import Stub, serve_stub

LOGGER = "openanomaly.adapters.tsdb.prometheus"


@pytest.fixture
def stub() -> Iterator[Stub]:
    with serve_stub() as state:
        yield state


def client_for(stub: Stub, **settings) -> PrometheusAdapter:
    fields = {"max_retries": 3, "retry_backoff": 0.01, **settings}
    return PrometheusAdapter(PrometheusSettings(url=stub.url, **fields))


def retries(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and hasattr(r, "attempt")]


SERIES = Series.of({"__name__": "up", "job": "a"}, [1000, 2000], [1.0, float("nan")])


def matrix(*series: dict) -> str:
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": series}})


def test_write_400_is_rejected_at_once_with_the_body(stub):
    stub.answer(400, "label name \"\" is invalid")
    with client_for(stub) as client, pytest.raises(WriteRejected) as caught:
        client.write([SERIES])
    assert 'label name "" is invalid' in str(caught.value) and "400" in str(caught.value)
    assert not isinstance(caught.value, DuplicateSamples)
    assert len(stub.seen) == 1


def test_write_duplicate_answer_is_a_distinct_error(stub):
    stub.answer(400, "duplicate sample for timestamp\n")
    with client_for(stub) as client, pytest.raises(DuplicateSamples):
        client.write([SERIES])
    assert len(stub.seen) == 1


def test_write_other_4xx_is_not_retried(stub):
    stub.answer(401, "unauthorized")
    with client_for(stub) as client, pytest.raises(WriteRejected, match="401: unauthorized"):
        client.write([SERIES])
    assert len(stub.seen) == 1


def test_write_503_twice_then_success_with_the_remote_write_headers(stub, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    stub.answer(503, "busy").answer(503, "busy").answer(204)
    with client_for(stub) as client:
        client.write([SERIES])

    assert len(stub.seen) == 3
    assert [r.attempt for r in retries(caplog)] == [1, 2]
    request = stub.seen[-1]
    assert (request.method, request.path) == ("POST", "/api/v1/write")
    assert request.headers["Content-Encoding"] == "snappy"
    assert request.headers["Content-Type"] == "application/x-protobuf"
    assert request.headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert request.headers["User-Agent"] == f"openanomaly/{__version__}"
    (sent,) = decode_write_request(request.body)
    assert sent.labels == SERIES.labels
    np.testing.assert_array_equal(sent.values, SERIES.values)


def test_write_429_retry_after_is_respected_and_capped(stub, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    stub.answer(429, "slow down", Retry_After="0").answer(429, "", Retry_After="3600")
    # A backoff this long would stall the test: only Retry-After (capped) can keep it short.
    with client_for(stub, retry_backoff=60, retry_backoff_max=0.05) as client:
        client.write([SERIES])
    assert len(stub.seen) == 3
    assert [r.delay_s for r in retries(caplog)] == [0.0, 0.05]


def test_write_keeps_failing_then_unavailable(stub):
    for _ in range(3):
        stub.answer(502, "bad gateway")
    with client_for(stub, max_retries=2) as client, pytest.raises(TSDBUnavailable) as caught:
        client.write([SERIES])
    assert len(stub.seen) == 3
    message = str(caught.value)
    assert stub.url in message and "3 attempt" in message and "bad gateway" in message


def test_writes_are_batched_and_series_split_in_time_order(stub):
    written = [Series.of({"__name__": "m", "i": str(i)}, 1000 * np.arange(10),
                         np.arange(10.0) + i) for i in range(3)]
    with client_for(stub, write_batch_samples=7) as client:
        client.write(written)

    bodies = [decode_write_request(r.body) for r in stub.seen]
    assert [sum(s.values.size for s in body) for body in bodies] == [7, 7, 7, 7, 2]
    for i, original in enumerate(written):
        parts = [s for body in bodies for s in body if s.labels["i"] == str(i)]
        np.testing.assert_array_equal(np.concatenate([p.timestamps_ms for p in parts]),
                                      original.timestamps_ms)
        np.testing.assert_array_equal(np.concatenate([p.values for p in parts]),
                                      original.values)


def test_query_503_then_matrix_succeeds_and_parses_special_values(stub):
    stub.answer(503, "overloaded").answer(200, matrix(
        {"metric": {"__name__": "x", "a": "1"},
         "values": [[1.5, "NaN"], [2.5, "+Inf"], [3.5, "-Inf"], [4.5, "2.25"]]},
    ), Content_Type="application/json")
    with client_for(stub) as client:
        (series,) = client.query_range("x", 1500, 4500, 1000)

    assert len(stub.seen) == 2
    form = parse_qs(stub.seen[-1].body.decode())
    assert form == {"query": ["x"], "start": ["1.500"], "end": ["4.500"], "step": ["1.000"]}
    assert series.labels == {"__name__": "x", "a": "1"}
    np.testing.assert_array_equal(series.timestamps_ms, [1500, 2500, 3500, 4500])
    assert np.isnan(series.values[0])
    np.testing.assert_array_equal(series.values[1:], [np.inf, -np.inf, 2.25])


def test_query_other_4xx_is_an_error_with_status_and_body_not_retried(stub):
    stub.answer(403, "forbidden for tenant")
    with client_for(stub) as client, pytest.raises(TSDBError) as caught:
        client.query_range("x", 0, 1000, 1000)
    assert not isinstance(caught.value, QueryRejected | TSDBUnavailable)
    assert "403" in str(caught.value) and "forbidden for tenant" in str(caught.value)
    assert len(stub.seen) == 1


def test_query_that_is_not_a_range_vector_is_rejected(stub):
    stub.answer(200, json.dumps({"status": "success",
                                 "data": {"resultType": "scalar", "result": [1, "1"]}}))
    with client_for(stub) as client, pytest.raises(QueryRejected, match="range vector"):
        client.query_range("1", 0, 1000, 1000)


def test_bearer_token_goes_with_reads_and_writes_and_never_into_logs(stub, caplog):
    caplog.set_level(logging.DEBUG)
    stub.answer(503, "busy").answer(204).answer(200, matrix())
    with client_for(stub, bearer_token="s3cret-token", headers={"X-Scope-OrgID": "t1"}) as c:
        c.write([SERIES])
        assert c.query_range("x", 0, 1000, 1000) == []
    assert all(r.headers["Authorization"] == "Bearer s3cret-token" for r in stub.seen)
    assert all(r.headers["X-Scope-OrgID"] == "t1" for r in stub.seen)
    assert "s3cret-token" not in caplog.text


def test_basic_auth_goes_with_reads_and_writes(stub):
    stub.answer(204).answer(200, matrix())
    auth = {"username": "alice", "password": "pw"}
    with client_for(stub, basic_auth=auth) as client:
        client.write([SERIES])
        client.query_range("x", 0, 1000, 1000)
    expected = "Basic " + base64.b64encode(b"alice:pw").decode()
    assert [r.headers["Authorization"] for r in stub.seen] == [expected, expected]


def test_a_huge_write_answer_is_not_read_past_its_start(stub):
    megabyte = b" " * (1024 * 1024)
    stub.stream(200, lambda: iter([megabyte] * 64))
    with client_for(stub) as client:
        client.write([SERIES])
    assert len(stub.seen) == 1
    assert stub.sent < 32 * len(megabyte), stub.sent  # the rest sat unread and was dropped

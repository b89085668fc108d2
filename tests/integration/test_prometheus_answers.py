"""Query answers a real Prometheus does not give on demand, from a tiny HTTP stub:
malformed ones, and ones too large for the pipeline that asked."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import pytest

from openanomaly.adapters.tsdb.prometheus import PrometheusAdapter
from openanomaly.adapters.tsdb.settings import PrometheusSettings
from openanomaly.domain.errors import QueryRejected, TSDBError, is_retryable
from tests.http_stub import Stub, serve_stub

MB = 1024 * 1024


@pytest.fixture
def stub() -> Iterator[Stub]:
    with serve_stub() as state:
        yield state


def client_for(stub: Stub, **settings) -> PrometheusAdapter:
    fields = {"max_retries": 2, "retry_backoff": 0.01, **settings}
    return PrometheusAdapter(PrometheusSettings(url=stub.url, **fields))


def matrix(result) -> str:
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}})


@pytest.mark.parametrize(("body", "problem", "quoted"), [
    ("<html>502 Bad Gateway</html>", "not JSON", "<html>502 Bad Gateway</html>"),
    ('{"status": "success"}', "data is missing", '"status": "success"'),
    ('["not", "an", "object"]', "not a JSON object", '"not"'),
    ('{"status": "error", "error": "boom"}', "status is 'error'", "boom"),
    (json.dumps({"status": "success", "data": {"resultType": "histogram", "result": []}}),
     "resultType is not matrix", "histogram"),
    (json.dumps({"status": "success", "data": {"resultType": "matrix"}}),
     "data.result is not a list", "matrix"),
    (matrix({"metric": {}, "values": []}), "data.result is not a list", '"metric"'),
    (matrix(["up"]), "a series is not an object", '"up"'),
    (matrix([{"metric": {"job": 7}, "values": []}]), "not an object of string labels",
     '"job": 7'),
    (matrix([{"metric": {}, "values": "1,2"}]), "values is not a list", '"1,2"'),
    (matrix([{"metric": {"job": "a"}, "values": [[1, "1"], [2, "n/a"]]}]),
     "value is not a number", '"n/a"'),
    (matrix([{"metric": {}, "values": [[1, None]]}]), "value is not a number", "null"),
    (matrix([{"metric": {}, "values": [["1970-01-01", "1"]]}]),
     "timestamp is not a number", "1970-01-01"),
    (matrix([{"metric": {}, "values": [[1]]}]), "not a [timestamp, value] pair", "[1]"),
])
def test_malformed_answer_is_a_final_error_quoting_the_offending_part(stub, body, problem,
                                                                       quoted):
    stub.answer(200, body, Content_Type="application/json")
    with client_for(stub) as client, pytest.raises(TSDBError) as caught:
        client.query_range("up", 0, 1000, 1000)
    message = str(caught.value)
    assert problem in message and quoted in message, message
    assert f"{stub.url}/api/v1/query_range answered the query 'up'" in message
    assert not is_retryable(caught.value)
    assert len(stub.seen) == 1  # the same request would get the same answer


def test_sample_values_keep_prometheus_spellings_and_plain_numbers(stub):
    stub.answer(200, matrix([{"metric": {"a": "1"},
                              "values": [[1, "NaN"], [2, "+Inf"], [3, "-Inf"], [4, 2.5]]}]))
    with client_for(stub) as client:
        (series,) = client.query_range("x", 1000, 4000, 1000)
    assert series.values[1:].tolist() == [float("inf"), float("-inf"), 2.5]


def test_an_instant_vector_answer_is_a_rejected_query_quoting_it(stub):
    stub.answer(200, json.dumps({"status": "success", "data": {
        "resultType": "vector", "result": [{"metric": {}, "value": [1, "1"]}]}}))
    with client_for(stub) as client, pytest.raises(QueryRejected, match="range vector") as caught:
        client.query_range("x", 0, 1000, 1000)
    assert '"value": [1, "1"]' in str(caught.value)


def big_series(count: int, label_bytes: int) -> Iterator[bytes]:
    """A matrix answer of ``count`` one-point series with long labels, made as it is sent
    (the whole body never exists at once)."""
    yield b'{"status":"success","data":{"resultType":"matrix","result":['
    padding = "x" * label_bytes
    for i in range(count):
        separator = "," if i else ""
        yield (f'{separator}{{"metric":{{"i":"{i}","pad":"{padding}"}},'
               f'"values":[[1,"{i}"]]}}').encode()
    yield b"]}}"


def test_an_answer_larger_than_max_series_allows_is_refused_while_streaming(stub):
    # 1000 series of 64 KiB: 64 MiB, against a budget of about 100 KiB for 10 series.
    stub.stream(200, lambda: big_series(1000, 64 * 1024), Content_Type="application/json")
    with client_for(stub) as client, pytest.raises(TSDBError) as caught:
        client.query_range("huge", 1000, 1000, 1000, max_series=10)

    message = str(caught.value)
    assert "answered the query 'huge' with more than 107,136 bytes" in message, message
    assert "max_series=10" in message and "prometheus.max_response_bytes" in message
    assert not is_retryable(caught.value)
    assert len(stub.seen) == 1
    # The client stopped reading at the limit: the stub could not send most of the body
    # (what did reach the socket sits in the kernel's buffers).
    assert stub.sent < 32 * MB, stub.sent


def test_a_declared_length_over_the_budget_is_refused_before_reading(stub):
    # The stub declares 10 GiB and sends nothing: a client that read the body would
    # find it cut short (a transport error), not too large.
    stub.stream(200, lambda: iter(()), Content_Length=str(10 * 1024 * MB))
    with client_for(stub, max_retries=0) as client, pytest.raises(TSDBError) as caught:
        client.query_range("huge", 1000, 1000, 1000, max_series=10)
    assert "with more than 107,136 bytes" in str(caught.value)


def test_the_budget_counts_decompressed_bytes(stub):
    body = matrix([{"metric": {"i": str(i), "pad": "x" * 8192}, "values": [[1, "1"]]}
                   for i in range(100)]).encode()
    packed = gzip.compress(body)
    assert len(packed) < 50_000 < len(body)
    stub.answer(200, packed, Content_Encoding="gzip")
    with client_for(stub, max_response_bytes=50_000) as client, pytest.raises(
            TSDBError, match="more than 50,000 bytes"):
        client.query_range("x", 1000, 1000, 1000)


def test_a_body_that_does_not_match_its_content_encoding_is_a_final_error(stub):
    stub.answer(200, b"this is not gzip", Content_Encoding="gzip")
    with client_for(stub) as client, pytest.raises(TSDBError) as caught:
        client.query_range("x", 1000, 1000, 1000)
    assert "cannot be decoded as its Content-Encoding says" in str(caught.value)
    assert not is_retryable(caught.value)


def test_max_response_bytes_replaces_the_derived_budget(stub):
    body = matrix([{"metric": {"i": str(i)}, "values": [[1, "1"]]} for i in range(500)])
    stub.answer(200, body).answer(200, body)
    with client_for(stub, max_response_bytes=1000) as client, pytest.raises(TSDBError) as caught:
        client.query_range("x", 1000, 1000, 1000, max_series=5000)
    assert ("with more than 1,000 bytes, prometheus.max_response_bytes=1000; raise it"
            in str(caught.value))
    # 500 series where the pipeline allows 1: refused by the derived budget, not by the
    # override (which is larger).
    with client_for(stub, max_response_bytes=len(body)) as client:
        assert len(client.query_range("x", 1000, 1000, 1000, max_series=1)) == 500


def test_a_huge_error_answer_is_quoted_from_its_start_only(stub):
    stub.stream(400, lambda: iter([b'{"status":"error","error":"bad query"',
                                   *[b" " * MB] * 64]))
    with client_for(stub) as client, pytest.raises(QueryRejected) as caught:
        client.query_range("x", 1000, 1000, 1000)
    assert '{"status":"error","error":"bad query"' in str(caught.value)
    assert len(str(caught.value)) < 1000
    assert stub.sent < 32 * MB, stub.sent

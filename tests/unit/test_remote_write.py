"""The remote-write body: protobuf layout, snappy block compression and batching."""

import math
import struct

import cramjam
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openanomaly.adapters.tsdb.remote_write import (
    WriteRequest,
    chunk_series,
    decode_write_request,
    encode_write_request,
)
from openanomaly.domain.series import Series


def parse(body: bytes):
    request = WriteRequest()
    request.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
    return request


def test_round_trip_sorts_labels_and_samples_and_keeps_nan():
    first = Series.of({"zone": "b", "__name__": "cpu", "host": "h1"},
                      [3000, 1000, 2000], [3.5, float("nan"), -2.0])
    second = Series.of({"__name__": "mem"}, [5], [float("inf")])

    request = parse(encode_write_request([first, second]))

    assert len(request.timeseries) == 2
    one, two = request.timeseries
    assert [(lb.name, lb.value) for lb in one.labels] == [
        ("__name__", "cpu"), ("host", "h1"), ("zone", "b")]
    assert [s.timestamp for s in one.samples] == [1000, 2000, 3000]
    assert math.isnan(one.samples[0].value)
    assert [s.value for s in one.samples][1:] == [-2.0, 3.5]
    assert [(lb.name, lb.value) for lb in two.labels] == [("__name__", "mem")]
    assert two.samples[0].value == math.inf and two.samples[0].timestamp == 5


def test_body_is_a_raw_snappy_block_not_the_framed_format():
    body = encode_write_request([Series.of({"__name__": "x"}, [1], [1.0])])
    assert not body.startswith(b"\xff\x06\x00\x00sNaPpY")
    with pytest.raises(cramjam.DecompressionError):
        cramjam.snappy.decompress(body)  # framed decoder refuses a block


def test_any_nan_payload_is_sent_as_the_canonical_nan_never_a_stale_marker():
    stale = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
    request = parse(encode_write_request([Series.of({"__name__": "x"}, [1], [stale])]))
    sent = struct.unpack("<Q", struct.pack("<d", request.timeseries[0].samples[0].value))[0]
    assert sent == 0x7FF8000000000000


def test_empty_series_are_left_out_and_a_series_without_name_is_refused():
    empty = Series.of({"__name__": "x"}, [], [])
    assert len(parse(encode_write_request([empty])).timeseries) == 0
    with pytest.raises(ValueError, match="__name__"):
        encode_write_request([Series.of({"job": "a"}, [1], [1.0])])


def test_decode_is_the_inverse_of_encode():
    series = Series.of({"__name__": "x", "a": "1"}, [10, 20], [1.0, 2.0])
    (back,) = decode_write_request(encode_write_request([series]))
    assert back.labels == series.labels
    np.testing.assert_array_equal(back.timestamps_ms, series.timestamps_ms)
    np.testing.assert_array_equal(back.values, series.values)


def test_chunks_hold_at_most_n_samples_and_split_long_series_in_time_order():
    long = Series.of({"__name__": "long"}, np.arange(25)[::-1] * 1000, np.arange(25)[::-1])
    short = Series.of({"__name__": "short"}, [1, 2, 3], [1.0, 2.0, 3.0])

    chunks = chunk_series([short, long], max_samples=10)

    assert [sum(s.values.size for s in chunk) for chunk in chunks] == [10, 10, 8]
    pieces = [s for chunk in chunks for s in chunk if s.name == "long"]
    assert [p.values.size for p in pieces] == [7, 10, 8]
    np.testing.assert_array_equal(np.concatenate([p.timestamps_ms for p in pieces]),
                                  np.arange(25) * 1000)
    np.testing.assert_array_equal(np.concatenate([p.values for p in pieces]), np.arange(25))
    assert chunks[0][0].name == "short" and chunks[0][0].values.size == 3


def test_chunking_edge_cases():
    exact = Series.of({"__name__": "x"}, [1, 2], [1.0, 2.0])
    assert [[s.values.size for s in c] for c in chunk_series([exact, exact], 2)] == [[2], [2]]
    assert chunk_series([], 5) == []
    with pytest.raises(ValueError):
        chunk_series([exact], 0)


label_values = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
series_strategy = st.builds(
    lambda labels, samples: Series.of(
        {"__name__": "m", **labels}, [t for t, _ in samples], [v for _, v in samples]),
    st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
        lambda name: name != "__name__"), label_values,
                    max_size=4),
    st.lists(st.tuples(st.integers(-2**63, 2**63 - 1), st.floats(width=64)), max_size=12,
             unique_by=lambda sample: sample[0]))


@settings(max_examples=300, deadline=None)
@given(st.lists(series_strategy, max_size=6))
def test_protobuf_reads_back_every_sample_and_label_the_encoder_wrote(batch):
    request = parse(encode_write_request(batch))
    sent = [one for one in batch if one.values.size]
    assert len(request.timeseries) == len(sent)
    for one, item in zip(sent, request.timeseries, strict=True):
        assert [(lb.name, lb.value) for lb in item.labels] == sorted(
            (k, v) for k, v in one.labels.items() if v != "")
        order = np.argsort(one.timestamps_ms, kind="stable")
        assert [s.timestamp for s in item.samples] == one.timestamps_ms[order].tolist()
        np.testing.assert_array_equal([s.value for s in item.samples], one.values[order])

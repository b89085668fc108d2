"""The typed decoding of query answers agrees with the generic one on every well-formed
answer, and leaves every other answer to it."""

import json
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from openanomaly.adapters.tsdb.answers import _decode_generic, _decode_typed

labels = st.dictionaries(st.sampled_from(["__name__", "job", "instance", "mode"]),
                         st.text(max_size=8), max_size=4)
value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda v: "NaN" if math.isnan(v) else "+Inf" if v == math.inf
        else "-Inf" if v == -math.inf else repr(v)),
    st.floats(allow_nan=False, allow_infinity=False, width=32))
point = st.tuples(st.one_of(st.integers(0, 2**33), st.floats(0, 2**33)), value)
series = st.fixed_dictionaries({"metric": labels, "values": st.lists(point, max_size=20)})
answers = st.fixed_dictionaries({
    "status": st.just("success"),
    "data": st.fixed_dictionaries({"resultType": st.just("matrix"),
                                   "result": st.lists(series, max_size=5)}),
}, optional={"warnings": st.lists(st.text(max_size=10), max_size=2)})


def same(left, right):
    assert left[1] == right[1]
    assert len(left[0]) == len(right[0])
    for (a_labels, a_times, a_values), (b_labels, b_times, b_values) in zip(
            left[0], right[0], strict=True):
        assert a_labels == b_labels
        np.testing.assert_array_equal(a_times, b_times)
        np.testing.assert_array_equal(a_values, b_values)  # NaN equals NaN here


@settings(max_examples=200, deadline=None)
@given(answers)
def test_typed_decoding_agrees_with_the_generic_one(answer):
    body = json.dumps(answer).encode()
    typed = _decode_typed(body)
    assert typed is not None
    same(typed, _decode_generic(body, "test"))


def test_answers_of_another_shape_are_left_to_the_generic_decoding():
    for answer in (
        {"status": "success", "data": {"resultType": "vector", "result": []}},
        {"status": "error", "error": "boom"},
        {"status": "success", "data": {"resultType": "matrix"}},
        {"status": "success", "data": {"resultType": "matrix",
                                       "result": [{"metric": {}, "values": [[1, "n/a"]]}]}},
        {"status": "success", "data": {"resultType": "matrix",
                                       "result": [{"metric": {}, "values": [[True, "1"]]}]}},
        {"status": "success", "data": {"resultType": "matrix",
                                       "result": [{"metric": {}, "values": [["1", "1"]]}]}},
    ):
        assert _decode_typed(json.dumps(answer).encode()) is None, answer
    assert _decode_typed(b"<html>502</html>") is None

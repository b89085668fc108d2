"""Prometheus remote-write 1.0 wire format: encode and snappy-compress a ``WriteRequest``.

The body is written field by field from arrays (a protobuf object per sample would cost
more than the rest of a run). ``WriteRequest`` for reading bodies back is built at import
time from a descriptor in a private pool, so no generated ``_pb2`` module is needed and no
other package's ``prometheus/types.proto`` can clash with ours in the default pool.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import cramjam
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from openanomaly.domain.series import Series

_PACKAGE = "openanomaly.remote_write"
_F = descriptor_pb2.FieldDescriptorProto


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="openanomaly/remote_write.proto", package=_PACKAGE, syntax="proto3"
    )

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        msg = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name

    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    message("Label", ("name", 1, _F.TYPE_STRING, opt, ""), ("value", 2, _F.TYPE_STRING, opt, ""))
    message(
        "Sample", ("value", 1, _F.TYPE_DOUBLE, opt, ""), ("timestamp", 2, _F.TYPE_INT64, opt, "")
    )
    message(
        "TimeSeries",
        ("labels", 1, _F.TYPE_MESSAGE, rep, f".{_PACKAGE}.Label"),
        ("samples", 2, _F.TYPE_MESSAGE, rep, f".{_PACKAGE}.Sample"),
    )
    message("WriteRequest", ("timeseries", 1, _F.TYPE_MESSAGE, rep, f".{_PACKAGE}.TimeSeries"))
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.AddSerializedFile(_file_descriptor().SerializeToString())


def _message_class(name: str) -> type[Message]:
    cls: type[Message] = message_factory.GetMessageClass(
        _POOL.FindMessageTypeByName(f"{_PACKAGE}.{name}")
    )
    return cls


WriteRequest = _message_class("WriteRequest")


def _sorted_by_time(one: Series) -> Series:
    stamps = one.timestamps_ms
    if stamps.size < 2 or bool(np.all(stamps[1:] >= stamps[:-1])):
        return one
    order = np.argsort(one.timestamps_ms, kind="stable")
    return Series(one.labels, one.timestamps_ms[order], one.values[order])


_SMALL = [bytes((value,)) for value in range(0x80)]


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte, the payload's length, the payload."""
    return bytes((tag,)) + _varint(len(payload)) + payload


@functools.lru_cache(maxsize=1 << 16)
def _label(name: str, value: str) -> bytes:
    # Output series repeat the same few label pairs: each is encoded once.
    return _field(0x0A, _field(0x0A, name.encode()) + _field(0x12, value.encode()))


def _labels(one: Series) -> bytes:
    if not one.name:
        raise ValueError(f"series {dict(one.labels)} has no __name__ label; cannot write it")
    # An empty label value means "no such label" in Prometheus; sending it would only
    # confuse receivers that validate labels.
    return b"".join(_label(k, v) for k, v in sorted(one.labels.items()) if v != "")


def _samples(timestamps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every sample as a ``samples`` field of its TimeSeries, all at once: the bytes, and
    where each sample's field ends.

    A sample field is 0x12, its length, then the Sample: 0x09 and the value's 8 bytes
    (little endian), 0x10 and the timestamp as a varint (a negative one in 10 bytes, as
    protobuf writes an int64).
    """
    unsigned = timestamps.astype(np.int64).view(np.uint64)
    sizes = np.ones(unsigned.size, dtype=np.int64)
    for shift in range(7, 64, 7):
        sizes += (unsigned >> np.uint64(shift)) > 0
    lengths = 12 + sizes
    ends = np.cumsum(lengths)
    starts = ends - lengths
    out = np.zeros(int(ends[-1]) if ends.size else 0, dtype=np.uint8)
    out[starts] = 0x12
    out[starts + 1] = 10 + sizes
    out[starts + 2] = 0x09
    # Any NaN payload is replaced by the canonical NaN: Prometheus reads one specific
    # payload as a staleness marker, which would end the series instead of storing NaN.
    canonical = np.where(np.isnan(values), np.nan, values).astype("<f8")
    raw = canonical.view(np.uint8).reshape(-1, 8)
    for k in range(8):
        out[starts + 3 + k] = raw[:, k]
    out[starts + 11] = 0x10
    for k in range(int(sizes.max()) if sizes.size else 0):
        has = sizes > k
        more = sizes > k + 1
        byte = (unsigned[has] >> np.uint64(7 * k)) & np.uint64(0x7F)
        out[starts[has] + 12 + k] = byte | np.where(more[has], 0x80, 0).astype(np.uint64)
    return out, ends


def encode_write_request(series: Sequence[Series]) -> bytes:
    """The snappy block-compressed (not framed) remote-write body for ``series``; series
    without samples are left out.

    The samples of all series are encoded in one pass over arrays (no object per sample);
    raises ValueError for a series without ``__name__``: remote-write receivers either
    reject it or store a series that no name selector can find.
    """
    kept = [_sorted_by_time(one) for one in series if one.values.size]
    heads = [_labels(one) for one in kept]
    if not kept:
        return bytes(cramjam.snappy.compress_raw(b""))
    samples, ends = _samples(np.concatenate([one.timestamps_ms for one in kept]),
                             np.concatenate([one.values for one in kept]))
    body = samples.tobytes()
    # Where each series' samples begin and end in ``body``.
    bounds = np.concatenate([[0], ends])[np.cumsum([0] + [one.values.size for one in kept])]
    parts = [_field(0x0A, head + body[int(begin):int(end)])
             for head, begin, end in zip(heads, bounds[:-1], bounds[1:], strict=True)]
    return bytes(cramjam.snappy.compress_raw(b"".join(parts)))


def decode_write_request(body: bytes) -> list[Series]:
    """Inverse of :func:`encode_write_request` (for tests and debugging stubs)."""
    request = WriteRequest()
    request.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
    return [
        Series.of(
            {label.name: label.value for label in item.labels},
            [s.timestamp for s in item.samples],
            [s.value for s in item.samples],
        )
        for item in request.timeseries
    ]


def chunk_series(series: Sequence[Series], max_samples: int) -> list[list[Series]]:
    """Split ``series`` into chunks of at most ``max_samples`` samples in total.

    A long series is cut into time-ordered slices that go into consecutive chunks, so
    sending the chunks in order keeps every series' samples in order.
    """
    if max_samples < 1:
        raise ValueError(f"max_samples must be at least 1, got {max_samples}")
    chunks: list[list[Series]] = []
    current: list[Series] = []
    room = max_samples
    for one in series:
        one = _sorted_by_time(one)
        start, size = 0, one.values.size
        while start < size:
            take = min(room, size - start)
            end = start + take
            current.append(Series(one.labels, one.timestamps_ms[start:end], one.values[start:end]))
            start, room = end, room - take
            if room == 0:
                chunks.append(current)
                current, room = [], max_samples
    if current:
        chunks.append(current)
    return chunks

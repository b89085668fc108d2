"""Prometheus remote-write 1.0 wire format: build and snappy-compress a ``WriteRequest``.

The message classes are built at import time from a descriptor in a private pool, so no
generated ``_pb2`` module is needed and no other package's ``prometheus/types.proto`` can
clash with ours in the default pool.
"""

from __future__ import annotations

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


Label = _message_class("Label")
Sample = _message_class("Sample")
TimeSeries = _message_class("TimeSeries")
WriteRequest = _message_class("WriteRequest")


def _sorted_by_time(one: Series) -> Series:
    if one.timestamps_ms.size < 2 or bool(np.all(np.diff(one.timestamps_ms) >= 0)):
        return one
    order = np.argsort(one.timestamps_ms, kind="stable")
    return Series(one.labels, one.timestamps_ms[order], one.values[order])


def build_write_request(series: Sequence[Series]) -> Message:
    """The ``WriteRequest`` message for ``series``; series without samples are left out.

    Raises ValueError for a series without ``__name__``: remote-write receivers either
    reject it or store a series that no name selector can find.
    """
    request = WriteRequest()
    for one in series:
        if one.values.size == 0:
            continue
        if not one.name:
            raise ValueError(f"series {dict(one.labels)} has no __name__ label; cannot write it")
        one = _sorted_by_time(one)
        # An empty label value means "no such label" in Prometheus; sending it would only
        # confuse receivers that validate labels.
        labels = sorted((k, v) for k, v in one.labels.items() if v != "")
        # Any NaN payload is replaced by the canonical NaN: Prometheus reads one specific
        # payload as a staleness marker, which would end the series instead of storing NaN.
        values = np.where(np.isnan(one.values), np.nan, one.values).tolist()
        timestamps = one.timestamps_ms.tolist()
        item = request.timeseries.add()
        item.labels.extend(Label(name=k, value=v) for k, v in labels)
        item.samples.extend(
            Sample(value=v, timestamp=t) for v, t in zip(values, timestamps, strict=True)
        )
    return request


def encode_write_request(series: Sequence[Series]) -> bytes:
    """The snappy block-compressed (not framed) remote-write body for ``series``."""
    raw = build_write_request(series).SerializeToString()
    return bytes(cramjam.snappy.compress_raw(raw))


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

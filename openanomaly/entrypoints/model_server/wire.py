"""The forecast endpoint's wire format: request bodies in, answers out.

Every check that bounds memory runs before the allocation it guards: a JSON body's numbers
are counted before it is parsed, and a context's padded size before the array is built.
"""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# The binary framing is defined once, beside its client; the server takes it from here.
from openanomaly.adapters.models.remote_engine import TENSOR_MEDIA_TYPE as TENSOR_MEDIA_TYPE
from openanomaly.adapters.models.remote_engine import (
    FrameError,
    decode_header,
    decode_values,
    encode_frame,
)
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast
from openanomaly.domain.series import FloatArray
from openanomaly.entrypoints.model_server.errors import ApiError
from openanomaly.entrypoints.model_server.limits import RequestLimits

# The models compute in float32 (torch backends cast to it): a larger value would turn
# into infinity there.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Prometheus timestamps have millisecond resolution; shorter steps make seasonal models
# count more steps per season than an integer holds.
MIN_STEP_SECONDS = 0.001


class ForecastParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    horizon: int = Field(ge=1, description="steps to forecast after the last context step "
                         "(at most the server's model_server.max_horizon)")
    quantiles: list[float] = Field(
        min_length=1, description="ascending levels in (0, 1)",
        # For the OpenAPI document only: the validator below says what is wrong in words.
        json_schema_extra={"uniqueItems": True, "items": {
            "type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}})
    step_seconds: float = Field(gt=0, description="seconds between context steps",
                                json_schema_extra={"minimum": MIN_STEP_SECONDS})

    @field_validator("quantiles")
    @classmethod
    def _levels(cls, levels: list[float]) -> list[float]:
        if any(not 0.0 < q < 1.0 for q in levels):
            raise ValueError(f"every quantile must be between 0 and 1 (exclusive), got {levels}")
        if levels != sorted(set(levels)):
            raise ValueError(f"quantiles must be ascending and distinct, got {levels}")
        return levels

    @field_validator("step_seconds")
    @classmethod
    def _resolution(cls, step: float) -> float:
        if step < MIN_STEP_SECONDS:
            raise ValueError(f"step_seconds must be at least {MIN_STEP_SECONDS:g} (a "
                             f"millisecond), got {step:g}")
        return step


class JsonForecastBody(ForecastParams):
    context: list[list[float | None]] = Field(
        description="one row per series, oldest step first, null in gaps; rows end together"
    )


class TensorHeader(ForecastParams):
    shape: list[int]
    dtype: Literal["float32", "float64"]


class JsonForecastAnswer(BaseModel):
    model: str
    quantiles: list[float]
    forecast: list[list[list[float | None]]] = Field(
        description="forecast[series][step][quantile]; null where the model has no forecast"
    )


class ErrorAnswer(BaseModel):
    error: str


def parse_json_body(body: bytes, limits: RequestLimits) -> ForecastRequest:
    limits.check_json_numbers(body)
    try:
        parsed = JsonForecastBody.model_validate_json(body)
    except ValidationError as exc:
        raise ApiError(422, _describe(exc)) from None
    limits.check_horizon(parsed.horizon)
    width = max((len(row) for row in parsed.context), default=0)
    limits.check_context(len(parsed.context), width)
    context = np.full((len(parsed.context), width), np.nan)
    for index, row in enumerate(parsed.context):
        if row:  # numpy turns None into NaN in a float array
            context[index, width - len(row):] = np.asarray(row, dtype=np.float64)
    return to_request(context, parsed)


def parse_tensor_body(body: bytes, limits: RequestLimits) -> ForecastRequest:
    try:
        header, start = decode_header(body)
    except FrameError as exc:
        raise ApiError(400, f"malformed {TENSOR_MEDIA_TYPE} body: {exc}") from None
    try:
        params = TensorHeader.model_validate(header)
    except ValidationError as exc:
        raise ApiError(422, f"tensor header: {_describe(exc)}") from None
    if len(params.shape) != 2:
        raise ApiError(400, f"tensor shape must be [n_series, n_steps], got {params.shape}")
    limits.check_horizon(params.horizon)
    limits.check_context(*params.shape)
    return to_request(decode_values(body, header, start), params)


def to_request(context: FloatArray, params: ForecastParams) -> ForecastRequest:
    if context.shape[0] == 0:
        raise ApiError(400, "context has no series; send at least one row")
    infinite = np.flatnonzero(np.isinf(context).any(axis=1))
    if infinite.size:
        raise ApiError(
            400, f"context row {infinite[0]} holds an infinite value; send null (JSON) or NaN "
            "(binary) for a missing value"
        )
    huge = np.flatnonzero(((context > FLOAT32_MAX) | (context < -FLOAT32_MAX)).any(axis=1))
    if huge.size:
        row = context[huge[0]]
        value = row[np.nanargmax(np.abs(row))]
        raise ApiError(
            422, f"context row {huge[0]} holds {value:g}, beyond the +-{FLOAT32_MAX:.4g} of "
            "the float32 the models compute in; scale the series down (a larger unit)"
        )
    empty = np.flatnonzero(~np.isfinite(context).any(axis=1))
    if empty.size:
        others = f" (and {empty.size - 1} more rows)" if empty.size > 1 else ""
        raise ApiError(
            400, f"context row {empty[0]}{others} has no finite value; leave such series out "
            "or send some of their history"
        )
    try:
        return ForecastRequest(
            context, params.horizon, tuple(params.quantiles), params.step_seconds
        )
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def encode_json_answer(model: str, forecast: QuantileForecast) -> bytes:
    cells = forecast.values.astype(object)
    cells[~np.isfinite(forecast.values)] = None
    payload = {"model": model, "quantiles": list(forecast.quantiles), "forecast": cells.tolist()}
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def encode_tensor_answer(model: str, forecast: QuantileForecast) -> bytes:
    return encode_frame({"quantiles": list(forecast.quantiles), "model": model}, forecast.values)


def _describe(exc: ValidationError, limit: int = 5) -> str:
    parts = []
    for error in exc.errors()[:limit]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where.lstrip('.')}: {message}" if where else message)
    if exc.error_count() > limit:
        parts.append(f"and {exc.error_count() - limit} more problem(s)")
    return "; ".join(parts)

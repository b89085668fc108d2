"""What one forecast request may ask of a model, and the refusals of anything more.

A request's cost grows with its horizon (an autoregressive model such as Fracast runs one
pass per 48 steps) and with its context (memory and transfer), and one model runs one
engine call at a time: without these limits one request could hold a model for minutes
and make every other client wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from openanomaly.config import ModelLimits, ModelServerSettings
from openanomaly.entrypoints.model_server.errors import ApiError

T = TypeVar("T")


@dataclass(frozen=True)
class RequestLimits:
    """The limits of one model, each with the setting that raises it (for the messages)."""

    model: str
    max_horizon: int
    max_context_steps: int
    max_context_values: int
    request_timeout: float
    horizon_setting: str
    steps_setting: str
    timeout_setting: str

    @classmethod
    def of(cls, settings: ModelServerSettings, model: str) -> RequestLimits:
        own = settings.per_model.get(model, ModelLimits())

        def setting(key: str, own_value: object) -> str:
            return (f"model_server.{key}" if own_value is None
                    else f"model_server.per_model.{model}.{key}")

        return cls(
            model=model,
            max_horizon=_first(own.max_horizon, settings.max_horizon),
            max_context_steps=_first(own.max_context_steps, settings.max_context_steps),
            max_context_values=settings.max_context_values,
            request_timeout=_first(own.request_timeout, settings.request_timeout),
            horizon_setting=setting("max_horizon", own.max_horizon),
            steps_setting=setting("max_context_steps", own.max_context_steps),
            timeout_setting=setting("request_timeout", own.request_timeout),
        )

    def check_horizon(self, horizon: int) -> None:
        if horizon > self.max_horizon:
            raise ApiError(422, (
                f"horizon {horizon} is over the limit of {self.max_horizon} steps for model "
                f"{self.model!r} ({self.horizon_setting}); ask for fewer steps per request, "
                "or raise the limit on the server"))

    def check_context(self, series: int, steps: int) -> None:
        """Before the context is copied into an array of ``series`` x ``steps`` values."""
        if steps > self.max_context_steps:
            raise ApiError(413, (
                f"context of {steps} steps is over the limit of {self.max_context_steps} steps "
                f"per series for model {self.model!r} ({self.steps_setting}); send the "
                "most recent steps only, or raise the limit on the server"))
        if series * steps > self.max_context_values:
            raise ApiError(413, self._too_many_values(
                f"context of {series} series x {steps} steps (every row padded to the "
                f"longest) = {series * steps} values"))

    def check_json_numbers(self, body: bytes) -> None:
        """Before a JSON body is parsed: every number or row but the last is followed by a
        comma, so the commas bound what parsing creates, at some 80 bytes per number."""
        commas = body.count(b",")
        # Room for the commas of the quantiles and of the other fields.
        if commas > self.max_context_values + 1024:
            raise ApiError(413, self._too_many_values(f"JSON body of {commas + 1} numbers"))

    def _too_many_values(self, what: str) -> str:
        return (f"{what} is over the limit of {self.max_context_values} context values per "
                "request (model_server.max_context_values); send fewer series per request")

    def timed_out(self) -> ApiError:
        return ApiError(504, (
            f"the forecast with model {self.model!r} took longer than the limit of "
            f"{self.request_timeout:g} s ({self.timeout_setting}) and was abandoned; send "
            "fewer series or a shorter horizon per request, or raise the limit on the server"))


def _first(own: T | None, server_wide: T) -> T:
    return server_wide if own is None else own

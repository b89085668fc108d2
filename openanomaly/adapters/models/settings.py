"""How a model is configured by name in the ``models`` section.

Each backend has its own settings class holding only the keys it reads; ``backend`` picks
the class (a discriminated union), so a key another backend takes is refused by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    field_validator,
    model_validator,
)

from openanomaly.domain.pipeline import Duration
from openanomaly.domain.redaction import redact


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ContextSettings(_Settings):
    max_context: int | None = Field(
        default=None, ge=8, description="steps of context fed to the model (model maximum if unset)"
    )


class _TorchSettings(_ContextSettings):
    device: str = Field(default="cpu", pattern=r"^(cpu|auto|mps|cuda(:\d+)?)$")
    # Only Chronos runs in reduced precision; float32 stays accepted everywhere else.
    dtype: Literal["float32"] = "float32"
    batch_size: int = Field(default=8, ge=1, description="series per forward pass")


class _HubSettings(_TorchSettings):
    source: str | None = Field(
        default=None, description="hub id (e.g. amazon/chronos-bolt-small) or local folder"
    )


class _SeasonalSettings(_ContextSettings):
    season: Duration = Field(default=86400.0, description="the season's length")


class FracastSettings(_TorchSettings):
    backend: Literal["fracast"] = "fracast"
    source: str | None = Field(
        default=None, description="weights folder; the weights bundled in fracast when unset"
    )
    weights: Literal["fp32", "w8"] = Field(default="fp32", description="weight format")


class ChronosSettings(_HubSettings):
    backend: Literal["chronos"] = "chronos"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # type: ignore[assignment]
    seed: int = Field(default=0, description="seed of sampling models (Chronos T5)")
    num_samples: int = Field(default=20, ge=1, description="samples drawn by Chronos T5")


class TimesFMSettings(_HubSettings):
    backend: Literal["timesfm"] = "timesfm"


class TiRexSettings(_HubSettings):
    backend: Literal["tirex"] = "tirex"


class SeasonalNaiveSettings(_SeasonalSettings):
    backend: Literal["seasonal_naive"] = "seasonal_naive"


class StatsForecastSettings(_SeasonalSettings):
    """``autoets``: AutoETS; ``seasonal``: MSTL with an ETS trend, for long seasons."""

    backend: Literal["autoets", "seasonal"]


class EnsembleSettings(_Settings):
    backend: Literal["ensemble"] = "ensemble"
    members: list[str] = Field(description="the models combined")
    combine: Literal["mean", "median"] = Field(
        default="median", description="how member quantiles are combined"
    )

    @field_validator("members")
    @classmethod
    def _at_least_two(cls, members: list[str]) -> list[str]:
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        return members


class RemoteSettings(_Settings):
    backend: Literal["remote"] = "remote"
    url: str = Field(description="base URL of a model server")
    token: SecretStr | None = Field(default=None, description="bearer token")
    remote_model: str | None = Field(
        default=None, description="the model's name on the server (default: this name)"
    )
    timeout: float = Field(default=60.0, gt=0, description="seconds per request")
    max_retries: int = Field(default=3, ge=0, description="retries on 5xx and errors")
    tls_ca_file: str | None = Field(
        default=None, description="PEM CA bundle that signed the server's certificate "
        "(default: the system's CAs)")
    tls_client_cert: str | None = Field(
        default=None, description="PEM client certificate, for a server that requires one")
    tls_client_key: str | None = Field(default=None, description="its PEM private key")

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {redact(url)!r}")
        return url

    @model_validator(mode="after")
    def _tls_needs_https(self) -> RemoteSettings:
        if (self.tls_client_cert is None) != (self.tls_client_key is None):
            raise ValueError("set both tls_client_cert and tls_client_key, or neither")
        tls = (self.tls_ca_file, self.tls_client_cert)
        if any(setting is not None for setting in tls) and not self.url.startswith("https://"):
            raise ValueError(f"tls_* settings need an https:// url, got {redact(self.url)!r}")
        return self


class CustomSettings(_TorchSettings):
    """The user's factory reads whichever of these keys its model needs."""

    backend: Literal["custom"] = "custom"
    factory: str = Field(
        description="'module.path:callable' called as callable(name, settings); it returns an "
        "object with forecast(request) -> QuantileForecast",
    )
    source: str | None = Field(default=None, description="weights folder or hub id")
    season: Duration = Field(default=86400.0, description="the season's length")

    @field_validator("factory")
    @classmethod
    def _module_and_callable(cls, factory: str) -> str:
        module, sep, attribute = factory.partition(":")
        if not sep or not module.strip() or not attribute.strip():
            raise ValueError(f"factory must be written 'module.path:callable', got {factory!r}")
        return factory


ModelSettings = Annotated[
    FracastSettings | ChronosSettings | TimesFMSettings | TiRexSettings
    | SeasonalNaiveSettings | StatsForecastSettings | EnsembleSettings | RemoteSettings
    | CustomSettings,
    Field(discriminator="backend"),
]
"""One model's settings, of the class its ``backend`` names."""

_ADAPTER: TypeAdapter[ModelSettings] = TypeAdapter(ModelSettings)


def parse_model_settings(fields: Mapping[str, Any]) -> ModelSettings:
    """Validate one model's settings, e.g. ``{"backend": "chronos", "source": ...}``, into
    its backend's class (raises pydantic's ValidationError, like constructing the class)."""
    return _ADAPTER.validate_python(fields)


def backend_names() -> tuple[str, ...]:
    """Every value ``backend`` accepts."""
    union, _ = get_args(ModelSettings)
    classes: tuple[type[BaseModel], ...] = get_args(union)
    return tuple(name for settings in classes
                 for name in get_args(settings.model_fields["backend"].annotation))


def default_models() -> dict[str, ModelSettings]:
    """Models every installation has without configuring anything."""
    return {"fracast": FracastSettings(), "seasonal_naive": SeasonalNaiveSettings()}

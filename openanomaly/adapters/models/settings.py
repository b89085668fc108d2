"""How a model is configured by name in the ``models`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from openanomaly.domain.pipeline import Duration

Backend = Literal[
    "fracast", "seasonal_naive", "chronos", "timesfm", "tirex", "autoets", "seasonal",
    "ensemble", "remote", "custom",
]


class ModelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Backend
    source: str | None = Field(
        default=None,
        description="weights folder or hub id; fracast uses its bundled weights when unset",
    )
    weights: Literal["fp32", "w8"] = Field(default="fp32", description="fracast weight format")
    device: str = Field(default="cpu", pattern=r"^(cpu|auto|mps|cuda(:\d+)?)$")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: int = Field(default=8, ge=1, description="series per forward pass")
    max_context: int | None = Field(
        default=None, ge=8, description="steps of context fed to the model (model maximum if unset)"
    )
    season: Duration = Field(
        default=86400.0, description="seasonal_naive, seasonal, autoets: the season's length"
    )
    seed: int = Field(default=0, description="seed of sampling models (Chronos T5)")
    num_samples: int = Field(default=20, ge=1, description="samples drawn by Chronos T5")
    members: list[str] = Field(default_factory=list, description="ensemble: member models")
    combine: Literal["mean", "median"] = Field(
        default="median", description="ensemble: how member quantiles are combined"
    )
    url: str | None = Field(default=None, description="remote: base URL of a model server")
    token: SecretStr | None = Field(default=None, description="remote: bearer token")
    remote_model: str | None = Field(
        default=None, description="remote: the model's name on the server (default: this name)"
    )
    timeout: float = Field(default=60.0, gt=0, description="remote: seconds per request")
    max_retries: int = Field(default=3, ge=0, description="remote: retries on 5xx and errors")
    factory: str | None = Field(
        default=None,
        description="custom: 'module.path:callable' called as callable(name, settings); it "
        "returns an object with forecast(request) -> QuantileForecast",
    )

    @model_validator(mode="after")
    def _backend_needs(self) -> ModelSettings:
        if self.backend == "ensemble" and len(self.members) < 2:
            raise ValueError("an ensemble needs at least two members")
        if self.backend != "ensemble" and self.members:
            raise ValueError("members only applies to backend: ensemble")
        if self.backend == "remote" and not self.url:
            raise ValueError("backend: remote needs url (the model server's base URL)")
        if self.dtype != "float32" and self.backend != "chronos":
            raise ValueError(
                f"dtype {self.dtype} is supported by the chronos backend only; "
                f"{self.backend} runs in float32"
            )
        if self.backend == "custom":
            if not self.factory:
                raise ValueError(
                    "backend: custom needs factory ('module.path:callable' that builds the "
                    "model)"
                )
            module, sep, attribute = self.factory.partition(":")
            if not sep or not module.strip() or not attribute.strip():
                raise ValueError(
                    f"factory must be written 'module.path:callable', got {self.factory!r}"
                )
        elif self.factory is not None:
            raise ValueError(
                f"factory only applies to backend: custom (this model's backend is "
                f"{self.backend})"
            )
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        return self


def default_models() -> dict[str, ModelSettings]:
    """Models every installation has without configuring anything."""
    return {
        "fracast": ModelSettings(backend="fracast"),
        "seasonal_naive": ModelSettings(backend="seasonal_naive"),
    }

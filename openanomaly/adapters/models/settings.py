"""How a model is configured by name in the ``models`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from openanomaly.domain.pipeline import Duration


class ModelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["fracast", "seasonal_naive"]
    source: str | None = Field(
        default=None,
        description="weights folder or hub id; fracast uses its bundled weights when unset",
    )
    weights: Literal["fp32", "w8"] = Field(default="fp32", description="fracast weight format")
    device: str = "cpu"
    batch_size: int = Field(default=8, ge=1, description="series per forward pass")
    max_context: int | None = Field(
        default=None, ge=8, description="steps of context fed to the model (model maximum if unset)"
    )
    season: Duration = Field(default=86400.0, description="seasonal_naive: the season's length")


def default_models() -> dict[str, ModelSettings]:
    """Models every installation has without configuring anything."""
    return {
        "fracast": ModelSettings(backend="fracast"),
        "seasonal_naive": ModelSettings(backend="seasonal_naive"),
    }

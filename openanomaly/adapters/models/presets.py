"""Models `benchmark models` knows by name without configuration: the bundled and
statistical ones, and published architectures built with random weights where no
checkpoint can be downloaded (their speed does not depend on the weights' values)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from openanomaly.adapters.models import random_init
from openanomaly.adapters.models.settings import ModelSettings
from openanomaly.domain.errors import UnknownModel

# Published architectures with no weights on this machine: (builder kind, size).
RANDOM_PRESETS: dict[str, tuple[str, str]] = {
    "chronos-bolt-tiny": ("chronos-bolt", "tiny"),
    "chronos-bolt-mini": ("chronos-bolt", "mini"),
    "chronos-bolt-small": ("chronos-bolt", "small"),
    "chronos-bolt-base": ("chronos-bolt", "base"),
    "chronos-2": ("chronos-2", "base"),
    "chronos-t5-tiny": ("chronos-t5", "tiny"),
    "chronos-t5-small": ("chronos-t5", "small"),
    "timesfm-2.5": ("timesfm-2.5", "200m"),
    "tirex": ("tirex", "base"),
}
REAL_PRESETS: dict[str, ModelSettings] = {
    "fracast": ModelSettings(backend="fracast"),
    "seasonal_naive": ModelSettings(backend="seasonal_naive"),
    "autoets": ModelSettings(backend="autoets"),
    "seasonal": ModelSettings(backend="seasonal"),
}


def resolve(name: str, configured: Mapping[str, ModelSettings], device: str | None,
            folder: Path, batch: int = 512) -> tuple[ModelSettings, str]:
    """Settings for a benchmarked model and where its weights come from. On a GPU the
    largest benchmarked batch runs as one forward pass."""
    updates: dict[str, object] = {"device": device} if device else {}
    if device and device != "cpu":
        updates["batch_size"] = batch
    if name in configured:
        return configured[name].model_copy(update=updates), "configured"
    if name in REAL_PRESETS:
        return REAL_PRESETS[name].model_copy(update=updates), "bundled"
    if name in RANDOM_PRESETS:
        kind, size = RANDOM_PRESETS[name]
        path = random_init.build(kind, folder / name, size)
        backend = {"timesfm-2.5": "timesfm", "tirex": "tirex"}.get(kind, "chronos")
        return ModelSettings(backend=backend, source=str(path), batch_size=batch).model_copy(
            update=updates), "random init"
    known = sorted({*REAL_PRESETS, *RANDOM_PRESETS, *configured})
    raise UnknownModel(f"unknown model {name!r}; known: {', '.join(known)}")

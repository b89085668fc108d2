"""Models `benchmark models` knows by name without configuration: the bundled and
statistical ones, and published architectures built with random weights where no
checkpoint can be downloaded (their speed does not depend on the weights' values)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from openanomaly.adapters.models import random_init
from openanomaly.adapters.models.settings import (
    FracastSettings,
    ModelSettings,
    SeasonalNaiveSettings,
    StatsForecastSettings,
    parse_model_settings,
)
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
    "fracast": FracastSettings(),
    "seasonal_naive": SeasonalNaiveSettings(),
    "autoets": StatsForecastSettings(backend="autoets"),
    "seasonal": StatsForecastSettings(backend="seasonal"),
}


def resolve(name: str, configured: Mapping[str, ModelSettings], device: str | None,
            folder: Path, batch: int = 512) -> tuple[ModelSettings, str]:
    """Settings for a benchmarked model and where its weights come from. On a GPU the
    largest benchmarked batch runs as one forward pass."""
    updates: dict[str, object] = {"device": device} if device else {}
    if device and device != "cpu":
        updates["batch_size"] = batch
    if name in configured:
        return _with(configured[name], updates), "configured"
    if name in REAL_PRESETS:
        return _with(REAL_PRESETS[name], updates), "bundled"
    if name in RANDOM_PRESETS:
        kind, size = RANDOM_PRESETS[name]
        path = random_init.build(kind, folder / name, size)
        backend = {"timesfm-2.5": "timesfm", "tirex": "tirex"}.get(kind, "chronos")
        settings = parse_model_settings({"backend": backend, "source": str(path),
                                         "batch_size": batch})
        return _with(settings, updates), "random init"
    known = sorted({*REAL_PRESETS, *RANDOM_PRESETS, *configured})
    raise UnknownModel(f"unknown model {name!r}; known: {', '.join(known)}")


def _with(settings: ModelSettings, updates: dict[str, object]) -> ModelSettings:
    """``settings`` with those of ``updates`` its backend has (a statistical model has no
    device or batch size)."""
    fields = type(settings).model_fields
    return settings.model_copy(update={k: v for k, v in updates.items() if k in fields})

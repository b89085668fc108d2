"""`openanomaly bench models`: load time, latency and throughput of each model.

Models whose weights are on a hub this machine cannot reach are benchmarked as randomly
initialised models of the same architecture and size, and the table says so.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import click

from openanomaly.adapters.models import random_init
from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.settings import (
    FracastSettings,
    ModelSettings,
    SeasonalNaiveSettings,
    StatsForecastSettings,
    parse_model_settings,
)
from openanomaly.config import AppConfig
from openanomaly.services.benchmark import SpeedRow, measure

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


def resolve(name: str, config: AppConfig | None, device: str | None, folder: Path,
            batch: int = 512) -> tuple[ModelSettings, str]:
    """Settings for a benchmarked model and where its weights come from. On a GPU the
    largest benchmarked batch runs as one forward pass."""
    updates: dict[str, object] = {"device": device} if device else {}
    if device and device != "cpu":
        updates["batch_size"] = batch
    if config is not None and name in config.models:
        return _with(config.models[name], updates), "configured"
    if name in REAL_PRESETS:
        return _with(REAL_PRESETS[name], updates), "bundled"
    if name in RANDOM_PRESETS:
        kind, size = RANDOM_PRESETS[name]
        path = random_init.build(kind, folder / name, size)
        backend = {"timesfm-2.5": "timesfm", "tirex": "tirex"}.get(kind, "chronos")
        settings = parse_model_settings({"backend": backend, "source": str(path),
                                         "batch_size": batch})
        return _with(settings, updates), "random init"
    known = sorted({*REAL_PRESETS, *RANDOM_PRESETS, *(config.models if config else {})})
    raise click.BadParameter(f"unknown model {name!r}; known: {', '.join(known)}")


def _with(settings: ModelSettings, updates: dict[str, object]) -> ModelSettings:
    """``settings`` with those of ``updates`` its backend has (a statistical model has no
    device or batch size)."""
    fields = type(settings).model_fields
    return settings.model_copy(update={k: v for k, v in updates.items() if k in fields})


def run_bench(
    names: Sequence[str], batches: Sequence[int], contexts: Sequence[int], horizon: int,
    device: str | None, repeat: int, config: AppConfig | None, out: Path | None,
    echo: Callable[[str], None] = click.echo,
) -> list[dict[str, object]]:
    results: list[dict[str, object]] = []
    header = (f"{'model':<20} {'weights':<12} {'device':<7} {'load s':>7} {'batch':>6} "
              f"{'context':>8} {'horizon':>8} {'latency s':>10} {'series/s':>10}")
    echo(header)
    echo("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="openanomaly-bench-") as tmp:
        models = dict(config.models) if config else {}
        for name in names:
            settings, weights = resolve(name, config, device, Path(tmp), max(batches))
            engine = LocalModelEngine({**models, name: settings})
            started = time.perf_counter()
            engine.get(name)
            load_s = time.perf_counter() - started
            rows: list[SpeedRow] = measure(engine, name, batches, contexts, horizon, repeat)
            device_name = getattr(settings, "device", "cpu")
            for row in rows:
                echo(f"{name:<20} {weights:<12} {device_name:<7} {load_s:>7.2f} "
                     f"{row.batch:>6} {row.context:>8} {row.horizon:>8} "
                     f"{row.latency_s:>10.3f} {row.series_per_s:>10.1f}")
                results.append({**asdict(row), "weights": weights, "device": device_name,
                                "load_s": load_s, "backend": settings.backend})
            del engine
    if out is not None:
        out.write_text(json.dumps({"machine": _machine(), "results": results}, indent=2))
        echo(f"\nwritten to {out}")
    return results


def _machine() -> dict[str, object]:
    import os

    info: dict[str, object] = {"python": platform.python_version(),
                               "processor": platform.processor() or platform.machine(),
                               "cpus": os.cpu_count()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info

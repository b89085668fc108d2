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

from openanomaly.bootstrap import benchmark_engine, benchmark_model
from openanomaly.config import AppConfig
from openanomaly.domain.errors import UnknownModel
from openanomaly.services.model_speed import SpeedRow, measure


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
            try:
                settings, weights = benchmark_model(name, config, device, Path(tmp),
                                                    max(batches))
            except UnknownModel as exc:
                raise click.BadParameter(str(exc), param_hint="--models") from None
            engine = benchmark_engine({**models, name: settings})
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
        out.write_text(json.dumps({"machine": machine_info(), "results": results}, indent=2))
        echo(f"\nwritten to {out}")
    return results


def machine_info() -> dict[str, object]:
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

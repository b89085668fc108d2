"""`openanomaly benchmark model-server`: series per second through `serve-model` (HTTP,
binary frames, dynamic batching, several clients) against the raw forward pass of the
same model on the same machine, and their ratio.

The raw rate is measured first, in this process; then a `serve-model` process of its own
serves the model alone, so the two never share the device.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from openanomaly.bootstrap import (
    benchmark_engine,
    benchmark_model,
    remote_engine,
    stop_process,
    stop_with_parent,
)
from openanomaly.config import AppConfig
from openanomaly.entrypoints.benchmark.models import machine_info
from openanomaly.services.model_speed import ClientsRow, SpeedRow, measure, measure_clients

_LISTENING = re.compile(r'msg="model server listening" url=(https?://\S+)')
_START_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class ServingOptions:
    model: str
    batch: int = 512
    """Series per engine call: the raw forward pass's batch and the server's largest."""
    context: int = 512
    horizon: int = 64
    clients: int = 4
    seconds: float = 20.0
    batch_wait_ms: float = 5.0
    device: str | None = None


def run_serving(options: ServingOptions, config: AppConfig | None, out: Path | None,
                echo: Callable[[str], None]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="openanomaly-serving-") as folder:
        settings, weights = benchmark_model(options.model, config, options.device,
                                            Path(folder), options.batch)
        per_request = max(1, options.batch // options.clients)
        engine = benchmark_engine({options.model: settings})
        # The raw rate to beat: the better of the server's largest batch and one request's
        # (on a CPU, smaller batches can be faster per series).
        rows = measure(engine, options.model, sorted({per_request, options.batch}),
                       [options.context], options.horizon)
        raw: SpeedRow = max(rows, key=lambda row: row.series_per_s)
        del engine
        echo(f"raw forward pass: {raw.series_per_s:,.0f} series/s "
             f"(best of batches {', '.join(str(r.batch) for r in rows)}: {raw.batch}, "
             f"{raw.latency_s:.3f} s a call)")
        with serving(options, settings.model_dump(mode="json", exclude_none=True),
                     Path(folder)) as url:
            client = remote_engine(url)
            served: ClientsRow = measure_clients(
                client, options.model, options.clients, per_request, options.context,
                options.horizon, options.seconds)
        ratio = served.series_per_s / raw.series_per_s
        echo(f"through serve-model: {served.series_per_s:,.0f} series/s ({options.clients} "
             f"clients of {per_request} series a request, {served.requests} requests, "
             f"median {served.latency_s:.3f} s)")
        echo(f"server / raw: {ratio:.0%}")
        result = {"machine": machine_info(), "weights": weights,
                  "options": asdict(options), "raw": asdict(raw), "served": asdict(served),
                  "ratio": ratio}
    if out is not None:
        out.write_text(json.dumps(result, indent=2))
        echo(f"\nwritten to {out}")
    return result


@contextlib.contextmanager
def serving(options: ServingOptions, model_settings: dict[str, Any],
            folder: Path) -> Iterator[str]:
    """A `serve-model` process of the one model on a free loopback port; its URL."""
    config = folder / "serving.yaml"
    config.write_text(yaml.safe_dump({
        "models": {options.model: model_settings},
        "model_server": {"batch_wait_ms": options.batch_wait_ms,
                         "max_batch_series": options.batch, "preload": [options.model]},
    }))
    log_path = folder / "serve-model.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "openanomaly.entrypoints.cli", "--config", str(config),
             "serve-model", "--port", "0"], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ}, preexec_fn=stop_with_parent)
    try:
        yield _wait_ready(process, log_path)
    finally:
        stop_process(process, timeout=30)


def _wait_ready(process: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve-model exited with {process.returncode}: "
                               f"{log_path.read_text()[-2000:]}")
        found = _LISTENING.search(log_path.read_text())
        if found:
            url = found.group(1)
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    return url
        time.sleep(0.2)
    raise RuntimeError(f"serve-model was not ready within {_START_TIMEOUT_S:.0f} s: "
                       f"{log_path.read_text()[-2000:]}")

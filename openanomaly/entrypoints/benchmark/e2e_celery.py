"""`openanomaly benchmark e2e --celery-workers W`: the same fleet and pipeline, run by W
`openanomaly worker` processes, its slots sharded over them.

The benchmark starts a Redis of its own (or uses the one given: it must be a database no
other worker uses, as these workers take every task on its queue), writes a configuration
for the workers, starts them (one pool process each, the model limited to ``threads``
threads) and sends the pipeline's task for consecutive 5-minute slots, one after the
other as beat would. Per slot: the wall time from sending the task to the slot's
completion in the ledger, the reading worker's time (query and calibration read-back),
the shards' busy time and forward passes (their summaries in the shard store), series
per 5-minute cycle at that wall time, and Redis' peak memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from openanomaly.bootstrap import (
    benchmark_model,
    benchmark_tsdb,
    local_redis,
    redis_ledger,
    redis_memory_peak,
    redis_shard_store,
    stop_process,
    stop_with_parent,
)
from openanomaly.config import AppConfig, load_config
from openanomaly.entrypoints.benchmark.e2e import E2EOptions, load_fleet, prometheus
from openanomaly.entrypoints.benchmark.models import machine_info
from openanomaly.ports import ShardStore, SlotLedger
from openanomaly.services import e2e_bench

WORKER_START_S = 120.0


@dataclass(frozen=True)
class CeleryOptions:
    workers: int
    shard_series: int
    threads: int = 1
    redis_url: str | None = None
    """None: start a local redis-server for the run."""
    share_contexts: bool = True
    """False: each worker keeps its own contexts (scheduler.share_contexts)."""


@dataclass
class SlotMeasure:
    slot: int
    wall_s: float
    series: int
    shards: int
    read_s: float
    read_stages: dict[str, float]
    busy_s: float
    inference_s: float
    redis_peak_bytes: int

    @property
    def overhead_ratio(self) -> float:
        """All busy time that is not the forward pass, over the forward pass."""
        inference = self.inference_s
        return (self.busy_s - inference) / inference if inference > 0 else float("inf")

    @property
    def series_per_cycle(self) -> float:
        return self.series / self.wall_s * e2e_bench.INTERVAL_S if self.wall_s > 0 else 0.0


def worker_config(options: E2EOptions, celery: CeleryOptions, prometheus_url: str, redis_url: str,
                  model: dict[str, Any]) -> str:
    """The workers' configuration: the benchmark's pipeline and model, sharded slots."""
    return yaml.safe_dump({
        "prometheus": {"url": prometheus_url},
        "pipelines": [options.pipeline().model_dump(mode="json", exclude_defaults=True)],
        "models": {options.model: model},
        "redis": {"url": redis_url},
        "scheduler": {"kind": "celery", "shard_series": celery.shard_series,
                      "share_contexts": celery.share_contexts,
                      "task_soft_time_limit": 3000, "task_time_limit": 3300},
        "metrics": {"port": 0},
        "logging": {"format": "logfmt", "level": "WARNING"},
    }, sort_keys=False)


def run_e2e_celery(options: E2EOptions, celery: CeleryOptions, config: AppConfig | None,
                   out: Path | None, echo: Callable[[str], None],
                   prometheus_binary: str = "prometheus") -> list[SlotMeasure]:
    from celery import Celery

    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="openanomaly-")))
        prometheus_url = prometheus(stack, options, prometheus_binary, echo)
        redis_url = celery.redis_url
        if redis_url is None:
            redis_url = stack.enter_context(local_redis()).url
            echo(f"local Redis at {redis_url}")
        settings, weights = benchmark_model(options.model, config, options.device, folder,
                                            512)
        tsdb = benchmark_tsdb(prometheus_url)
        stack.callback(tsdb.close)
        cycle, last = load_fleet(tsdb, options, echo)
        path = folder / "workers.yaml"
        path.write_text(worker_config(options, celery, prometheus_url, redis_url,
                                      settings.model_dump(mode="json", exclude_none=True)))
        worker_settings = load_config(path, environ={})
        start_workers(stack, path, folder, celery)
        client = Celery("openanomaly-benchmark", broker=redis_url, backend=redis_url)
        stack.callback(client.close)
        wait_for_workers(client, celery.workers, folder)
        echo(f"{celery.workers} workers ready, shards of {celery.shard_series} series")
        ledger = redis_ledger(worker_settings)
        shards = redis_shard_store(worker_settings)
        measured = []
        for slot in e2e_bench.slots(last, options.runs):
            one = measure_slot(client, ledger, shards, worker_settings, slot, folder)
            measured.append(one)
            echo(f"slot {slot}: {one.series} series in {one.wall_s:.2f} s ({one.shards} "
                 f"shards; reading {one.read_s:.2f} s, busy {one.busy_s:.2f} s, inference "
                 f"{one.inference_s:.2f} s)")
    steady = measured[-1]
    for line in ["", f"steady state, {celery.workers} workers: {steady.series} series in "
                 f"{steady.wall_s:.2f} s; series per {e2e_bench.INTERVAL_S:g} s cycle: "
                 f"{steady.series_per_cycle:.0f}",
                 f"overhead ratio (busy time but inference / inference): "
                 f"{steady.overhead_ratio:.2f}",
                 f"Redis peak memory: {steady.redis_peak_bytes / 2**20:.0f} MiB"]:
        echo(line)
    if out is not None:
        out.write_text(json.dumps({
            "machine": machine_info(),
            "options": {"series": options.series, "model": options.model,
                        "weights": weights, "runs": options.runs, "step_s": options.step_s,
                        "context_s": options.context_s, "device": options.device,
                        **asdict(celery)},
            "load": {"samples": cycle.samples_loaded, "seconds": cycle.load_seconds},
            "slots": [{**asdict(one), "overhead_ratio": one.overhead_ratio,
                       "series_per_cycle": one.series_per_cycle} for one in measured],
        }, indent=2))
        echo(f"\nwritten to {out}")
    return measured


def start_workers(stack: contextlib.ExitStack, config: Path, folder: Path,
                  celery: CeleryOptions) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(celery.threads)}
    for index in range(celery.workers):
        log = stack.enter_context((folder / f"worker-{index}.log").open("w"))
        process = subprocess.Popen(
            [sys.executable, "-m", "openanomaly.entrypoints.cli", "--config", str(config),
             "worker", "--concurrency", "1"],
            stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=stop_with_parent)
        stack.callback(stop_process, process, 60)


def wait_for_workers(client: Any, count: int, folder: Path) -> None:
    deadline = time.monotonic() + WORKER_START_S
    while len(client.control.ping(timeout=1.0)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the workers did not start within {WORKER_START_S:g} s:\n"
                               f"{_worker_logs(folder)}")


def measure_slot(client: Any, ledger: SlotLedger, shards: ShardStore, settings: AppConfig,
                 slot: int, folder: Path) -> SlotMeasure:
    sent = time.perf_counter()
    task = client.send_task("openanomaly.run_pipeline", args=[e2e_bench.PIPELINE, slot])
    while not ledger.done(e2e_bench.PIPELINE, slot):
        if task.failed():
            raise RuntimeError(f"the slot's task failed: {task.result!r}")
        if time.perf_counter() - sent > settings.scheduler.task_time_limit * 4:
            raise RuntimeError(f"slot {slot} was not done in time:\n{_worker_logs(folder)}")
        time.sleep(0.05)
    wall = time.perf_counter() - sent
    answer = task.get(timeout=60)
    # A sharded slot's task answers for its read; its shards' summaries hold the scoring.
    sharded = answer["status"] == "sharded"
    runs = list(shards.summaries(e2e_bench.PIPELINE, slot).values()) if sharded else [answer]
    read_s = answer["seconds"] if sharded else 0.0
    return SlotMeasure(
        slot=slot, wall_s=wall, series=sum(r["series"] for r in runs),
        shards=len(runs) if sharded else 0, read_s=read_s,
        read_stages=dict(answer["stage_seconds"]) if sharded else {},
        busy_s=read_s + sum(r["seconds"] for r in runs),
        inference_s=sum(r["stage_seconds"].get("inference", 0.0) for r in runs),
        redis_peak_bytes=redis_memory_peak(settings))


def _worker_logs(folder: Path) -> str:
    """The end of every worker's log, for an error that says why."""
    return "\n".join(p.read_text()[-1500:] for p in sorted(folder.glob("worker-*.log")))

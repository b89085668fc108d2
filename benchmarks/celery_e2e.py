"""End-to-end speed under Celery: one pipeline over a fleet, its slots sharded over W workers.

    .venv/bin/python -m benchmarks.celery_e2e [--series 10000] [--workers 2]
        [--model seasonal_naive] [--shard-series 2500] [--runs 3] [--threads 1]
        [--out docs/bench/celery-e2e.json]

Starts its own Prometheus and Redis, writes the fleet `openanomaly benchmark e2e` writes,
starts W `openanomaly worker` processes (one pool process each, each model limited to
--threads threads) and sends the pipeline's task for consecutive 5-minute slots, one
after the other as beat would. Per slot it prints the wall time from sending the task to
the slot's completion in the ledger, the time the reading worker spent (query and
calibration history), the shards' busy time and forward passes (from each task's result
in the backend), series per 5-minute cycle at that wall time, and Redis' peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import yaml
from celery import Celery

from openanomaly.adapters.scheduler.slot_ledger import RedisSlotLedger
from openanomaly.adapters.tsdb.local_prometheus import LocalPrometheus, find_prometheus
from openanomaly.bootstrap import benchmark_model, benchmark_tsdb
from openanomaly.domain.synthetic import FLEET_METRIC
from openanomaly.domain.timeutil import align_down
from openanomaly.entrypoints.benchmark.models import machine_info
from openanomaly.services import e2e_bench
from tests.processes import Proc, worker
from tests.redis_server import RedisServer


def config_text(args: argparse.Namespace, prometheus_url: str, redis_url: str,
                model: dict[str, Any]) -> str:
    return yaml.safe_dump({
        "prometheus": {"url": prometheus_url},
        "pipelines": [{
            "name": e2e_bench.PIPELINE, "query": FLEET_METRIC,
            "model": args.model, "step": "60s", "context": "1d",
            "schedule": f"{e2e_bench.INTERVAL_S:g}s", "max_series": args.series}],
        "models": {args.model: model},
        "redis": {"url": redis_url},
        "scheduler": {"kind": "celery", "shard_series": args.shard_series,
                      "task_soft_time_limit": 1800, "task_time_limit": 1900},
        "logging": {"format": "json", "level": "INFO"},
        "metrics": {"port": 0},
    }, sort_keys=False)


def results(client: redis.Redis) -> list[dict[str, Any]]:
    """Every task result in the backend."""
    found = []
    for key in client.scan_iter(match="celery-task-meta-*", count=1000):
        raw = client.get(key)
        if raw is not None:
            meta = json.loads(raw)
            if isinstance(meta.get("result"), dict):
                found.append(meta["result"])
    return found


def measure_slot(celery: Celery, ledger: RedisSlotLedger, backend: redis.Redis, slot: int,
                 timeout: float) -> dict[str, Any]:
    sent = time.perf_counter()
    celery.send_task("openanomaly.run_pipeline", args=[e2e_bench.PIPELINE, slot])
    deadline = sent + timeout
    while not ledger.done(e2e_bench.PIPELINE, slot):
        if time.perf_counter() > deadline:
            raise SystemExit(f"slot {slot} not done within {timeout:.0f} s")
        time.sleep(0.05)
    wall = time.perf_counter() - sent
    time.sleep(0.5)  # the last shard's result lands just after the ledger's mark
    mine = [r for r in results(backend) if r.get("at_ms") == slot]
    read = next((r for r in mine if r.get("status") == "sharded"), None)
    shards = [r for r in mine if "shard" in r and r.get("status") not in ("skipped",)]
    whole = [r for r in mine if r.get("status") in ("ok", "partial") and "shard" not in r]
    runs = shards or whole
    inference = sum(r["stage_seconds"].get("inference", 0.0) for r in runs)
    busy = sum(r["seconds"] for r in runs) + (read["seconds"] if read else 0.0)
    series = sum(r["series"] for r in runs)
    return {
        "slot": slot, "wall_s": wall, "series": series, "shards": len(shards),
        "read_s": read["seconds"] if read else None,
        "read_stages": read["stage_seconds"] if read else None,
        "busy_s": busy, "inference_s": inference,
        "overhead_ratio": (busy - inference) / inference if inference else None,
        "series_per_cycle": series / wall * e2e_bench.INTERVAL_S,
        "redis_used_memory_peak_bytes": int(backend.info("memory")["used_memory_peak"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="seasonal_naive")
    parser.add_argument("--shard-series", type=int, default=2500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per worker for the model (OMP_NUM_THREADS)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oa-celery-e2e-") as tmp:
        work = Path(tmp)
        (work / "prom").mkdir()
        (work / "redis").mkdir()
        settings, weights = benchmark_model(args.model, None, None, work, 512)
        model = settings.model_dump(mode="json", exclude_none=True)
        with LocalPrometheus(work / "prom", binary=find_prometheus()) as prometheus:
            server = RedisServer(work / "redis")
            config = work / "config.yaml"
            config.write_text(config_text(args, prometheus.url, server.url, model))
            spec = e2e_bench.bench_pipeline(args.series, args.model, 60.0, 86400.0)
            interval_ms = round(e2e_bench.INTERVAL_S * 1000)
            last = align_down(int(time.time() * 1000), interval_ms) - interval_ms
            tsdb = benchmark_tsdb(prometheus.url)
            loaded = time.perf_counter()
            e2e_bench.timed_load(tsdb, spec, args.series, args.runs, last)
            tsdb.close()
            print(f"wrote {args.series} series in {time.perf_counter() - loaded:.1f} s",
                  flush=True)
            os.environ["OMP_NUM_THREADS"] = str(args.threads)
            procs: list[Proc] = [worker(config, work, f"worker-{i}")
                                 for i in range(args.workers)]
            celery = Celery("bench", broker=server.url, backend=server.url)
            backend = server.client()
            measured = []
            try:
                deadline = time.monotonic() + 120
                while len(celery.control.ping(timeout=1.0)) < args.workers:
                    if time.monotonic() > deadline:
                        logs = "\n".join(p.log_path.read_text()[-2000:] for p in procs)
                        raise SystemExit(f"workers did not start within 120 s:\n{logs}")
                ledger = RedisSlotLedger(backend)
                for slot in e2e_bench.slots(last, args.runs):
                    one = measure_slot(celery, ledger, backend, slot, timeout=3600)
                    measured.append(one)
                    print(f"slot {slot}: {one['series']} series in {one['wall_s']:.2f} s "
                          f"wall ({one['shards']} shards; read {one['read_s'] or 0:.2f} s, "
                          f"busy {one['busy_s']:.2f} s, inference "
                          f"{one['inference_s']:.2f} s); "
                          f"{one['series_per_cycle']:.0f} series per 5-minute cycle",
                          flush=True)
            finally:
                for proc in procs:
                    proc.terminate(timeout=60)
                celery.close()
                backend.close()
                server.stop()
    steady = measured[-1]
    ratio = steady["overhead_ratio"]
    print(f"\nsteady state: {steady['series_per_cycle']:.0f} series per cycle with "
          f"{args.workers} workers; overhead ratio "
          f"{'n/a' if ratio is None else f'{ratio:.2f}'}; Redis peak memory "
          f"{steady['redis_used_memory_peak_bytes'] / 2**20:.0f} MiB")
    if args.out is not None:
        args.out.write_text(json.dumps({
            "machine": machine_info(),
            "options": {**{k: (str(v) if isinstance(v, Path) else v)
                           for k, v in vars(args).items()}, "weights": weights},
            "slots": measured}, indent=2))
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()

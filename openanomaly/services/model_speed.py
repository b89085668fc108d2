"""Model speed: latency and series per second for batches of synthetic contexts."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from openanomaly.domain.forecast import ForecastRequest
from openanomaly.ports import ModelEngine

QUANTILES = (0.1, 0.5, 0.9)


@dataclass(frozen=True)
class SpeedRow:
    model: str
    batch: int
    context: int
    horizon: int
    latency_s: float  # median of the repeats
    series_per_s: float


def synthetic_contexts(batch: int, context: int, seed: int = 0) -> np.ndarray:
    """Daily-cycle series with noise and a few gaps, like scraped metrics at 5 minutes."""
    rng = np.random.default_rng(seed)
    t = np.arange(context)
    phase = rng.uniform(0, 2 * np.pi, (batch, 1))
    level = rng.uniform(10, 1000, (batch, 1))
    values = level * (1 + 0.3 * np.sin(2 * np.pi * t / 288 + phase))
    values += rng.normal(0, 0.02, (batch, context)) * level
    values[rng.random((batch, context)) < 0.002] = np.nan
    return values


def measure(
    engine: ModelEngine, model: str, batches: Sequence[int], contexts: Sequence[int],
    horizon: int, repeat: int = 3, step_seconds: float = 300.0,
) -> list[SpeedRow]:
    """One warm-up call, then ``repeat`` timed calls per (batch, context)."""
    rows = []
    for context in contexts:
        for batch in batches:
            request = ForecastRequest(synthetic_contexts(batch, context), horizon, QUANTILES,
                                      step_seconds)
            engine.forecast(model, request)
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                engine.forecast(model, request)
                times.append(time.perf_counter() - started)
            latency = float(np.median(times))
            rows.append(SpeedRow(model, batch, context, horizon, latency, batch / latency))
    return rows


@dataclass(frozen=True)
class ClientsRow:
    clients: int
    series_per_request: int
    requests: int
    seconds: float
    series_per_s: float
    latency_s: float  # median per request


def measure_clients(
    engine: ModelEngine, model: str, clients: int, series_per_request: int, context: int,
    horizon: int, seconds: float, step_seconds: float = 300.0,
) -> ClientsRow:
    """``clients`` threads forecasting through ``engine`` (a remote one: the requests
    cross the network) back to back for ``seconds``, after one warm-up request each."""
    requests = [ForecastRequest(synthetic_contexts(series_per_request, context, seed), horizon,
                                QUANTILES, step_seconds) for seed in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    began, deadline = [0.0], [0.0]

    def go() -> None:
        # Run by the barrier before it lets any client through: every client sees the
        # deadline.
        began[0] = time.perf_counter()
        deadline[0] = began[0] + seconds

    start = threading.Barrier(clients, action=go)

    def client(index: int) -> None:
        engine.forecast(model, requests[index])
        start.wait()
        while time.perf_counter() < deadline[0]:
            sent = time.perf_counter()
            engine.forecast(model, requests[index])
            latencies[index].append(time.perf_counter() - sent)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began[0]
    done = sum(len(one) for one in latencies)
    every = [latency for one in latencies for latency in one]
    return ClientsRow(clients, series_per_request, done, elapsed,
                      done * series_per_request / elapsed,
                      float(np.median(every)) if every else float("nan"))

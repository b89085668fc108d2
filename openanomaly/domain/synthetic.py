"""Realistic synthetic service metrics with injected anomalies, for the demo and tests.

Each series has a daily cycle, a weaker weekly cycle, a slow trend and noise whose size
follows the level, like request rates and utilisation of a real service.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from openanomaly.domain.series import FloatArray, Series

DAY_S = 86400


@dataclass(frozen=True)
class Injection:
    """One anomaly put into a series: kind, the index of its first step and its length."""

    kind: str
    start: int
    length: int


@dataclass
class SyntheticSeries:
    labels: dict[str, str]
    values: FloatArray
    injections: list[Injection] = field(default_factory=list)


def base_signal(
    n_steps: int, step_s: float, level: float, daily_amplitude: float, noise: float,
    rng: np.random.Generator, phase: float = 0.0,
) -> FloatArray:
    t = np.arange(n_steps) * step_s
    day = 2 * np.pi * t / DAY_S
    weekly = 1 + 0.08 * np.sin(day / 7 + phase)
    # Busy daytime, quiet night: a skewed daily curve, not a pure sine.
    daily = daily_amplitude * (np.sin(day - np.pi / 2 + phase) + 0.3 * np.sin(2 * day + phase))
    trend = 1 + 0.02 * t / DAY_S
    clean = (level + daily) * weekly * trend
    return np.asarray(clean + rng.normal(0.0, noise, n_steps) * np.sqrt(clean / level))


def spike(values: FloatArray, start: int, length: int, height: float) -> Injection:
    values[start:start + length] += height
    return Injection("spike", start, length)


def level_shift(values: FloatArray, start: int, offset: float) -> Injection:
    values[start:] += offset
    return Injection("level shift", start, values.size - start)


def drop_to_zero(values: FloatArray, start: int, length: int) -> Injection:
    values[start:start + length] = 0.0
    return Injection("drop to zero", start, length)


def seasonal_break(
    values: FloatArray, start: int, length: int, step_s: float, daily_amplitude: float
) -> Injection:
    """The daily cycle flips: the series does the opposite of what the time of day says."""
    t = np.arange(start, start + length) * step_s
    day = 2 * np.pi * t / DAY_S
    cycle = daily_amplitude * np.sin(day - np.pi / 2)
    values[start:start + length] -= 2 * cycle
    return Injection("seasonal break", start, length)


def demo_dataset(
    end_ms: int, step_s: float = 300, days: float = 8, anomaly_window_days: float = 2,
    seed: int = 7,
) -> tuple[list[SyntheticSeries], int]:
    """The demo's series, ending at ``end_ms``; anomalies fall in the last
    ``anomaly_window_days``. Returns the series and the first timestamp in ms."""
    rng = np.random.default_rng(seed)
    n = int(days * DAY_S / step_s)
    step_ms = int(step_s * 1000)
    start_ms = end_ms - (n - 1) * step_ms
    first_anomaly = n - int(anomaly_window_days * DAY_S / step_s)

    def at_fraction(fraction: float) -> int:
        """A step inside the anomaly window, at a fraction of it."""
        return first_anomaly + int(fraction * (n - first_anomaly))

    series = []
    checkout = SyntheticSeries(
        {"__name__": "demo_http_requests_per_second", "service": "checkout", "env": "prod"},
        base_signal(n, step_s, 120, 60, 3.0, rng),
    )
    checkout.injections.append(spike(checkout.values, at_fraction(0.15), 2, 150))
    series.append(checkout)

    series.append(SyntheticSeries(
        {"__name__": "demo_http_requests_per_second", "service": "search", "env": "prod"},
        base_signal(n, step_s, 300, 120, 6.0, rng, phase=0.3),
    ))

    cpu = SyntheticSeries(
        {"__name__": "demo_cpu_utilization_ratio", "instance": "db-1", "env": "prod"},
        base_signal(n, step_s, 0.35, 0.12, 0.01, rng),
    )
    cpu.injections.append(level_shift(cpu.values, at_fraction(0.75), 0.25))
    series.append(cpu)

    connections = SyntheticSeries(
        {"__name__": "demo_active_connections", "instance": "lb-1", "env": "prod"},
        base_signal(n, step_s, 800, 300, 15.0, rng, phase=0.6),
    )
    connections.injections.append(drop_to_zero(connections.values, at_fraction(0.3), 12))
    series.append(connections)

    orders = SyntheticSeries(
        {"__name__": "demo_orders_per_minute", "region": "eu", "env": "prod"},
        base_signal(n, step_s, 50, 30, 1.5, rng),
    )
    # Start the break where the normal cycle peaks, so the flip is a clear departure.
    peak = _next_daily_peak(at_fraction(0.4), step_s)
    length = min(int(DAY_S / 4 / step_s), n - peak)
    orders.injections.append(seasonal_break(orders.values, peak, length, step_s, 30))
    series.append(orders)

    for one in series:
        np.maximum(one.values, 0.0, out=one.values)
    return series, start_ms


def _next_daily_peak(index: int, step_s: float) -> int:
    per_day = int(DAY_S / step_s)
    peak_offset = per_day // 2
    return index + (peak_offset - index % per_day) % per_day


def to_series(synthetic: list[SyntheticSeries], start_ms: int, step_s: float) -> list[Series]:
    out = []
    for one in synthetic:
        timestamps = start_ms + int(step_s * 1000) * np.arange(one.values.size, dtype=np.int64)
        out.append(Series(dict(one.labels), timestamps, one.values.astype(np.float64)))
    return out


# --- a fleet of hosts, for speed benchmarks ----------------------------------------------

FLEET_METRIC = "bench_node_cpu_utilisation"
FLEET_MODES = ("user", "system", "iowait", "irq", "softirq")
FLEET_CPUS = 8


def fleet_labels(index: int, metric: str = FLEET_METRIC) -> dict[str, str]:
    """The labels of series ``index`` of a fleet, shaped like node-exporter's CPU series:
    a host has FLEET_CPUS cpus and a series per cpu and mode."""
    host, rest = divmod(index, FLEET_CPUS * len(FLEET_MODES))
    cpu, mode = divmod(rest, len(FLEET_MODES))
    return {"__name__": metric, "job": "node", "instance": f"host-{host:05d}:9100",
            "datacenter": f"dc{host % 3}", "cpu": str(cpu), "mode": FLEET_MODES[mode]}


def fleet_series(first: int, count: int, start_ms: int, points: int, step_s: float,
                 seed: int = 0, metric: str = FLEET_METRIC) -> list[Series]:
    """Series ``first`` .. ``first + count - 1`` of a fleet: a daily cycle of its own
    phase and size, noise, and in about one series in a hundred a gap of up to an hour
    (a host that stopped reporting). The same arguments give the same values."""
    rng = np.random.default_rng([seed, first, count])
    t = np.arange(points) * step_s
    phase = rng.uniform(0, 2 * np.pi, (count, 1))
    level = rng.uniform(5, 60, (count, 1))
    amplitude = level * rng.uniform(0.1, 0.6, (count, 1))
    day = 2 * np.pi * t[None, :] / DAY_S + phase
    values = level + amplitude * (np.sin(day) + 0.3 * np.sin(2 * day))
    values += rng.normal(0.0, 1.0, (count, points)) * (0.02 + 0.05 * rng.random((count, 1))) \
        * level
    values = np.clip(values, 0.0, 100.0)
    gaps = np.flatnonzero(rng.random(count) < 0.01)
    for row in gaps.tolist():
        length = int(rng.integers(1, max(2, round(3600 / step_s))))
        start = int(rng.integers(0, max(1, points - length)))
        values[row, start:start + length] = np.nan
    timestamps = start_ms + round(step_s * 1000) * np.arange(points, dtype=np.int64)
    out = []
    for row in range(count):
        keep = np.isfinite(values[row])
        out.append(Series(fleet_labels(first + row, metric), timestamps[keep],
                          values[row][keep]))
    return out

"""In-memory fakes of the ports, for service-layer unit tests only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from openanomaly.adapters.scheduler.shard_store import decode as decode_shard
from openanomaly.adapters.scheduler.shard_store import encode as encode_shard
from openanomaly.domain.detection import StoredScoreStats
from openanomaly.domain.errors import DuplicateSamples
from openanomaly.domain.series import Series
from openanomaly.domain.shards import ShardData
from openanomaly.domain.slots import SlotStatus


class FakeTSDB:
    """Answers a query with the stored series whose __name__ equals the query text,
    evaluated like Prometheus' query_range: the latest sample at or before each step
    within a 5-minute lookback. Writes are kept, and a rewrite of a timestamp with a
    different value is refused as Prometheus does."""

    lookback_ms = 300_000

    def __init__(self, series: Sequence[Series] = ()) -> None:
        self.source = list(series)
        self.written: dict[tuple[tuple[str, str], ...], dict[int, float]] = {}
        self.write_calls = 0
        self.queries: list[tuple[str, int, int, int]] = []
        self.series_bounds: list[int | None] = []  # the max_series each read was given
        self.read_backs: list[tuple[str, str, str]] = []  # (method, metric, pipeline)

    def query_range(self, query: str, start_ms: int, end_ms: int, step_ms: int, *,
                    max_series: int | None = None) -> list[Series]:
        self.queries.append((query, start_ms, end_ms, step_ms))
        self.series_bounds.append(max_series)
        steps = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
        out = []
        for series in self.source:
            if series.name != query:
                continue
            index = np.searchsorted(series.timestamps_ms, steps, side="right") - 1
            valid = index >= 0
            valid[valid] &= steps[valid] - series.timestamps_ms[index[valid]] <= self.lookback_ms
            values = series.values[index[valid]]
            keep = ~np.isnan(values)
            if keep.any():
                out.append(Series(dict(series.labels), steps[valid][keep], values[keep]))
        return out

    def write(self, series: Sequence[Series]) -> None:
        self.write_calls += 1
        for one in series:
            stored = self.written.setdefault(tuple(sorted(one.labels.items())), {})
            for ts, value in zip(one.timestamps_ms.tolist(), one.values.tolist(), strict=True):
                old = stored.get(ts)
                if old is not None and not (old == value or (np.isnan(old) and np.isnan(value))):
                    raise DuplicateSamples(f"duplicate sample for timestamp {ts}")
        for one in series:
            stored = self.written[tuple(sorted(one.labels.items()))]
            stored.update(zip(one.timestamps_ms.tolist(), one.values.tolist(), strict=True))

    def _written_in(self, name: str, pipeline: str, after_ms: int,
                    until_ms: int) -> list[Series]:
        """Written samples of ``name{pipeline=...}`` with after < timestamp <= until."""
        out = []
        for key, samples in self.written.items():
            labels = dict(key)
            if labels["__name__"] != name or labels.get("pipeline") != pipeline:
                continue
            times = sorted(t for t in samples if after_ms < t <= until_ms)
            if times:
                out.append(Series(labels, np.array(times, dtype=np.int64),
                                  np.array([samples[t] for t in times])))
        return out

    def ping(self) -> None:
        return None

    def read_written(self, metric: str, pipeline: str, start_ms: int, end_ms: int,
                     step_ms: int, *, max_series: int | None = None) -> list[Series]:
        self.read_backs.append(("read_written", metric, pipeline))
        self.series_bounds.append(max_series)
        return self._written_in(metric, pipeline, start_ms - 1, end_ms)

    def peak_written(self, metric: str, pipeline: str, start_ms: int, end_ms: int,
                     step_ms: int) -> Series | None:
        """As max(max_over_time(...[step])) evaluated at each step of [start, end]."""
        found = self._written_in(metric, pipeline, start_ms - step_ms, end_ms)
        if not found:
            return None
        grid = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
        peaks = np.full(grid.size, np.nan)
        for one in found:
            for i, at in enumerate(grid):
                inside = one.values[(one.timestamps_ms > at - step_ms) & (one.timestamps_ms <= at)]
                if inside.size:
                    peaks[i] = np.fmax(peaks[i], inside.max())
        keep = ~np.isnan(peaks)
        return Series({}, grid[keep], peaks[keep])

    def score_stats(self, metric: str, pipeline: str, at_ms: int, quantile: float,
                    quantile_window_ms: int, peak_window_ms: int | None, *,
                    max_series: int | None = None, tail_levels: Sequence[float] = (),
                    recurring: tuple[int, int] | None = None,
                    recent_levels: Sequence[float] = (),
                    recent_below: int | None = None) -> list[StoredScoreStats]:
        """As Prometheus' quantile_over_time and max_over_time compute them: over the
        samples in (at - window, at]."""
        self.read_backs.append(("score_stats", metric, pipeline))
        self.series_bounds.append(max_series)
        def over(window_ms: int | None, end_ms: int = at_ms,
                 ) -> dict[tuple[tuple[str, str], ...], np.ndarray]:
            if window_ms is None:
                return {}
            found = self._written_in(metric, pipeline, end_ms - window_ms, end_ms)
            return {tuple(sorted((k, v) for k, v in one.labels.items() if k != "__name__")):
                    one.values[~np.isnan(one.values)] for one in found}

        quantiles, peaks = over(quantile_window_ms), over(peak_window_ms)
        again = {} if recurring is None else over(recurring[1], recurring[0])
        out = []
        for key in quantiles.keys() | peaks.keys() | again.keys():
            q, p = quantiles.get(key, np.empty(0)), peaks.get(key, np.empty(0))
            r = again.get(key, np.empty(0))
            if q.size or p.size or r.size:
                tail = (tuple(float(v) for v in np.quantile(q, tail_levels))
                        if q.size and tail_levels else (np.nan,) * len(tail_levels))
                few = p.size and (recent_below is None or p.size < recent_below)
                recent = (tuple(float(v) for v in np.quantile(p, recent_levels))
                          if few and recent_levels else (np.nan,) * len(recent_levels))
                out.append(StoredScoreStats(
                    dict(key), float(np.quantile(q, quantile)) if q.size else np.nan,
                    float(np.max(p)) if p.size else np.nan, tail, float(q.size),
                    float(np.max(r)) if r.size else np.nan,
                    recent, float(p.size) if recent_levels and few else np.nan))
        return out

    def series_named(self, name: str) -> dict[tuple[tuple[str, str], ...], dict[int, float]]:
        return {k: v for k, v in self.written.items() if dict(k)["__name__"] == name}


class FakeLedger:
    """The SlotLedger port in memory, with claim expiry on a clock the test controls."""

    def __init__(self) -> None:
        self.now_ms = 0
        self.claims: dict[tuple[str, int], tuple[str, int]] = {}  # -> (worker, expires)
        self.done_slots: dict[str, set[int]] = {}
        self.last: dict[str, int] = {}
        self.errors: dict[str, dict[str, str]] = {}
        self.skips: dict[str, int] = {}

    def claim(self, pipeline: str, slot_ms: int, worker: str, ttl_ms: int) -> bool:
        if self.claimed_by(pipeline, slot_ms) is not None:
            return False
        self.claims[pipeline, slot_ms] = (worker, self.now_ms + ttl_ms)
        return True

    def claimed_by(self, pipeline: str, slot_ms: int) -> str | None:
        held = self.claims.get((pipeline, slot_ms))
        return held[0] if held is not None and held[1] > self.now_ms else None

    def release(self, pipeline: str, slot_ms: int, worker: str) -> bool:
        if self.claimed_by(pipeline, slot_ms) != worker:
            return False
        del self.claims[pipeline, slot_ms]
        return True

    def done(self, pipeline: str, slot_ms: int) -> bool:
        return slot_ms in self.done_slots.get(pipeline, set())

    def complete(self, pipeline: str, slot_ms: int, worker: str = "") -> int:
        self.done_slots.setdefault(pipeline, set()).add(slot_ms)
        self.last[pipeline] = max(self.last.get(pipeline, slot_ms), slot_ms)
        self.errors.pop(pipeline, None)
        self.release(pipeline, slot_ms, worker)
        return self.last[pipeline]

    def last_completed(self, pipeline: str) -> int | None:
        return self.last.get(pipeline)

    def record_error(self, pipeline: str, slot_ms: int, error: BaseException) -> None:
        self.errors[pipeline] = {"slot": str(slot_ms), "kind": type(error).__name__,
                                 "error": str(error)}

    def last_error(self, pipeline: str) -> dict[str, str] | None:
        return self.errors.get(pipeline)

    def record_skipped(self, pipeline: str, count: int) -> None:
        self.skips[pipeline] = self.skips.get(pipeline, 0) + count

    def skipped(self, pipeline: str) -> int:
        return self.skips.get(pipeline, 0)

    def status(self, pipeline: str) -> SlotStatus:
        running = {slot: self.claimed_by(name, slot) for name, slot in self.claims
                   if name == pipeline and self.claimed_by(name, slot) is not None}
        return SlotStatus(pipeline, self.last_completed(pipeline),
                          len(self.done_slots.get(pipeline, ())), self.last_error(pipeline),
                          self.skipped(pipeline), running)


class FakeShardStore:
    """The ShardStore port in memory; shard data goes through the Redis adapter's codec,
    so what a shard task gets back is what Redis would give it."""

    def __init__(self) -> None:
        self.plans: dict[tuple[str, int], int] = {}
        self.data: dict[tuple[str, int, int], bytes] = {}
        self.results: dict[tuple[str, int], dict[int, dict[str, Any]]] = {}

    def plan(self, pipeline: str, slot_ms: int, count: int) -> int:
        return self.plans.setdefault((pipeline, slot_ms), count)

    def put(self, pipeline: str, slot_ms: int, index: int, data: ShardData) -> None:
        self.data[pipeline, slot_ms, index] = encode_shard(data)

    def get(self, pipeline: str, slot_ms: int, index: int) -> ShardData | None:
        raw = self.data.get((pipeline, slot_ms, index))
        return None if raw is None else decode_shard(raw)

    def finish(self, pipeline: str, slot_ms: int, index: int,
               summary: dict[str, Any]) -> None:
        self.results.setdefault((pipeline, slot_ms), {})[index] = summary
        self.data.pop((pipeline, slot_ms, index), None)

    def summaries(self, pipeline: str, slot_ms: int) -> dict[int, dict[str, Any]]:
        return dict(self.results.get((pipeline, slot_ms), {}))

"""In-memory fakes of the ports, for service-layer unit tests only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from openanomaly.domain.errors import DuplicateSamples
from openanomaly.domain.series import Series


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

    def query_range(self, query: str, start_ms: int, end_ms: int, step_ms: int) -> list[Series]:
        self.queries.append((query, start_ms, end_ms, step_ms))
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

    def series_named(self, name: str) -> dict[tuple[tuple[str, str], ...], dict[int, float]]:
        return {k: v for k, v in self.written.items() if dict(k)["__name__"] == name}

"""In-memory fakes of the ports, for service-layer unit tests only."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from openanomaly.domain.errors import DuplicateSamples
from openanomaly.domain.series import Series

_OVER_TIME = re.compile(
    r'^(?P<function>quantile_over_time|max_over_time)\((?:(?P<quantile>[0-9.]+), )?'
    r'(?P<name>\w+)\{pipeline="(?P<pipeline>[^"]+)"\}\[(?P<seconds>\d+)s\]\)$')
_SELECTOR = re.compile(r'^(?P<name>\w+)\{pipeline="(?P<pipeline>[^"]+)"\}$')


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
        over_time = _OVER_TIME.match(query)
        if over_time:
            return self._over_time(over_time, end_ms)
        selector = _SELECTOR.match(query)
        if selector:
            return self._written_in(selector["name"], selector["pipeline"], start_ms - 1, end_ms)
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

    def _over_time(self, match: re.Match[str], at_ms: int) -> list[Series]:
        """quantile_over_time / max_over_time of written samples, as Prometheus computes
        them: over the samples in (at - range, at], the series' name dropped."""
        found = self._written_in(match["name"], match["pipeline"],
                                 at_ms - int(match["seconds"]) * 1000, at_ms)
        out = []
        for series in found:
            values = series.values[~np.isnan(series.values)]
            if not values.size:
                continue
            value = (np.max(values) if match["function"] == "max_over_time"
                     else np.quantile(values, float(match["quantile"])))
            labels = {k: v for k, v in series.labels.items() if k != "__name__"}
            out.append(Series(labels, np.array([at_ms], dtype=np.int64), np.array([value])))
        return out

    def series_named(self, name: str) -> dict[tuple[tuple[str, str], ...], dict[int, float]]:
        return {k: v for k, v in self.written.items() if dict(k)["__name__"] == name}

"""Each pipeline's context kept between its runs, so that a run reads only what is new.

A run every 5 minutes over a day of context reads the same 1,440 points per series 288
times a day; the database spends most of a run producing them. With the cache a run asks
only for the steps since the previous run plus an overlap, and takes the older steps
from the previous run's batch.

The result is what a full read returns, provided no sample older than the overlap was
added or changed since the previous run: the overlap covers the pipeline's delay plus
margin, and a PromQL step depends only on samples at or before it, so a late sample
inside the overlap changes only steps that are read again. Any doubt (a series the
cache has not seen, another grid, a run for an earlier slot, more series than the
pipeline's max_series) means a full read.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.series import SeriesBatch, grid
from openanomaly.domain.stages import part
from openanomaly.ports import ContextStore, TSDBClient

log = logging.getLogger(__name__)

# Steps read again at every run on top of the pipeline's delay: samples that arrive this
# late still count.
OVERLAP_S = 600.0
DEFAULT_MAX_BYTES = 4 * 2**30

FullRead = Callable[[PipelineSpec, TSDBClient, int, int], SeriesBatch]
"""A full read of a pipeline's query over [start, end] (``runs.fetch``)."""


@dataclass(frozen=True)
class _Entry:
    query: str
    step_ms: int
    batch: SeriesBatch

    @property
    def nbytes(self) -> int:
        return int(self.batch.values.nbytes + self.batch.timestamps_ms.nbytes)


class ContextCache:
    """The latest batch of each pipeline, in this process, within ``max_bytes`` (the
    pipelines used longest ago are dropped first). With ``shared`` (Celery workers), each
    batch is also stored there, and a process whose own batch is older than the shared
    one (another worker ran the pipeline since) takes the shared one."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES,
                 shared: ContextStore | None = None) -> None:
        self.max_bytes = max_bytes
        self.shared = shared
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, spec: PipelineSpec) -> SeriesBatch | None:
        with self._lock:
            entry = self._entries.get(spec.name)
            if entry is not None and (entry.query != spec.query
                                      or entry.step_ms != spec.step_ms):
                entry = None
            if entry is not None:
                self._entries.move_to_end(spec.name)
        own = None if entry is None else entry.batch
        if self.shared is None:
            return own
        own_end = int(own.timestamps_ms[-1]) if own is not None and own.timestamps_ms.size \
            else None
        try:
            newest = self.shared.latest(spec.name)
            if newest is None or (own_end is not None and own_end >= newest):
                return own
            stored = self.shared.get(spec.name, spec.query, spec.step_ms)
        except Exception as exc:  # the store is only a shortcut: read without it
            log.warning("shared context store failed; using this process' own",
                        extra={"pipeline": spec.name, "error": str(exc)})
            return own
        return stored if stored is not None else own

    def put(self, spec: PipelineSpec, batch: SeriesBatch) -> None:
        if self.shared is not None:
            try:
                self.shared.put(spec.name, spec.query, spec.step_ms, batch)
            except Exception as exc:
                log.warning("could not share the context; other workers read it in full",
                            extra={"pipeline": spec.name, "error": str(exc)})
        self._keep(spec, batch)

    def _keep(self, spec: PipelineSpec, batch: SeriesBatch) -> None:
        entry = _Entry(spec.query, spec.step_ms, batch)
        with self._lock:
            self._entries.pop(spec.name, None)
            if entry.nbytes > self.max_bytes:
                return
            self._entries[spec.name] = entry
            while sum(e.nbytes for e in self._entries.values()) > self.max_bytes:
                self._entries.popitem(last=False)

    def count(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1


def overlap_ms(spec: PipelineSpec) -> int:
    """How far back a run reads again: the delay plus OVERLAP_S, in whole steps."""
    steps = -(-round(((spec.delay or 0.0) + OVERLAP_S) * 1000) // spec.step_ms)
    return int(steps * spec.step_ms)


def extend(cached: SeriesBatch, recent: SeriesBatch, start_ms: int, end_ms: int,
           step_ms: int) -> SeriesBatch | None:
    """The batch on the grid [start, end]: ``cached``'s values before ``recent`` begins,
    then ``recent``'s. None where that is not what a full read would give: a series in
    ``recent`` that ``cached`` lacks, or grids that do not meet."""
    if cached.timestamps_ms.size == 0 or recent.timestamps_ms.size == 0:
        return None
    old_start, old_end = int(cached.timestamps_ms[0]), int(cached.timestamps_ms[-1])
    recent_start = int(recent.timestamps_ms[0])
    if (start_ms - old_start) % step_ms or (recent_start - start_ms) % step_ms:
        return None
    if not old_start <= start_ms <= recent_start <= old_end + step_ms:
        return None
    index = {frozenset(labels.items()): row for row, labels in enumerate(cached.labels)}
    rows = [index.get(frozenset(labels.items())) for labels in recent.labels]
    if any(row is None for row in rows):
        return None  # a new series: its history has to be read
    timestamps = grid(start_ms, end_ms, step_ms)
    values = np.full((len(cached.labels), timestamps.size), np.nan)
    kept = (recent_start - start_ms) // step_ms
    first = (start_ms - old_start) // step_ms
    values[:, :kept] = cached.values[:, first:first + kept]
    values[np.asarray(rows, dtype=np.int64), kept:] = recent.values
    # As a full read: only series with a value somewhere in the range.
    present = np.isfinite(values).any(axis=1)
    if present.all():
        return SeriesBatch(cached.labels, timestamps, values)
    keep = np.flatnonzero(present)
    return SeriesBatch([cached.labels[i] for i in keep], timestamps, values[keep])


def read_recent(spec: PipelineSpec, tsdb: TSDBClient, start_ms: int, end_ms: int,
                cache: ContextCache, full_read: FullRead) -> SeriesBatch:
    """The batch ``full_read(spec, tsdb, start, end)`` returns, reading only the steps
    since the cached batch's end (less the overlap) where the cache allows."""
    cached = cache.get(spec)
    if cached is not None and cached.timestamps_ms.size:
        recent_start = max(start_ms, int(cached.timestamps_ms[-1]) - overlap_ms(spec))
        if recent_start > start_ms and int(cached.timestamps_ms[-1]) <= end_ms:
            recent = full_read(spec, tsdb, recent_start, end_ms)
            with part("cache"):
                merged = extend(cached, recent, start_ms, end_ms, spec.step_ms)
            # More series than the pipeline allows (some only in the older steps): the
            # full read refuses them, with its message.
            if merged is not None and merged.n_series <= spec.max_series:
                cache.count(hit=True)
                cache.put(spec, merged)
                return merged
    cache.count(hit=False)
    batch = full_read(spec, tsdb, start_ms, end_ms)
    cache.put(spec, batch)
    return batch


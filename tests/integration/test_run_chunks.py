"""A run over many series goes through the model and out to the database in chunks: the
same figures and scores as in one piece, and working memory that grows with the chunk,
not with the number of series (the context kept between runs aside)."""

import time
import tracemalloc

import numpy as np
import pytest

from openanomaly.bootstrap import benchmark_engine
from openanomaly.config import default_models
from openanomaly.services import e2e_bench, runs
from openanomaly.services.context_cache import ContextCache

ENGINE = benchmark_engine(default_models())


def last_slot():
    return (int(time.time() * 1000) - 3_600_000) // 300_000 * 300_000


def test_a_chunked_run_writes_what_a_run_in_one_piece_writes(prom_client, unique,
                                                             monkeypatch):
    metric, last = unique("fleet"), last_slot()
    e2e_bench.load_fleet(prom_client, 50, last, 400, 60.0, metric=metric)
    results = {}
    for name, chunk in (("whole", 1000), ("chunked", 7)):
        monkeypatch.setattr(runs, "CHUNK_SERIES", chunk)
        spec = e2e_bench.bench_pipeline(50, "seasonal_naive", 60.0, 6 * 3600.0,
                                        metric).model_copy(update={"name": name})
        results[name] = runs.run_pipeline(spec, last, prom_client, ENGINE)
    whole, chunked = results["whole"], results["chunked"]
    for field in ("series", "skipped", "stale", "scored_points", "anomalous_points",
                  "samples_written", "status"):
        assert getattr(chunked, field) == getattr(whole, field), field
    scores = {name: {frozenset((k, v) for k, v in one.labels.items() if k != "pipeline"):
                     one.values for one in prom_client.read_written(
                         "openanomaly_anomaly_score", name, last - 240_000, last, 60_000)}
              for name in results}
    assert len(scores["whole"]) >= 49 and scores["whole"].keys() == scores["chunked"].keys()
    for key, values in scores["whole"].items():
        np.testing.assert_array_equal(scores["chunked"][key], values)


def warm_peak(client, spec, last):
    """Peak memory allocated during the third run of ``spec`` (the context cache warm)."""
    cache = ContextCache()
    slots = e2e_bench.slots(last, 3)
    for at in slots[:2]:
        runs.run_pipeline(spec, at, client, ENGINE, contexts=cache)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        runs.run_pipeline(spec, slots[2], client, ENGINE, contexts=cache)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_working_memory_grows_with_the_chunk_not_with_the_series(prom_client, unique,
                                                                  monkeypatch):
    last = last_slot()
    peaks = {}
    for n in (300, 1200):
        metric = unique(f"mem{n}")
        spec = e2e_bench.bench_pipeline(n, "seasonal_naive", 60.0, 86400.0, metric)
        e2e_bench.load_fleet(prom_client, n, last, e2e_bench.fleet_points(spec, 3), 60.0,
                             metric=metric)
        for chunk in (100, n):
            monkeypatch.setattr(runs, "CHUNK_SERIES", chunk)
            named = spec.model_copy(update={"name": f"mem{n}-{chunk}"})
            peaks[n, chunk] = warm_peak(prom_client, named, last)
    context_bytes = (e2e_bench.fleet_points(spec, 3)) * 8  # one series' context, float64
    # Beyond the context each series keeps between runs (and its copy while the new
    # steps are merged in), a series costs next to nothing when chunks are small...
    per_series = (peaks[1200, 100] - peaks[300, 100]) / 900
    assert per_series < 2.5 * context_bytes, (per_series, context_bytes)
    # ...while a run in one piece holds the working arrays of every series at once.
    assert peaks[1200, 1200] - peaks[1200, 100] > 1100 * context_bytes, peaks

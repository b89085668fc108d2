"""The end-to-end benchmark's runs on a real Prometheus: every series scored at every
slot, and the stages and parts of each run timed."""

import time

from openanomaly.bootstrap import benchmark_engine
from openanomaly.config import default_models
from openanomaly.services import e2e_bench
from openanomaly.services.context_cache import ContextCache

SERIES = 45


def test_every_run_scores_the_whole_fleet_and_times_its_parts(prom_client):
    spec = e2e_bench.bench_pipeline(SERIES, "seasonal_naive", 60.0, 6 * 3600.0)
    last = (int(time.time() * 1000) - 3_600_000) // 300_000 * 300_000
    points = e2e_bench.fleet_points(spec, 2)
    done = []
    samples = e2e_bench.load_fleet(prom_client, SERIES, last, points, 60.0, done.append)
    assert done == [SERIES]
    assert SERIES * (points - 60) <= samples <= SERIES * points

    contexts = ContextCache()
    runs = e2e_bench.run_cycles(spec, prom_client, benchmark_engine(default_models()),
                                e2e_bench.slots(last, 2), contexts=contexts)
    assert (contexts.hits, contexts.misses) == (1, 1)  # the second run read what was new
    assert [one.at_ms for one in runs] == [last - 300_000, last]
    for one in runs:
        assert one.result.series == SERIES
        assert one.result.status in ("ok", "partial")
        assert one.result.samples_written > 0
        assert {"query.http", "query.decode", "query.align", "write.encode",
                "write.http"} <= set(one.result.part_seconds)
        assert one.inference > 0 and one.overhead_ratio > 0
        # The breakdown accounts for the whole run, to the rounding of its duration.
        assert abs(sum(s for _, s in one.breakdown()) - one.seconds) < 0.005
    # The second run had the first one's raw scores to read back for its calibration.
    written = prom_client.read_written("openanomaly_raw_score", e2e_bench.PIPELINE,
                                       last - 600_000, last - 300_000, 60_000,
                                       max_series=SERIES)
    assert len(written) >= SERIES - 1  # a series in a gap may have no actual to score
    assert "history.http" in runs[1].result.part_seconds

"""A slot is written once and the first write stands: re-running it (a retry, a
redelivery, `run-once` of a past or off-grid time) changes nothing stored, on Prometheus
with and without an out-of-order window. What each run reports is pinned here too."""

from __future__ import annotations

import time

import numpy as np
import pytest

from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.settings import SeasonalNaiveSettings
from openanomaly.adapters.tsdb.local_prometheus import LocalPrometheus
from openanomaly.adapters.tsdb.prometheus import PrometheusAdapter
from openanomaly.adapters.tsdb.settings import PrometheusSettings
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.series import Series
from openanomaly.services.runs import run_pipeline

ENGINE = LocalModelEngine({"naive": SeasonalNaiveSettings(season="30m")})
FIVE_MIN = 300_000


def spec(**scoring):
    return PipelineSpec(name="rerun", query="rerun_source", model="naive", step="1m",
                        context="1h", horizon="10m", schedule="5m", scoring=scoring)


@pytest.mark.parametrize(("window", "identical_rerun"), [
    ("0s", "already_written"),  # refused as out of order: the stored slot is found
    ("30d", "ok"),  # identical samples are accepted again: nothing changes
])
def test_a_rerun_keeps_the_first_write(tmp_path, window, identical_rerun):
    with LocalPrometheus(tmp_path / "prometheus", out_of_order_time_window=window) as server:
        client = PrometheusAdapter(PrometheusSettings(url=server.url, max_retries=0))
        now = int(time.time() * 1000)
        slot = now - now % FIVE_MIN - FIVE_MIN
        stamps = np.arange(slot - 3 * 3_600_000, slot + 1, 60_000, dtype=np.int64)
        values = 50 + 5 * np.sin(np.arange(stamps.size) / 5.0)
        client.write([Series.of({"__name__": "rerun_source"}, stamps, values)])

        def stored():
            (scores,) = client.query_range('openanomaly_anomaly_score{pipeline="rerun"}',
                                           slot - 4 * 60_000, slot + 3 * 60_000, 60_000)
            return dict(zip(scores.timestamps_ms.tolist(), scores.values.tolist(),
                            strict=True))

        first = run_pipeline(spec(), slot, client, ENGINE)
        assert first.status == "ok" and first.samples_written > 0
        written = stored()
        assert all(t in written for t in range(slot - 4 * 60_000, slot + 1, 60_000)), "window"

        again = run_pipeline(spec(), slot, client, ENGINE)
        assert again.status == identical_rerun
        # Different outputs for the same slot (as after late data): kept as first written.
        changed = run_pipeline(spec(band_scale=3.0), slot, client, ENGINE)
        assert changed.status == "already_written"
        # An off-grid time runs its scheduled slot, never timestamps between two slots.
        off_grid = run_pipeline(spec(), slot + 2 * 60_000 + 17_000, client, ENGINE)
        assert off_grid.at_ms == slot and off_grid.status == identical_rerun
        assert stored() == written

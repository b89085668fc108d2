"""The embedded service loses no slot: not while Prometheus restarts, not when the service
itself is killed with SIGKILL and started again. Every slot's score is written."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import numpy as np
import pytest

from openanomaly.adapters.scheduler.sqlite_ledger import SqliteSlotLedger
from openanomaly.adapters.tsdb.local_prometheus import LocalPrometheus
from openanomaly.adapters.tsdb.prometheus import PrometheusAdapter
from openanomaly.adapters.tsdb.settings import PrometheusSettings
from openanomaly.domain.errors import TSDBError
from openanomaly.domain.series import Series
from tests.e2e.test_cli import CLI, valid_config, write_config

STEP_MS = 5000
METRIC = "e2e_catch_up"


class SourceWriter(threading.Thread):
    """Writes the source metric on its 5 s grid up to now, as an exporter would be scraped;
    samples that could not be written (Prometheus down) are sent once it is back."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = PrometheusAdapter(PrometheusSettings(url=url, max_retries=0, timeout=2))
        now = int(time.time() * 1000)
        self.next_ms = now - now % STEP_MS - 15 * 60_000
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(1.0):
            now = int(time.time() * 1000)
            stamps = np.arange(self.next_ms, now - now % STEP_MS + 1, STEP_MS, dtype=np.int64)
            if stamps.size == 0:
                continue
            values = 10 + np.sin(stamps / 60_000)
            try:
                self.client.write([Series.of({"__name__": METRIC, "job": "e2e"}, stamps, values)])
                self.next_ms = int(stamps[-1]) + STEP_MS
            except TSDBError:
                pass  # down: the same samples go with the next attempt


def start_service(config, log):
    return subprocess.Popen([*CLI, "--config", str(config), "run"], stdout=log,
                            stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_no_slot_is_lost_to_a_prometheus_restart_or_a_killed_service(tmp_path):
    ledger_path = tmp_path / "slots.db"
    with LocalPrometheus(tmp_path / "prometheus") as prometheus:
        writer = SourceWriter(prometheus.url)
        writer.start()
        time.sleep(2)
        config = write_config(tmp_path, valid_config(prometheus.url, METRIC)
                              + f"scheduler:\n  ledger_path: {ledger_path}\n"
                              + "  retry_window: 30\n")
        log = (tmp_path / "service.log").open("w")
        service = start_service(config, log)
        try:
            time.sleep(15)
            outage_ms = int(time.time() * 1000)
            prometheus.kill()  # the database goes away for a while...
            time.sleep(8)
            prometheus.start()  # ...and comes back on its data and port
            time.sleep(10)
            service.send_signal(signal.SIGKILL)  # the service dies mid-work
            service.wait()
            time.sleep(12)
            service = start_service(config, log)  # and is started again
            restart_ms = int(time.time() * 1000)
            ledger = SqliteSlotLedger(ledger_path)
            deadline = time.monotonic() + 60
            while (ledger.last_completed("quick") or 0) < restart_ms:
                assert time.monotonic() < deadline, (tmp_path / "service.log").read_text()
                time.sleep(1)
        finally:
            service.terminate()
            service.wait(30)
            writer.halt.set()
            log.close()
        done = sorted(int(slot) for (slot,) in ledger.file.connection().execute(
            "SELECT slot FROM done WHERE pipeline = 'quick'"))
        last = ledger.last_completed("quick")
        expected = list(range(done[0], last + 1, STEP_MS))
        assert done == expected, "every slot from the first to the last completed ran"
        reader = PrometheusAdapter(PrometheusSettings(url=prometheus.url))
        (scores,) = reader.query_range(
            f'openanomaly_anomaly_score{{source_metric="{METRIC}"}}', done[0], last, STEP_MS)
        written = set(scores.timestamps_ms[np.isfinite(scores.values)].tolist())
        missing = sorted(set(expected) - written)
        assert not missing, f"slots without a score: {missing}"
        text = (tmp_path / "service.log").read_text()
        assert "catching up missed slots" in text, text
        assert done[0] < outage_ms and last >= restart_ms, "both outages lie inside"

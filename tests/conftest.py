"""Fixtures shared by every test folder: a real Prometheus and clients of it."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from openanomaly.adapters.tsdb.local_prometheus import LocalPrometheus, find_prometheus
from openanomaly.adapters.tsdb.prometheus import PrometheusAdapter
from openanomaly.adapters.tsdb.settings import PrometheusSettings
from openanomaly.domain.errors import TSDBUnavailable


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    """One real Prometheus for the whole session; tests keep apart by metric names."""
    try:
        binary = find_prometheus()
    except TSDBUnavailable as exc:
        # CI must run these tests, so a missing binary there is a failure, not a skip.
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    with LocalPrometheus(tmp_path_factory.mktemp("prometheus"), binary=binary) as server:
        yield server


@pytest.fixture
def prom_client(prometheus: LocalPrometheus) -> Iterator[PrometheusAdapter]:
    settings = PrometheusSettings(url=prometheus.url, max_retries=2, retry_backoff=0.05)
    with PrometheusAdapter(settings) as client:
        yield client


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique("cpu")`` gives a metric name that no other test (or rerun) uses."""
    test = re.sub(r"[^a-zA-Z0-9_]", "_", request.node.name)[:60]
    token = uuid.uuid4().hex[:6]
    return lambda base: f"{base}_{test}_{token}"


@pytest.fixture(autouse=True)
def own_slot_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's `openanomaly run` keeps its completed slots in its own folder, not in
    the working directory shared by every test."""
    monkeypatch.setenv("OPENANOMALY__SCHEDULER__LEDGER_PATH", str(tmp_path / "slots.db"))


@pytest.fixture(autouse=True)
def any_metrics_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each `openanomaly run` a test starts serves its metrics on a free port, so that
    several can run side by side."""
    monkeypatch.setenv("OPENANOMALY__METRICS__PORT", "0")

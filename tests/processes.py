"""Real `openanomaly worker` and `openanomaly beat` processes for end-to-end tests and the
distributed benchmarks: start them, read their JSON logs, kill them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis

CLI = [sys.executable, "-m", "openanomaly.entrypoints.cli"]
LOCK_KEY = "redbeat::lock"
REPO = Path(__file__).resolve().parents[1]


class Proc:
    def __init__(self, name: str, config: Path, args: list[str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [*CLI, "--config", str(config), *args], stdout=self._log,
            stderr=subprocess.STDOUT, env={**os.environ}, cwd=REPO)

    @property
    def pid(self) -> int:
        return self.process.pid

    def events(self, msg: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines of the process, optionally only those with this message."""
        found = []
        for line in self.log_path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (msg is None or event.get("msg") == msg):
                found.append(event)
        return found

    def kill(self) -> None:
        """kill -9 the process and its children (a worker's pool), as a crash would."""
        children = subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True,
                                  text=True).stdout.split()
        for pid in [self.pid, *map(int, children)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()

    def terminate(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.kill()
            self._log.close()


def worker(config: Path, workdir: Path, name: str = "worker", concurrency: int = 1) -> Proc:
    return Proc(name, config, ["worker", "--concurrency", str(concurrency)], workdir)


def beat(config: Path, workdir: Path, name: str = "beat") -> Proc:
    return Proc(name, config, ["beat"], workdir)


def lock_holder_pid(client: redis.Redis) -> int | None:
    """The pid in the beat leader lock's value (``host:pid:nonce``), if it is held."""
    value = client.get(LOCK_KEY)
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    return int(text.split(":")[1])


def wait_for(predicate: Any, timeout: float, what: str, poll: float = 0.1) -> float:
    """Seconds until ``predicate()`` held; AssertionError naming ``what`` on timeout."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)
    return time.monotonic() - started


def failover_config(prometheus_url: str, redis_url: str, tag: str, lock_timeout: float,
                    step_s: int = 5) -> str:
    """One pipeline on a query that always has data, so every slot writes a score."""
    query = f'label_replace(vector(1), "failover", "{tag}", "", "")'
    return (
        f"prometheus:\n  url: {prometheus_url}\n"
        f"pipelines:\n  - name: clock\n    query: '{query}'\n    model: seasonal_naive\n"
        f"    step: {step_s}s\n    context: 2m\n    horizon: 1m\n    schedule: {step_s}s\n"
        f"redis:\n  url: {redis_url}\n"
        f"scheduler:\n  lock_timeout: {lock_timeout}\n  reconcile_interval: 5\n"
        "logging:\n  format: json\n  level: INFO\n"
    )


@dataclass
class FailoverResult:
    gap_s: float
    """kill -9 of the leader to the standby holding the lock."""
    first_slot_ms: int
    last_slot_ms: int
    runs: dict[int, int] = field(default_factory=dict)
    """Slot (ms) -> how many times a worker ran it to the end."""

    @property
    def missed(self) -> list[int]:
        return [s for s in self.expected if self.runs.get(s, 0) == 0]

    @property
    def duplicated(self) -> list[int]:
        return [s for s, n in self.runs.items() if n > 1]

    @property
    def expected(self) -> list[int]:
        return list(range(self.first_slot_ms, self.last_slot_ms + 1, 5000))


def failover_once(workdir: Path, prometheus_url: str, redis_url: str, tag: str,
                  lock_timeout: float) -> FailoverResult:
    """Two beats and a worker; kill -9 the leader; run on until two slots after the
    standby took over; count how often each slot ran."""
    from openanomaly.adapters.scheduler.slot_ledger import RedisSlotLedger

    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yaml"
    config.write_text(failover_config(prometheus_url, redis_url, tag, lock_timeout))
    client = redis.Redis.from_url(redis_url)
    ledger = RedisSlotLedger(client)
    procs = [worker(config, workdir), beat(config, workdir, "beat-a")]
    try:
        first_beat = procs[1]
        wait_for(lambda: lock_holder_pid(client) == first_beat.pid, 60, "beat-a to lead")
        second_beat = beat(config, workdir, "beat-b")
        procs.append(second_beat)
        wait_for(lambda: bool(second_beat.events()), 60, "beat-b to start")
        wait_for(lambda: ledger.last_completed("clock") is not None, 60, "a first slot")
        first = ledger.last_completed("clock")
        assert first is not None
        wait_for(lambda: (ledger.last_completed("clock") or 0) >= first + 5000, 30,
                 "a second slot under beat-a")
        first_beat.kill()
        gap = wait_for(lambda: lock_holder_pid(client) == second_beat.pid,
                       lock_timeout + 30, "beat-b to take over")
        taken_over_ms = int(time.time() * 1000)
        target = taken_over_ms - taken_over_ms % 5000 + 10_000
        wait_for(lambda: (ledger.last_completed("clock") or 0) >= target, 60,
                 "two slots after the takeover")
        # Runs of slots already queued may still finish; let them.
        time.sleep(2)
    finally:
        for proc in procs:
            if proc.process.poll() is None:
                proc.terminate()
        client.close()
    runs: dict[int, int] = {}
    for event in procs[0].events("run finished"):
        if event.get("pipeline") == "clock":
            runs[int(event["at"])] = runs.get(int(event["at"]), 0) + 1
    return FailoverResult(gap, first, target, runs)


def stored_samples(prometheus_url: str, selector: str, start_ms: int, end_ms: int,
                   ) -> dict[frozenset[tuple[str, str]], tuple[np.ndarray, np.ndarray]]:
    """Every sample stored for ``selector`` in [start, end], per series: a range selector
    returns each stored sample once, where query_range would fill gaps with the latest
    earlier sample."""
    import httpx

    window_s = (end_ms - start_ms) // 1000 + 1
    response = httpx.get(f"{prometheus_url}/api/v1/query",
                         params={"query": f"{selector}[{window_s}s]", "time": end_ms / 1000},
                         timeout=30)
    response.raise_for_status()
    out = {}
    for item in response.json()["data"]["result"]:
        pairs = item["values"]
        out[frozenset(item["metric"].items())] = (
            np.array([round(float(t) * 1000) for t, _ in pairs], dtype=np.int64),
            np.array([float(v) for _, v in pairs]))
    return out


def raw_sample_times(prometheus_url: str, selector: str, start_ms: int, end_ms: int) -> list[int]:
    """Timestamps (ms) of the samples stored for ``selector`` in [start, end]."""
    found = stored_samples(prometheus_url, selector, start_ms, end_ms)
    return sorted(int(t) for times, _ in found.values() for t in times)

"""The Prometheus the demo and the tests start never outlives the process that started
it, even when that process is killed (a test that times out, a demo killed with -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

STARTER = """
from openanomaly.adapters.tsdb.local_prometheus import LocalPrometheus
import time
server = LocalPrometheus().start()
print(server.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses PR_SET_PDEATHSIG")
def test_a_killed_starter_takes_its_prometheus_with_it(prometheus):  # binary is there
    starter = subprocess.Popen([sys.executable, "-c", STARTER], stdout=subprocess.PIPE,
                               text=True)
    server_pid = int(starter.stdout.readline())
    os.kill(starter.pid, signal.SIGKILL)
    starter.wait()
    deadline = time.monotonic() + 15
    while True:
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, f"Prometheus {server_pid} outlived its starter"
        time.sleep(0.2)

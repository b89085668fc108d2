"""``openanomaly serve-model`` as a real process, and the remote engine as its client."""

import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.remote_engine import RemoteModelEngine
from openanomaly.adapters.models.settings import RemoteSettings, default_models
from openanomaly.domain.errors import ModelError, UnknownModel
from openanomaly.domain.forecast import ForecastRequest

CLI = [sys.executable, "-m", "openanomaly.entrypoints.cli"]
TOKEN = "e2e-token"
QUANTILES = (0.1, 0.5, 0.9)
LISTENING = re.compile(r'msg="model server listening" url=(https?://\S+)')


class ServerProcess:
    """A ``serve-model`` process on a free port; its log goes to a file, never a full pipe.

    ``args`` go to serve-model; ``verify`` is how this side checks a TLS server.
    """

    def __init__(self, tmp: Path, preload: list[str], args: tuple[str, ...] = (),
                 token: str | None = TOKEN, verify: ssl.SSLContext | bool = True) -> None:
        config = tmp / "config.yaml"
        config.write_text(
            "models:\n"
            "  fracast:\n    backend: fracast\n"
            "  seasonal_naive:\n    backend: seasonal_naive\n"
            "model_server:\n"
            + (f"  token: {token}\n" if token else "")
            + "  batch_wait_ms: 50\n"
            f"  preload: [{', '.join(preload)}]\n"
        )
        self.log = tmp / "server.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [*CLI, "--config", str(config), "serve-model", "--port", "0", *args],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ},
            )
        try:
            # Listening on every interface, it is reached on the loopback one.
            self.url = self._wait_for_url().replace("//0.0.0.0:", "//127.0.0.1:")
            self._wait_until_ready(verify)
        except BaseException:
            self.stop()
            raise

    def output(self) -> str:
        return self.log.read_text()

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = LISTENING.search(self.output())
            if found:
                return found.group(1)
            assert self.process.poll() is None, self.output()
            time.sleep(0.05)
        raise AssertionError(f"the server did not log its URL:\n{self.output()}")

    def _wait_until_ready(self, verify: ssl.SSLContext | bool) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2, verify=verify).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # the socket is bound before the application starts
            assert self.process.poll() is None, self.output()
            time.sleep(0.1)
        raise AssertionError(f"the server did not get ready:\n{self.output()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"SIGTERM did not stop the server:\n{self.output()}") from None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ServerProcess(tmp_path_factory.mktemp("model_server"), ["fracast", "seasonal_naive"])
    yield process
    process.stop()


@pytest.fixture(scope="module")
def local():
    return LocalModelEngine(default_models())


@pytest.fixture
def remote(server):
    with RemoteModelEngine(server.url, token=TOKEN, max_retries=1, backoff=0.05) as engine:
        yield engine


def daily(n, seed, period=288):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50 + 20 * np.sin(2 * np.pi * t / period) + rng.normal(0, 1, n)


def ragged(lengths, seed=0):
    """Left-padded contexts of the given lengths, with a gap in each."""
    width = max(lengths)
    context = np.full((len(lengths), width), np.nan)
    for row, n in enumerate(lengths):
        values = daily(n, seed + row)
        values[n // 3:n // 3 + 7] = np.nan
        context[row, width - n:] = values
    return context


def request(context, horizon=12, quantiles=QUANTILES):
    return ForecastRequest(np.atleast_2d(context), horizon, quantiles, 300.0)


def metric(server, name, model):
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    line = f'openanomaly_model_server_{name}{{model="{model}"}} '
    values = [float(row.split()[-1]) for row in text.splitlines() if row.startswith(line)]
    assert values, f"{line} not in\n{text}"
    return values[0]


@pytest.mark.parametrize(("model", "lengths", "horizon"), [
    ("fracast", [400, 2100, 90], 12),
    ("fracast", [300, 250], 60),  # more than one 48-step block
    ("seasonal_naive", [700, 400, 1000], 30),
])
def test_remote_forecasts_equal_local_ones(server, local, remote, model, lengths, horizon):
    wanted = request(ragged(lengths), horizon=horizon, quantiles=(0.1, 0.25, 0.5, 0.9))
    there = remote.forecast(model, wanted)
    here = local.forecast(model, wanted)
    assert there.quantiles == here.quantiles
    assert there.values.shape == (len(lengths), horizon, 4)
    # Another process may batch and thread differently: equal up to float rounding.
    np.testing.assert_allclose(there.values, here.values, rtol=1e-5, atol=1e-6)


def test_concurrent_clients_share_batches_and_get_their_own_forecasts(server, local, remote):
    contexts = [daily(200 + 50 * i, 100 + i) for i in range(8)]
    alone = [local.forecast("fracast", request(c)).values for c in contexts]
    batches_before = metric(server, "batches_total", "fracast")
    batched_before = metric(server, "batched_requests_total", "fracast")
    start = threading.Barrier(len(contexts))
    results: list[np.ndarray | Exception | None] = [None] * len(contexts)

    def client(index):
        start.wait()
        try:
            results[index] = remote.forecast("fracast", request(contexts[index])).values
        except Exception as exc:  # reported by the assertion below, with its index
            results[index] = exc

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(contexts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for index, (got, expected) in enumerate(zip(results, alone, strict=True)):
        assert isinstance(got, np.ndarray), f"client {index}: {got!r}"
        # Merged with other clients' series, so equal only up to batch-dependent rounding.
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    batches = metric(server, "batches_total", "fracast") - batches_before
    batched = metric(server, "batched_requests_total", "fracast") - batched_before
    assert batched == len(contexts)
    assert batches < batched, f"{batches} engine calls for {batched} requests: nothing merged"


def test_remote_backend_through_the_local_engine(server, local):
    settings = RemoteSettings(url=server.url, token=TOKEN, remote_model="fracast")
    engine = LocalModelEngine({"r": settings})
    wanted = request(ragged([500, 150], seed=7))
    np.testing.assert_allclose(engine.forecast("r", wanted).values,
                               local.forecast("fracast", wanted).values, rtol=1e-5, atol=1e-6)
    client = engine.get("r").engine._client
    engine.close()
    assert engine.loaded() == [] and client.is_closed, "closing the engine closes its clients"


def test_refusals_are_not_retried_and_say_what_to_fix(server, remote):
    with pytest.raises(UnknownModel, match="unknown model 'gpt'; this server has: fracast"):
        remote.forecast("gpt", request(daily(50, 1)))
    with pytest.raises(ModelError, match=r"HTTP 422.*forecasts quantiles 0\.1\.\.0\.9"):
        remote.forecast("fracast", request(daily(50, 1), quantiles=(0.01, 0.5)))
    with RemoteModelEngine(server.url, token="wrong", max_retries=3) as stranger:
        started = time.monotonic()
        with pytest.raises(ModelError, match=r"HTTP 401.*model_server\.token"):
            stranger.list_models()
        assert time.monotonic() - started < 2  # refused at once, no backoff
    assert {m["name"] for m in remote.list_models()} == {"fracast", "seasonal_naive"}


def test_client_gives_up_after_its_retries_once_the_server_is_killed(tmp_path):
    server = ServerProcess(tmp_path, preload=[])
    with RemoteModelEngine(server.url, token=TOKEN, max_retries=2, backoff=0.05) as engine:
        assert engine.forecast("seasonal_naive", request(daily(50, 1))).values.shape == (1, 12, 3)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        with pytest.raises(ModelError) as failure:
            engine.forecast("seasonal_naive", request(daily(50, 1)))
    message = str(failure.value)
    assert server.url in message and "3 attempt(s)" in message
    assert "ConnectError" in message


def test_sigterm_stops_the_server_cleanly(tmp_path):
    server = ServerProcess(tmp_path, preload=["seasonal_naive"])
    assert server.stop() == 0
    output = server.output()
    assert 'msg="model server stopped" signal=SIGTERM' in output
    assert "Traceback" not in output

"""A real Prometheus process on a free local port, for tests and for the demo."""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from openanomaly.domain.errors import TSDBUnavailable

logger = logging.getLogger(__name__)

_LOG_TAIL_LINES = 30
_PORT_ATTEMPTS = 3


def find_prometheus(binary: str | None = None) -> str:
    """Path of the Prometheus binary: ``binary`` if given, else ``prometheus`` on PATH."""
    found = shutil.which(binary or "prometheus")
    if found is None:
        raise TSDBUnavailable(
            f"Prometheus binary {binary or 'prometheus'!r} not found; install it "
            "(Debian/Ubuntu: apt-get install prometheus) or pass its path"
        )
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(scrape_interval: str, out_of_order_time_window: str) -> str:
    # No scrape targets: the instance only holds what is written to it.
    return (
        "global:\n"
        f"  scrape_interval: {scrape_interval}\n"
        "storage:\n"
        "  tsdb:\n"
        f"    out_of_order_time_window: {out_of_order_time_window}\n"
    )


def stop_with_parent() -> None:
    """``preexec_fn`` of a helper process: on Linux, it gets SIGTERM when the process that
    started it dies, even by SIGKILL (a killed demo or test leaves no server behind)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def stop_process(process: subprocess.Popen[Any], timeout: float) -> bool:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; True if it had to be killed."""
    if process.poll() is not None:
        return False
    process.terminate()
    try:
        process.wait(timeout)
        return False
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return True


class LocalPrometheus:
    """Start Prometheus with the remote-write receiver on and an out-of-order window, so
    history can be written into it.

    ``data_dir`` defaults to a temporary folder that :meth:`stop` removes; a given folder
    is kept.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        binary: str | None = None,
        out_of_order_time_window: str = "30d",
        retention: str = "60d",
        startup_timeout: float = 30.0,
    ) -> None:
        self.binary = find_prometheus(binary)
        self._owns_dir = data_dir is None
        self.data_dir = Path(
            tempfile.mkdtemp(prefix="openanomaly-prometheus-") if data_dir is None else data_dir
        )
        self.out_of_order_time_window = out_of_order_time_window
        self.retention = retention
        self.startup_timeout = startup_timeout
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "prometheus.log"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> LocalPrometheus:
        """Start the process and wait until ``/-/ready`` answers 200.

        After :meth:`kill` this restarts on the same data and, if still free, the same port.
        """
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError(f"Prometheus is already running at {self.url}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "prometheus.yml"
        config.write_text(_config("15s", self.out_of_order_time_window))
        # Another process can take the port between free_port() and Prometheus' bind.
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            if attempt > 1 or self.port == 0:
                self.port = free_port()
            self._spawn(config)
            try:
                self._wait_ready()
                logger.info("local Prometheus ready at %s (pid %d)", self.url, self.pid)
                return self
            except TSDBUnavailable:
                in_use = "address already in use" in self._log_tail()
                self._terminate(timeout=5.0)
                if not (in_use and attempt < _PORT_ATTEMPTS):
                    raise
                logger.warning("port %d was taken, retrying on another port", self.port)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _spawn(self, config: Path) -> None:
        command = [
            self.binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.data_dir / 'data'}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-remote-write-receiver",
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=stop_with_parent,
            )

    def _wait_ready(self) -> None:
        process = self._process
        if process is None:
            raise RuntimeError("Prometheus was not started")
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                code = process.poll()
                if code is not None:
                    raise TSDBUnavailable(
                        f"Prometheus exited with code {code} while starting; "
                        f"log {self.log_path}:\n{self._log_tail()}"
                    )
                try:
                    if client.get(f"{self.url}/-/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                time.sleep(0.1)
        raise TSDBUnavailable(
            f"Prometheus at {self.url} was not ready after {self.startup_timeout:.0f}s; "
            f"log {self.log_path}:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:])

    def _terminate(self, timeout: float) -> None:
        process, self._process = self._process, None
        if process is not None and stop_process(process, timeout):
            logger.warning("Prometheus (pid %d) ignored SIGTERM for %.0fs; killed it",
                           process.pid, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; removes a temporary data folder."""
        self._terminate(timeout)
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL at once, keeping the data folder (to test a crashed database)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> LocalPrometheus:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

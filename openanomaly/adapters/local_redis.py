"""A redis-server of a process's own (a benchmark's Celery workers, the tests): a free
port, no persistence unless asked, stopped (and a folder of its own removed) on exit."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from openanomaly.adapters.tsdb.local_prometheus import free_port, stop_process, stop_with_parent
from openanomaly.domain.errors import ConfigError


class LocalRedis:
    """``port`` and ``directory`` given, a later server started on both finds what this one
    kept; ``persistent`` keeps it in an append-only file written at every command."""

    def __init__(self, binary: str | None = None, startup_timeout: float = 10.0, *,
                 port: int | None = None, directory: Path | None = None,
                 persistent: bool = False) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise ConfigError("no redis-server on PATH: install the Debian package "
                              "'redis-server' or give a Redis URL")
        self.binary = found
        self.startup_timeout = startup_timeout
        self.port = port or 0
        self.directory = directory
        self.persistent = persistent
        self._own_folder: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> LocalRedis:
        if self.directory is None:
            self._own_folder = Path(tempfile.mkdtemp(prefix="openanomaly-redis-"))
        folder = self.directory or self._own_folder
        self.port = self.port or free_port()
        durability = (["--appendonly", "yes", "--appendfsync", "always"] if self.persistent
                      else ["--save", "", "--appendonly", "no"])
        self._process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", *durability,
             "--dir", str(folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=stop_with_parent)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + self.startup_timeout
        try:
            while True:
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self._process.poll() is not None:
                        self.__exit__(None, None, None)
                        raise ConfigError(f"redis-server did not start on port {self.port} "
                                          f"within {self.startup_timeout:g} s") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._process is not None:
            stop_process(self._process, timeout=10)
            self._process = None
        if self._own_folder is not None:
            shutil.rmtree(self._own_folder, ignore_errors=True)
            self._own_folder = None

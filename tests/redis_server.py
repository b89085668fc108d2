"""A real redis-server on a free port, started by the tests that need one."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from openanomaly.adapters.local_redis import LocalRedis


class RedisServer:
    """A started ``LocalRedis`` in a folder the test owns, so it can be restarted on it."""

    def __init__(self, directory: Path, port: int | None = None,
                 persistent: bool = False) -> None:
        self.directory = directory
        self.persistent = persistent
        self._server = LocalRedis(port=port, directory=directory,
                                  persistent=persistent).__enter__()
        self.port = self._server.port
        self.url = self._server.url

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def restarted(self) -> RedisServer:
        """A new server on the same port and folder (stop this one first)."""
        return RedisServer(self.directory, self.port, self.persistent)

    def stop(self) -> None:
        self._server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if not (shutil.which("redis-server") or Path("/usr/bin/redis-server").exists()):
        pytest.fail("redis-server not found; install the Debian package redis-server")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()

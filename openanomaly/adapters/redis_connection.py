"""Connections to the Redis of the distributed deployment (broker, RedBeat, slot ledger)."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import redis

from openanomaly.config import RedisSettings


def redis_url(settings: RedisSettings) -> str:
    """The Redis URL with the password (kept out of the YAML URL) put into it."""
    parts = urlsplit(settings.url)
    scheme = "rediss" if settings.tls_ca_file and parts.scheme == "redis" else parts.scheme
    netloc = parts.netloc
    if settings.password is not None:
        host = netloc.rsplit("@", 1)[-1]
        user = parts.username or ""
        secret = quote(settings.password.get_secret_value(), safe="")
        netloc = f"{quote(user, safe='')}:{secret}@{host}"
    return urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment))


def tls_options(settings: RedisSettings) -> dict[str, Any] | None:
    """Celery's and RedBeat's TLS options for a Redis behind a private CA."""
    if not settings.tls_ca_file:
        return None
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": settings.tls_ca_file}


def redis_client(settings: RedisSettings) -> redis.Redis:
    url = redis_url(settings)
    if url.startswith("rediss:") and settings.tls_ca_file:
        return redis.Redis.from_url(url, ssl_ca_certs=settings.tls_ca_file)
    return redis.Redis.from_url(url)

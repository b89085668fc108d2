"""Connection settings of the Prometheus adapter (query API in, remote write out)."""

from __future__ import annotations

import re

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from openanomaly.domain.redaction import redact

DEFAULT_URL = "http://localhost:9090"
# RFC 9110 token characters: anything else in a header name is refused by servers.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Visible ASCII, space and tab: httpx sends header values as ASCII, and a line break
# would end the header.
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
_HOST = re.compile(r"[A-Za-z0-9._-]+")


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1)
    password: SecretStr


def _url_problem(url: httpx.URL, query_allowed: bool) -> str | None:
    host = url.raw_host.decode("ascii", errors="replace")
    if not host:
        return "it has no host"
    if ":" not in host and not _HOST.fullmatch(host):  # IPv6 literals hold colons
        return "its host is not a valid host name"
    if url.port is not None and not 1 <= url.port <= 65535:
        return f"port {url.port} is not between 1 and 65535"
    if url.fragment:
        return "a #fragment means nothing to a server"
    if url.query and not query_allowed:
        return "API paths are appended to it, so it cannot carry a ?query"
    return None


def check_url(value: str, example: str, query_allowed: bool) -> str:
    """``value`` without a trailing slash; ValueError naming what is wrong with it."""
    shown = redact(value)
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"must start with http:// or https://, got {shown!r}")
    try:
        problem = _url_problem(httpx.URL(value), query_allowed)
    except httpx.InvalidURL as exc:
        problem = redact(str(exc)).rstrip(".")
    if problem:
        raise ValueError(f"invalid URL {shown!r}: {problem}; set a URL such as {example}")
    # Paths are appended to the URL; "http://db/" + "/api" would double the slash.
    return value.rstrip("/")


class PrometheusSettings(BaseModel):
    """Where and how to reach a Prometheus-compatible database.

    ``url`` is the base of the query API (``<url>/api/v1/query_range``); for Mimir or
    Cortex include the prefix, e.g. ``http://mimir/prometheus``.
    """

    model_config = ConfigDict(extra="forbid")

    url: str = DEFAULT_URL
    remote_write_url: str | None = None
    timeout: float = Field(30.0, gt=0, description="seconds per HTTP request")
    bearer_token: SecretStr | None = None
    basic_auth: BasicAuth | None = None
    tls_ca_file: str | None = None
    tls_insecure_skip_verify: bool = False
    tls_client_cert: str | None = Field(
        None, description="PEM client certificate sent on reads and writes (mutual TLS)")
    tls_client_key: str | None = Field(
        None, description="PEM key of tls_client_cert, unless that file holds it too")
    max_retries: int = Field(4, ge=0, description="retries after the first attempt")
    retry_backoff: float = Field(0.5, ge=0, description="base of the exponential backoff, s")
    retry_backoff_max: float = Field(10.0, ge=0, description="cap of one backoff wait, s")
    write_batch_samples: int = Field(50_000, ge=1)
    max_response_bytes: int | None = Field(
        None, ge=1,
        description="largest query answer read, in bytes; default: derived per query from "
        "the pipeline's max_series and the points asked for")
    headers: dict[str, str] = Field(
        default_factory=dict, description="sent with every request, reads and writes")
    read_headers: dict[str, str] = Field(
        default_factory=dict, description="sent with queries only; win over headers")
    write_headers: dict[str, str] = Field(
        default_factory=dict, description="sent with remote writes only; win over headers")

    @field_validator("url")
    @classmethod
    def _query_url(cls, value: str) -> str:
        return check_url(value, "http://prometheus:9090", query_allowed=False)

    @field_validator("remote_write_url")
    @classmethod
    def _write_url(cls, value: str | None) -> str | None:
        # Some receivers take options as query parameters (VictoriaMetrics' extra_label).
        return None if value is None else check_url(
            value, "http://prometheus:9090/api/v1/write", query_allowed=True)

    @field_validator("headers", "read_headers", "write_headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
            if not _HEADER_VALUE.fullmatch(text):
                raise ValueError(f"the value of header {name} must be printable ASCII on "
                                 "one line")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PrometheusSettings:
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ValueError("set either bearer_token or basic_auth, not both")
        if self.tls_client_key is not None and self.tls_client_cert is None:
            raise ValueError("tls_client_key is set without tls_client_cert; set both (or "
                             "only tls_client_cert when that file holds the key too)")
        return self

    @property
    def effective_remote_write_url(self) -> str:
        return self.remote_write_url or f"{self.url}/api/v1/write"

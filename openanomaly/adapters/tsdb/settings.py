"""Connection settings of the Prometheus adapter (query API in, remote write out)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1)
    password: SecretStr


class PrometheusSettings(BaseModel):
    """Where and how to reach a Prometheus-compatible database.

    ``url`` is the base of the query API (``<url>/api/v1/query_range``); for Mimir or
    Cortex include the prefix, e.g. ``http://mimir/prometheus``.
    """

    model_config = ConfigDict(extra="forbid")

    url: str = "http://localhost:9090"
    remote_write_url: str | None = None
    timeout: float = Field(30.0, gt=0, description="seconds per HTTP request")
    bearer_token: SecretStr | None = None
    basic_auth: BasicAuth | None = None
    tls_ca_file: str | None = None
    tls_insecure_skip_verify: bool = False
    max_retries: int = Field(4, ge=0, description="retries after the first attempt")
    retry_backoff: float = Field(0.5, ge=0, description="base of the exponential backoff, s")
    retry_backoff_max: float = Field(10.0, ge=0, description="cap of one backoff wait, s")
    write_batch_samples: int = Field(50_000, ge=1)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url", "remote_write_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        # Paths are appended to the URL; "http://db/" + "/api" would double the slash.
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_auth(self) -> PrometheusSettings:
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ValueError("set either bearer_token or basic_auth, not both")
        return self

    @property
    def effective_remote_write_url(self) -> str:
        return self.remote_write_url or f"{self.url}/api/v1/write"

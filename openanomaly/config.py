"""AppConfig: the whole configuration, read from one YAML file.

``${VAR}`` and ``${VAR:-default}`` in string values are replaced from the environment (for
secrets), and ``OPENANOMALY__SECTION__KEY=value`` variables override single keys.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)

# Re-exported: entry points take config types from here, not from the adapters.
from openanomaly.adapters.models.settings import EnsembleSettings
from openanomaly.adapters.models.settings import ModelSettings as ModelSettings
from openanomaly.adapters.models.settings import default_models as default_models
from openanomaly.adapters.models.settings import parse_model_settings as parse_model_settings
from openanomaly.adapters.tsdb.settings import DEFAULT_URL, PrometheusSettings
from openanomaly.domain.errors import ConfigError
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.yaml_safety import load_yaml

CONFIG_ENV = "OPENANOMALY_CONFIG_FILE"
OVERRIDE_PREFIX = "OPENANOMALY__"
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SchedulerSettings(_Section):
    kind: Literal["embedded", "celery"] = "embedded"
    max_workers: int = Field(default=2, ge=1, description="embedded: pipelines run at once")
    task_soft_time_limit: float = Field(
        default=300.0, gt=0, description="celery: seconds before a task is asked to stop"
    )
    task_time_limit: float = Field(
        default=360.0, gt=0, description="celery: seconds before a task's process is killed"
    )
    catch_up_horizon: float = Field(
        default=3600.0, gt=0,
        description="seconds back that missed slots are still run; older ones are counted"
    )
    ledger_path: str | None = Field(
        default=".openanomaly/embedded-slots.db",
        description="embedded: SQLite file of completed slots, so an outage or a restart "
        "is caught up (relative to the working directory); null: no catch-up",
    )
    retry_window: float = Field(
        default=60.0, ge=0,
        description="embedded: seconds a run keeps retrying a retryable error (at least "
        "max_retries times), enough to ride out a database restart",
    )
    reconcile_interval: float = Field(
        default=30.0, gt=0, description="celery beat: seconds between syncs of the schedule"
    )
    lock_timeout: float = Field(
        default=30.0, gt=0,
        description="celery beat: seconds before a standby takes over from a silent leader"
    )
    max_retries: int = Field(
        default=5, ge=0,
        description="retries of a run that failed with a retryable error (database or model "
        "server unreachable); configuration and query errors are never retried",
    )
    retry_backoff_max: float = Field(
        default=300.0, gt=0,
        description="longest wait (seconds) before a failed run is retried"
    )
    shard_series: int | None = Field(
        default=5000, ge=1,
        description="celery: a slot whose query returns more series than this is split "
        "into tasks of about this many series, which all workers share; null: never split",
    )
    share_contexts: bool = Field(
        default=True,
        description="celery: workers keep each pipeline's latest context in Redis (8 bytes "
        "per point), so whichever worker runs its next slot reads only the new steps",
    )
    visibility_timeout: float | None = Field(
        default=None, gt=0,
        description="celery: seconds before Redis hands an unacknowledged task to another "
        "worker (a dead worker's task is redelivered after this); default "
        "task_time_limit + retry_backoff_max + 300",
    )

    @model_validator(mode="after")
    def _limits_in_order(self) -> SchedulerSettings:
        if self.task_soft_time_limit >= self.task_time_limit:
            raise ValueError(
                f"task_soft_time_limit ({self.task_soft_time_limit:g} s) must be below "
                f"task_time_limit ({self.task_time_limit:g} s): the soft limit asks a task to "
                f"stop before the hard limit kills its process"
            )
        held = self.task_time_limit + self.retry_backoff_max
        if self.visibility_timeout is None:
            self.visibility_timeout = held + 300.0
        elif self.visibility_timeout <= held:
            raise ValueError(
                f"visibility_timeout ({self.visibility_timeout:g} s) must exceed "
                f"task_time_limit + retry_backoff_max ({held:g} s): a worker keeps a task's "
                f"message unacknowledged while a retry waits for its countdown (up to "
                f"retry_backoff_max) and then runs (up to task_time_limit), and Redis hands a "
                f"message unacknowledged for longer than visibility_timeout to a second "
                f"worker, which would run the task again while the first still runs or "
                f"retries it"
            )
        return self


class RedisSettings(_Section):
    url: str = "redis://localhost:6379/0"
    password: SecretStr | None = None
    tls_ca_file: str | None = None
    handover_url: str | None = Field(
        default=None,
        description="celery: a Redis for what workers hand each other (shared contexts, "
        "the rows of sharded slots), which needs no persistence; same password and TLS; "
        "null: url",
    )


class MongoSettings(_Section):
    url: str | None = None
    database: str = "openanomaly"


class StoreSettings(_Section):
    kind: Literal["file", "sqlite", "mongo"] = Field(
        default="file",
        description="where pipelines (and users) live: file (this YAML and pipelines_file, "
        "read-only), sqlite (one file, writable, one machine) or mongo (mongo.url, shared)",
    )
    sqlite_path: str = Field(
        default=".openanomaly/openanomaly.db",
        description="sqlite: the database file, relative to the working directory",
    )


class DjangoSettings(_Section):
    """`openanomaly api`: the web service (REST API and UI)."""

    secret_key: SecretStr | None = Field(
        default=None, description="signs sessions and CSRF tokens; required unless debug")
    allowed_hosts: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1"])
    csrf_trusted_origins: list[str] = Field(
        default_factory=list, description="origins (https://host) allowed to post forms")
    secure_cookies: bool = Field(
        default=False, description="send session and CSRF cookies over HTTPS only")
    session_hours: float = Field(default=12.0, gt=0, description="sign-in lifetime")
    debug: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)


class InferenceSettings(_Section):
    cache_mb: float = Field(
        default=4096.0, gt=0, description="memory for loaded models; least recently used go first"
    )


class ModelLimits(_Section):
    """One model's own limits on the model server; unset keys take the server-wide ones."""

    max_horizon: int | None = Field(default=None, ge=1)
    max_context_steps: int | None = Field(default=None, ge=1)
    request_timeout: float | None = Field(default=None, gt=0)


class ModelServerSettings(_Section):
    """`openanomaly serve-model`: the HTTP server of the configured models."""

    host: str = "127.0.0.1"
    port: int = Field(default=8501, ge=0, le=65535)
    token: SecretStr | None = Field(default=None, description="bearer token clients must send")
    max_request_mb: float = Field(default=64.0, gt=0)
    batch_wait_ms: float = Field(
        default=5.0, ge=0, description="how long a request waits for others to share its batch"
    )
    max_batch_series: int = Field(default=1024, ge=1)
    preload: list[str] = Field(
        default_factory=list, description="models loaded at start-up (ready only after)"
    )
    # A week at a 5-minute step; Fracast rolls forward 48 steps per pass, so 43 passes.
    max_horizon: int = Field(default=2048, ge=1, description="steps one request may forecast")
    # Above the 11,000 points per series that a Prometheus range query returns.
    max_context_steps: int = Field(
        default=16384, ge=1, description="steps of context per series in one request"
    )
    # 64 MiB as float64: the binary body at the default max_request_mb.
    max_context_values: int = Field(
        default=8_388_608, ge=1,
        description="context values of one request, series x steps of its longest series",
    )
    # Below the remote client's default timeout (60 s), so that it reads the server's 504.
    request_timeout: float = Field(
        default=50.0, gt=0, description="seconds a forecast request may take before a 504"
    )
    per_model: dict[str, ModelLimits] = Field(
        default_factory=dict, description="limits of single models, over the ones above"
    )
    tls_cert_file: str | None = Field(default=None, description="PEM certificate (chain)")
    tls_key_file: str | None = Field(default=None, description="PEM private key")
    tls_client_ca_file: str | None = Field(
        default=None, description="PEM CA bundle: clients must present a certificate it signed"
    )

    @model_validator(mode="after")
    def _tls_complete(self) -> ModelServerSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both tls_cert_file and tls_key_file (--tls-cert and "
                             "--tls-key), or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file (--tls-client-ca) needs TLS: set "
                             "tls_cert_file and tls_key_file (--tls-cert, --tls-key) too")
        return self


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["logfmt", "json"] = "logfmt"


class MetricsSettings(_Section):
    """The service's own /metrics, /healthz and /readyz, for processes without an HTTP
    server of their own (the embedded `run`)."""

    host: str = Field(default="127.0.0.1", description="0.0.0.0 to be scraped from elsewhere")
    port: int | None = Field(default=9464, ge=0, le=65535,
                             description="0: any free port (logged); null: no endpoint")


class AppConfig(_Section):
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    pipelines: list[PipelineSpec] = Field(default_factory=list)
    pipelines_file: str | None = Field(
        default=None, description="YAML file with a list of pipelines, beside the inline ones"
    )
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    mongo: MongoSettings = Field(default_factory=MongoSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    django: DjangoSettings = Field(default_factory=DjangoSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    model_server: ModelServerSettings = Field(default_factory=ModelServerSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    # The files this configuration was read from, so a store can reload its pipelines
    # when they change; empty for a configuration built in code.
    _source_files: tuple[Path, ...] = PrivateAttr(default=())

    @property
    def source_files(self) -> tuple[Path, ...]:
        return self._source_files

    @property
    def defaulted_prometheus_url(self) -> str | None:
        """The Prometheus URL used because the configuration names none, else None: an
        empty file still runs, against a database that may not be the intended one."""
        return None if "url" in self.prometheus.model_fields_set else DEFAULT_URL

    @model_validator(mode="after")
    def _complete(self) -> AppConfig:
        self.models = {**default_models(), **self.models}
        for name, model in self.models.items():
            if not isinstance(model, EnsembleSettings):
                continue
            for member in model.members:
                if member not in self.models:
                    raise ValueError(f"models.{name}: unknown ensemble member {member!r}")
                if isinstance(self.models[member], EnsembleSettings):
                    raise ValueError(f"models.{name}: member {member!r} is itself an ensemble")
        if self.store.kind != "file" and (self.pipelines or self.pipelines_file):
            raise ValueError(
                f"store.kind is {self.store.kind}, so pipelines live in the database and "
                "the ones in this file would be ignored: move them there with `openanomaly "
                "pipelines import FILE` and remove them here, or set store.kind: file")
        if self.store.kind == "mongo" and not self.mongo.url:
            raise ValueError("store.kind is mongo: set mongo.url (mongodb://host:27017)")
        for name in self.model_server.per_model:
            if name not in self.models:
                raise ValueError(f"model_server.per_model: unknown model {name!r}; configured "
                                 f"models: {', '.join(sorted(self.models))}")
        seen: set[str] = set()
        for index, pipeline in enumerate(self.pipelines):
            if pipeline.name in seen:
                raise ValueError(f"pipelines[{index}]: duplicate pipeline name {pipeline.name!r}")
            seen.add(pipeline.name)
            if pipeline.model not in self.models:
                known = ", ".join(sorted(self.models))
                raise ValueError(
                    f"pipelines[{index}] ({pipeline.name}): unknown model {pipeline.model!r}; "
                    f"configured models: {known}"
                )
        return self


def default_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV, "config.yaml"))


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> AppConfig:
    """Read, substitute, override and validate. Raises ConfigError with one clear message."""
    env = dict(os.environ if environ is None else environ)
    file = Path(path) if path is not None else default_path()
    raw = _read_yaml(file, required=True)
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of sections")
    raw = _substitute(raw, env, file, ())
    _apply_overrides(raw, env)
    pipelines_file = raw.get("pipelines_file")
    files = [file.resolve()]
    if pipelines_file:
        extra_file = (file.parent / str(pipelines_file)).resolve()
        files.append(extra_file)
        listed = _substitute(_read_yaml(extra_file, required=True), env, extra_file, ())
        if isinstance(listed, dict):
            listed = listed.get("pipelines")
        if not isinstance(listed, list):
            raise ConfigError(f"{extra_file}: expected a list of pipelines (or 'pipelines:' list)")
        raw["pipelines"] = list(raw.get("pipelines") or []) + listed
    config = validate_config(raw, file)
    config._source_files = tuple(files)
    return config


class _PipelinesFile(_Section):
    pipelines: list[PipelineSpec]


def load_pipelines_file(path: str | Path, environ: dict[str, str] | None = None,
                        ) -> list[PipelineSpec]:
    """The pipelines of a YAML file holding a list of them, or a ``pipelines:`` list (a
    whole configuration file works too). Raises ConfigError with one clear message."""
    file = Path(path)
    env = dict(os.environ if environ is None else environ)
    raw = _substitute(_read_yaml(file, required=True), env, file, ())
    listed = raw.get("pipelines") if isinstance(raw, dict) else raw
    if not isinstance(listed, list):
        raise ConfigError(f"{file}: expected a list of pipelines (or a 'pipelines:' list)")
    try:
        return _PipelinesFile.model_validate({"pipelines": listed}).pipelines
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, file, {"pipelines": listed})) from None


def validate_config(raw: dict[str, Any], file: Path | str = "<config>") -> AppConfig:
    try:
        return AppConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, file, raw)) from None


def format_validation_error(exc: ValidationError, file: Path | str, raw: Any) -> str:
    lines = [f"{file}: invalid configuration ({exc.error_count()} problem(s)):"]
    for error in exc.errors():
        where, tag = _key_path(error["loc"], raw)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden" and tag:
            key, value = tag
            message = (f"unknown key for {key} {value} (check its spelling; each {key} "
                       f"takes its own keys)")
        elif error["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and the section it is in)"
        elif error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            # The entry's kind (e.g. a model's backend) is wrong or missing.
            context = error.get("ctx", {})
            where = ".".join(filter(None, [where, context["discriminator"].strip("'")]))
            message = (f"must be one of {context['expected_tags']}, got {context['tag']!r}"
                       if "tag" in context else "required")
        lines.append(f"  {where or '(top level)'}: {message}")
    return "\n".join(lines)


def _key_path(loc: tuple[Any, ...], raw: Any) -> tuple[str, tuple[str, str] | None]:
    """The file's key path of pydantic's ``loc``, and the key and value that chose the
    entry's class when a discriminated union did (e.g. ``("backend", "fracast")``)."""
    parts: list[str] = []
    tag: tuple[str, str] | None = None
    node = raw
    for index, item in enumerate(loc):
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{item}]"]
            node = node[item] if isinstance(node, list) and item < len(node) else None
            if isinstance(node, dict) and "name" in node:
                parts[-1] += f" ({node['name']})"
        elif (isinstance(node, dict) and item not in node and item in node.values()
              and index < len(loc) - 1):
            # A discriminated union names the class it chose by its tag, not by a key.
            tag = next((str(key), item) for key, value in node.items() if value == item)
        elif isinstance(item, str) and not item.startswith(("function-", "tagged-union")):
            # Validator and union names in pydantic's path are not keys of the file.
            parts.append(item)
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts), tag


def _read_yaml(file: Path, required: bool) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not required:
            return {}
        raise ConfigError(
            f"{file}: config file not found; pass --config or set {CONFIG_ENV}"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        return load_yaml(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{file}:{where}: malformed YAML: {problem}") from None


def _substitute(node: Any, env: dict[str, str], file: Path, path: tuple[str, ...]) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(value, env, file, (*path, str(k))) for k, value in node.items()}
    if isinstance(node, list):
        return [_substitute(value, env, file, (*path, f"[{i}]")) for i, value in enumerate(node)]
    if isinstance(node, str):
        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{file}: {'.'.join(path)}: environment variable {name} is not set "
                f"(set it, or write ${{{name}:-default}})"
            )
        return _REFERENCE.sub(replace, node)
    return node


def _apply_overrides(raw: dict[str, Any], env: dict[str, str]) -> None:
    """OPENANOMALY__PROMETHEUS__URL=http://x sets prometheus.url; values are YAML scalars."""
    for name, text in sorted(env.items()):
        if not name.startswith(OVERRIDE_PREFIX):
            continue
        keys = [part.lower() for part in name[len(OVERRIDE_PREFIX):].split("__") if part]
        if not keys:
            continue
        node = raw
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[keys[-1]] = load_yaml(text) if text else text

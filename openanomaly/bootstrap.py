"""The composition root: the one place that reads AppConfig and wires adapters to services.

One builder per kind of process. Each takes its adapters as keyword arguments whose
default is the real adapter built from the configuration, so tests pass fakes instead.

| process                                       | builder              |
| --------------------------------------------- | -------------------- |
| `run`, `run-once`, `backfill`, `check-config` | ``bootstrap``        |
| Celery worker (`worker`) and beat's dispatch  | ``bootstrap_worker`` |
| beat (the pipeline store it reconciles)       | ``bootstrap_beat``   |
| `serve-model`                                 | ``model_server_engine`` |
| `status`                                      | ``bootstrap_status`` |
| `benchmark models`                            | ``benchmark_engine``, ``benchmark_model`` |
| `benchmark nab`, `nab-report`                 | ``replay_engine``, ``nab_corpus`` |
| `demo`                                        | ``demo_prometheus``, then ``bootstrap`` |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from openanomaly.adapters.config.yaml_store import YamlConfigStore
from openanomaly.adapters.datasets.nab import NabFile, load_corpus
from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.models.registry import check_available
from openanomaly.adapters.models.settings import ModelSettings
from openanomaly.adapters.scheduler.embedded import EmbeddedScheduler
from openanomaly.adapters.scheduler.sqlite_ledger import SqliteSlotLedger
from openanomaly.adapters.telemetry import BeatMetrics as BeatMetrics
from openanomaly.adapters.telemetry import HealthServer as HealthServer
from openanomaly.adapters.telemetry import HttpTelemetry, http_telemetry
from openanomaly.adapters.telemetry import ModelTelemetryMetrics as ModelTelemetryMetrics
from openanomaly.adapters.telemetry import PrometheusTelemetry as PrometheusTelemetry
from openanomaly.adapters.telemetry import exposition as exposition
from openanomaly.adapters.telemetry import exposition_registry as exposition_registry
from openanomaly.adapters.telemetry import process_exited as process_exited
from openanomaly.adapters.telemetry import use_multiprocess as use_multiprocess
from openanomaly.adapters.tsdb.local_prometheus import LocalPrometheus
from openanomaly.adapters.tsdb.local_prometheus import free_port as free_port
from openanomaly.adapters.tsdb.local_prometheus import stop_process as stop_process
from openanomaly.adapters.tsdb.local_prometheus import stop_with_parent as stop_with_parent
from openanomaly.adapters.tsdb.prometheus import PrometheusAdapter
from openanomaly.adapters.tsdb.tls import tls_context
from openanomaly.config import AppConfig, load_config
from openanomaly.domain.errors import ConfigError, MissingExtra
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.ports import (
    ConfigStore,
    ContextStore,
    ModelEngine,
    ModelTelemetry,
    PipelineStore,
    RunLog,
    Scheduler,
    ShardStore,
    SlotLedger,
    Telemetry,
    TSDBClient,
    UserStore,
)
from openanomaly.services import backfill as backfill_service
from openanomaly.services import run_status, runs, shard_workflow, slot_workflow
from openanomaly.services.accounts import PasswordHasher
from openanomaly.services.context_cache import ContextCache
from openanomaly.services.runs import RunResult

if TYPE_CHECKING:  # redis comes with the distributed extra, imported where it is used
    import redis

    from openanomaly.adapters.local_redis import LocalRedis


def _close(adapter: object) -> None:
    close = getattr(adapter, "close", None)
    if close is not None:
        close()


@dataclass
class App:
    """The adapters of one process that runs pipelines, and the services on them."""

    config: AppConfig
    tsdb: TSDBClient
    engine: ModelEngine
    store: ConfigStore
    telemetry: Telemetry | None = None
    """Self-monitoring of this process's runs (the embedded service sets it)."""
    contexts: ContextCache = field(default_factory=ContextCache)
    """Each pipeline's context between its runs in this process: a run reads only the
    steps since the previous one."""

    @property
    def run_log(self) -> RunLog | None:
        """Where runs leave their status: every real store keeps one; test fakes may not."""
        return cast(RunLog, self.store) if hasattr(self.store, "record_run") else None

    def run(self, spec: PipelineSpec, at_ms: int) -> RunResult:
        return run_status.recorded(self.run_log, spec.name, at_ms, lambda: runs.run_pipeline(
            spec, at_ms, self.tsdb, self.engine, contexts=self.contexts),
            telemetry=self.telemetry)

    def backfill(
        self, spec: PipelineSpec, start_ms: int, end_ms: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> RunResult:
        return backfill_service.backfill(spec, start_ms, end_ms, self.tsdb, self.engine, progress)

    def scheduler(self) -> Scheduler:
        settings = self.config.scheduler
        ledger = (SqliteSlotLedger(settings.ledger_path) if settings.ledger_path is not None
                  else None)
        return EmbeddedScheduler(self.store, max_workers=settings.max_workers,
                                 max_retries=settings.max_retries,
                                 retry_backoff_max=settings.retry_backoff_max,
                                 ledger=ledger,
                                 catch_up_horizon_ms=int(settings.catch_up_horizon * 1000),
                                 retry_window_s=settings.retry_window,
                                 telemetry=self.telemetry)

    def ready(self) -> None:
        """Raises unless the database and the store answer (/readyz)."""
        self.tsdb.ping()
        self.store.list_pipelines()

    def close(self) -> None:
        _close(self.tsdb)
        _close(self.engine)


def build_telemetry() -> PrometheusTelemetry:
    """This process's metrics; in multiprocess mode (``use_multiprocess``), its share."""
    return PrometheusTelemetry()


def health_server(config: AppConfig, registry: Any,
                  ready: Callable[[], None]) -> HealthServer | None:
    """/metrics (``registry``), /healthz and /readyz on ``metrics.host:port``; None when
    switched off. A port in use is a ConfigError that names the setting."""
    if config.metrics.port is None:
        return None
    try:
        return HealthServer(registry, ready, config.metrics.host, config.metrics.port).start()
    except OSError as exc:
        raise ConfigError(f"metrics endpoint {config.metrics.host}:{config.metrics.port}: "
                          f"{exc.strerror}; set metrics.port to a free port (0: any) or "
                          "null") from None


def endpoint_registry() -> Any:
    """What a process's endpoint serves: every forked process's metrics in multiprocess
    mode, else this process's."""
    return exposition_registry()


@dataclass
class ApiTelemetry:
    """The web service's request metrics and the registry its /metrics serves."""

    http: HttpTelemetry
    registry: Any


def api_telemetry() -> ApiTelemetry:
    http, exposed = http_telemetry("openanomaly_api_")
    return ApiTelemetry(http, exposed)


def build_store(config: AppConfig) -> PipelineStore:
    """The pipelines' store of ``store.kind``: the YAML files (read-only), SQLite or MongoDB."""
    if config.store.kind == "sqlite":
        from openanomaly.adapters.config.sqlite_store import SqliteStore

        return SqliteStore(config.store.sqlite_path)
    if config.store.kind == "mongo":
        from openanomaly.adapters.config.mongo_store import MongoStore

        return MongoStore(mongo_database(config))
    if not config.source_files:
        return YamlConfigStore(config.pipelines)
    path = config.source_files[0]
    return YamlConfigStore(config.pipelines, files=config.source_files,
                           reload=lambda: load_config(path).pipelines)


def build_user_store(config: AppConfig) -> UserStore:
    """Users and tokens live in the database store; a file store has nowhere to keep them."""
    store = build_store(config)
    if isinstance(store, YamlConfigStore):
        raise ConfigError(
            "users and API tokens need a database store: set store.kind to sqlite (one "
            "machine) or mongo, then import the pipelines with `openanomaly pipelines import`")
    return cast(UserStore, store)


@dataclass
class ApiContext:
    """What the web service works with: the stores and the password hasher."""

    config: AppConfig
    store: PipelineStore
    users: UserStore
    hasher: PasswordHasher
    tsdb: TSDBClient
    engine: ModelEngine
    ledger: SlotLedger | None
    """The Celery slot ledger (scheduler.kind celery), for the runs' status."""

    def close(self) -> None:
        _close(self.store)
        _close(self.tsdb)
        _close(self.engine)


def bootstrap_api(config: AppConfig, *, store: PipelineStore | None = None,
                  hasher: PasswordHasher | None = None, tsdb: TSDBClient | None = None,
                  engine: ModelEngine | None = None,
                  ledger: SlotLedger | None = None) -> ApiContext:
    """`openanomaly api`: the store must hold users, so it is a database store."""
    store = store if store is not None else build_store(config)
    if isinstance(store, YamlConfigStore):
        raise ConfigError(
            "the api needs a database store for its users: set store.kind to sqlite (one "
            "machine) or mongo, import the pipelines with `openanomaly pipelines import` and "
            "create a user with `openanomaly createuser NAME --role admin`")
    return ApiContext(config, store, cast(UserStore, store),
                      hasher if hasher is not None else password_hasher(),
                      tsdb if tsdb is not None else PrometheusAdapter(config.prometheus),
                      engine if engine is not None else build_engine(config),
                      ledger if ledger is not None or config.scheduler.kind != "celery"
                      else redis_ledger(config))


def web_cache(config: AppConfig) -> dict[str, Any]:
    """Django's cache for what api processes must share (the sign-in limiter's counts):
    the deployment's Redis with the Celery scheduler; a folder beside the SQLite file on
    one machine; else this process's memory (one api process)."""
    if config.scheduler.kind == "celery":
        from openanomaly.adapters.redis_connection import redis_url

        options: dict[str, Any] = ({"ssl_ca_certs": config.redis.tls_ca_file}
                                   if config.redis.tls_ca_file else {})
        return {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": redis_url(config.redis), "KEY_PREFIX": "openanomaly-web",
                "OPTIONS": options}
    if config.store.kind == "sqlite":
        folder = Path(config.store.sqlite_path).parent / "web-cache"
        return {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                "LOCATION": str(folder.resolve())}
    return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}


def password_hasher() -> PasswordHasher:
    from openanomaly.adapters.passwords import DjangoPasswordHasher

    return DjangoPasswordHasher()


def mongo_database(config: AppConfig) -> Any:
    try:
        import pymongo
    except ImportError as exc:
        raise MissingExtra("store.kind mongo needs the mongo extra: pip install "
                           "'openanomaly[mongo]'") from exc
    assert config.mongo.url is not None, "AppConfig requires mongo.url for store.kind mongo"
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        config.mongo.url, serverSelectionTimeoutMS=10_000)
    return client[config.mongo.database]


def build_engine(config: AppConfig, telemetry: ModelTelemetry | None = None) -> LocalModelEngine:
    return LocalModelEngine(config.models, cache_mb=config.inference.cache_mb,
                            telemetry=telemetry)


def check_models_installed(config: AppConfig) -> None:
    """MissingExtra naming every configured model whose optional packages are missing,
    found without importing them (`check-config`)."""
    check_available(config.models)


def check_prometheus_tls(config: AppConfig) -> None:
    """ConfigError when a TLS file of the prometheus settings (CA, client certificate or
    key) cannot be loaded, found without connecting (`check-config`)."""
    tls_context(config.prometheus)


def bootstrap(
    config: AppConfig, *, tsdb: TSDBClient | None = None, engine: ModelEngine | None = None,
    store: ConfigStore | None = None, telemetry: PrometheusTelemetry | None = None,
) -> App:
    """The embedded service and the one-off commands: every adapter in this process.
    ``telemetry``: the self-monitoring of a long-running process (runs and models)."""
    return App(
        config=config,
        tsdb=tsdb if tsdb is not None else PrometheusAdapter(config.prometheus),
        engine=engine if engine is not None else build_engine(config, telemetry),
        store=store if store is not None else build_store(config),
        telemetry=telemetry,
    )


# -- the distributed deployment -------------------------------------------------------------

# A claim outlives the hard time limit by this much, so a live task never loses its slot
# while a killed one frees it soon after.
CLAIM_MARGIN_S = 60


def redis_ledger(config: AppConfig) -> SlotLedger:
    from openanomaly.adapters.redis_connection import redis_client
    from openanomaly.adapters.scheduler.slot_ledger import RedisSlotLedger

    return RedisSlotLedger(redis_client(config.redis))


def local_redis(binary: str | None = None) -> LocalRedis:
    """A redis-server of a benchmark's own, started on a free port when entered."""
    from openanomaly.adapters.local_redis import LocalRedis

    return LocalRedis(binary)


def redis_memory_peak(config: AppConfig) -> int:
    """The peak memory (``used_memory_peak``, bytes) of the Redis that holds what workers
    hand each other."""
    client = _handover_client(config)
    try:
        return int(client.info("memory")["used_memory_peak"])
    finally:
        client.close()


def claim_ttl_ms(config: AppConfig) -> int:
    return int((config.scheduler.task_time_limit + CLAIM_MARGIN_S) * 1000)


def _handover_ttl_ms(config: AppConfig) -> int:
    # What workers hand each other in Redis stays as long as a missed slot is still
    # caught up, and at least as long as the claim of the worker that read it.
    return max(claim_ttl_ms(config), int(config.scheduler.catch_up_horizon * 1000))


def _handover_client(config: AppConfig) -> redis.Redis:
    from openanomaly.adapters.redis_connection import redis_client

    settings = config.redis
    if settings.handover_url is not None:
        settings = settings.model_copy(update={"url": settings.handover_url})
    return redis_client(settings)


def redis_shard_store(config: AppConfig) -> ShardStore:
    from openanomaly.adapters.scheduler.shard_store import RedisShardStore

    return RedisShardStore(_handover_client(config), _handover_ttl_ms(config))


def redis_context_store(config: AppConfig) -> ContextStore:
    from openanomaly.adapters.scheduler.context_store import RedisContextStore

    return RedisContextStore(_handover_client(config), _handover_ttl_ms(config))


@dataclass
class Worker:
    """A Celery worker process: the App's adapters plus the shared slot ledger and the
    store that hands sharded slots' data between workers."""

    app: App
    ledger: SlotLedger
    shards: ShardStore | None = None
    """None: slots are never split (scheduler.shard_series is null)."""

    @property
    def claim_ttl_ms(self) -> int:
        return claim_ttl_ms(self.app.config)

    def execute(self, delivery: slot_workflow.Delivery,
                send_shard: shard_workflow.SendShard | None = None) -> dict[str, Any]:
        series = self.app.config.scheduler.shard_series
        sharding = (shard_workflow.Sharding(series, self.shards, send_shard)
                    if series is not None and self.shards is not None
                    and send_shard is not None else None)
        return slot_workflow.execute_slot(delivery, self.app.store, self.ledger, self.app.tsdb,
                                          self.app.engine, self.claim_ttl_ms,
                                          run_log=self.app.run_log,
                                          telemetry=self.app.telemetry,
                                          contexts=self.app.contexts, sharding=sharding)

    def execute_shard(self, task: shard_workflow.ShardTask, task_id: str, retries: int,
                      max_retries: int) -> dict[str, Any]:
        if self.shards is None:
            raise ConfigError("this worker splits no slots (scheduler.shard_series is null) "
                              "but got a shard's task; give every worker the same config")
        return shard_workflow.execute_shard(
            task, task_id, retries, max_retries, self.app.store, self.ledger, self.shards,
            self.app.tsdb, self.app.engine, self.claim_ttl_ms, run_log=self.app.run_log,
            telemetry=self.app.telemetry)

    def dispatch(self, pipeline: str, send: slot_workflow.SendRun,
                 task_id: str = "") -> dict[str, Any]:
        horizon_ms = int(self.app.config.scheduler.catch_up_horizon * 1000)
        return slot_workflow.dispatch(pipeline, self.app.store, self.ledger, horizon_ms, send,
                                      task_id, telemetry=self.app.telemetry)

    def close(self) -> None:
        self.app.close()


def bootstrap_worker(
    config: AppConfig, *, tsdb: TSDBClient | None = None, engine: ModelEngine | None = None,
    store: ConfigStore | None = None, ledger: SlotLedger | None = None,
    telemetry: PrometheusTelemetry | None = None, shards: ShardStore | None = None,
) -> Worker:
    app = bootstrap(config, tsdb=tsdb, engine=engine, store=store, telemetry=telemetry)
    if config.scheduler.share_contexts:
        app.contexts = ContextCache(shared=redis_context_store(config))
    if shards is None and config.scheduler.shard_series is not None:
        shards = redis_shard_store(config)
    return Worker(app, ledger if ledger is not None else redis_ledger(config), shards)


def scheduler_readiness(config: AppConfig) -> Callable[[], None]:
    """/readyz of a worker or a beat: Redis (broker and ledger) and the store answer."""
    from openanomaly.adapters.redis_connection import redis_client

    client = redis_client(config.redis)
    store = build_store(config)

    def ready() -> None:
        client.ping()
        store.list_pipelines()

    return ready


def bootstrap_beat(config: AppConfig, *, store: ConfigStore | None = None) -> ConfigStore:
    """Beat needs only the pipeline store it reconciles RedBeat's entries with."""
    return store if store is not None else build_store(config)


@dataclass
class StatusSources:
    """What `openanomaly status` reads: Redis (beat lock, queue) and the slot ledger."""

    client: redis.Redis
    ledger: SlotLedger


def bootstrap_status(config: AppConfig) -> StatusSources:
    from openanomaly.adapters.redis_connection import redis_client
    from openanomaly.adapters.scheduler.slot_ledger import RedisSlotLedger

    client = redis_client(config.redis)
    return StatusSources(client, RedisSlotLedger(client))


# -- the model server, benchmarks and the demo ----------------------------------------------

def model_server_engine(config: AppConfig) -> LocalModelEngine:
    """The models `serve-model` serves, within the configured cache."""
    return build_engine(config)


def benchmark_engine(models: dict[str, ModelSettings]) -> LocalModelEngine:
    """An engine for a benchmark run outside any configured service."""
    return LocalModelEngine(models)


def replay_engine(models: dict[str, ModelSettings], cache: Path | None) -> ModelEngine:
    """The engine of a benchmark replay; with ``cache``, its forecasts are kept in that
    folder and reused by later replays of the same contexts with the same settings."""
    engine = benchmark_engine(models)
    if cache is None:
        return engine
    from openanomaly.adapters.models.forecast_cache import CachingEngine

    return CachingEngine(engine, cache, {name: repr(s) for name, s in models.items()})


def benchmark_tsdb(url: str, timeout_s: float = 300.0) -> PrometheusAdapter:
    """A database client for a benchmark: the given URL, with time for a whole fleet's
    answers."""
    from openanomaly.adapters.tsdb.settings import PrometheusSettings

    return PrometheusAdapter(PrometheusSettings(url=url, timeout=timeout_s))


def remote_engine(url: str, token: str | None = None, timeout_s: float = 600.0) -> ModelEngine:
    """A client of a model server, for a benchmark."""
    from openanomaly.adapters.models.remote_engine import RemoteModelEngine

    return RemoteModelEngine(url, token=token, timeout=timeout_s, max_retries=0)


def benchmark_model(name: str, config: AppConfig | None, device: str | None, folder: Path,
                    batch: int) -> tuple[ModelSettings, str]:
    """A benchmarked model's settings and where its weights come from (configured,
    bundled, or a randomly initialised checkpoint built in ``folder``)."""
    from openanomaly.adapters.models.presets import resolve

    return resolve(name, config.models if config is not None else {}, device, folder, batch)


def nab_corpus(folder: Path) -> list[NabFile]:
    """The labelled files of a NAB folder (data/ and labels/combined_windows.json)."""
    return load_corpus(folder)


def demo_prometheus(data_dir: Path | None, binary: str) -> LocalPrometheus:
    """A Prometheus of the demo's own, started on a free port when entered."""
    return LocalPrometheus(data_dir, binary=binary)

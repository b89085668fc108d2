"""The ports. Services depend on these protocols only; adapters implement them.

| port          | adapters                                                         |
| ------------- | ---------------------------------------------------------------- |
| TSDBClient    | adapters.tsdb.prometheus.PrometheusAdapter                       |
| ModelEngine   | adapters.models.local_engine.LocalModelEngine,                   |
|               | adapters.models.remote_engine.RemoteModelEngine                  |
| ConfigStore   | adapters.config.yaml_store.YamlConfigStore (read-only)           |
| PipelineStore | adapters.config.sqlite_store.SqliteStore,                        |
| UserStore     | adapters.config.mongo_store.MongoStore                           |
| Scheduler     | adapters.scheduler.embedded.EmbeddedScheduler (Celery beat runs  |
|               | the distributed schedule: adapters.scheduler.redbeat_leader)     |
| SlotLedger    | adapters.scheduler.slot_ledger.RedisSlotLedger,                  |
|               | adapters.scheduler.sqlite_ledger.SqliteSlotLedger (embedded)     |
| ShardStore    | adapters.scheduler.shard_store.RedisShardStore (celery)          |
| ContextStore  | adapters.scheduler.context_store.RedisContextStore (celery)      |
| RunLog        | every store above (the YAML store keeps it in this process only) |
| Telemetry     | adapters.telemetry.PrometheusTelemetry                           |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from openanomaly.domain.detection import StoredScoreStats
from openanomaly.domain.forecast import ForecastRequest, QuantileForecast
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.run_state import RunState
from openanomaly.domain.series import Series, SeriesBatch
from openanomaly.domain.shards import ShardData
from openanomaly.domain.slots import SlotStatus
from openanomaly.domain.store import ApiToken, Role, StoredPipeline, User


class TSDBClient(Protocol):
    def query_range(self, query: str, start_ms: int, end_ms: int, step_ms: int, *,
                    max_series: int | None = None) -> list[Series]:
        """Evaluate PromQL over [start, end] at ``step``; every label kept, gaps left out.

        ``max_series`` bounds what the caller accepts, so an adapter can refuse an answer
        too large for it (ResponseTooLarge) before holding it in memory."""
        ...

    def write(self, series: Sequence[Series]) -> None:
        """Push samples with remote write. Raises TSDBError subclasses on failure."""
        ...

    def ping(self) -> None:
        """Check once that the database answers; TSDBError subclasses when it does not."""
        ...

    def read_written(self, metric: str, pipeline: str, start_ms: int, end_ms: int,
                     step_ms: int, *, max_series: int | None = None) -> list[Series]:
        """The samples of ``metric`` (full name) that ``pipeline`` wrote, on the step grid
        of [start, end]; labels without ``__name__`` may be kept or not. ``max_series``
        as for query_range."""
        ...

    def peak_written(self, metric: str, pipeline: str, start_ms: int, end_ms: int,
                     step_ms: int) -> Series | None:
        """The largest value of ``metric`` any series of ``pipeline`` had within each step
        of [start, end] (a trend line for the UI); None when it wrote nothing there."""
        ...

    def score_stats(self, metric: str, pipeline: str, at_ms: int, quantile: float,
                    quantile_window_ms: int, peak_window_ms: int | None, *,
                    max_series: int | None = None,
                    tail_levels: Sequence[float] = (),
                    recurring: tuple[int, int] | None = None,
                    recent_levels: Sequence[float] = (),
                    recent_below: int | None = None) -> list[StoredScoreStats]:
        """Per series of ``metric`` written by ``pipeline``: the ``quantile`` of its samples
        in (at - quantile_window, at] and their maximum in (at - peak_window, at] (NaN
        without a peak window), computed by the database; with ``tail_levels``, also those
        quantiles and the number of samples over the quantile window; with ``recurring``
        (end_ms, window_ms), also their maximum in (end - window, end]; with
        ``recent_levels`` (and a peak window), also those quantiles and the number of
        samples over the peak window, for the series with fewer than ``recent_below``
        samples there (NaN for the others; every series without it). ``max_series`` as
        for query_range."""
        ...


class ModelEngine(Protocol):
    def forecast(self, model: str, request: ForecastRequest) -> QuantileForecast:
        """Quantile forecasts for every series of the request, in one call."""
        ...


class ConfigStore(Protocol):
    def list_pipelines(self) -> list[PipelineSpec]:
        ...

    def get_pipeline(self, name: str) -> PipelineSpec:
        """Raises UnknownPipeline when no pipeline has that name."""
        ...

    def refresh(self) -> bool:
        """Pick up changes made since the last call; True when the pipelines changed.
        Lets a scheduler react at once instead of at its next periodic sync."""
        ...


class Telemetry(Protocol):
    """What a process reports about its own work (self-monitoring): the runs it made, where
    their time went, how late they started and which slots it caught up or gave up."""

    def observe_run(self, pipeline: str, outcome: str, seconds: float,
                    stage_seconds: Mapping[str, float], series: int,
                    samples_written: int) -> None:
        """``outcome``: the run's status (ok, partial, ...) or ``failed``."""
        ...

    def observe_error(self, component: str, kind: str) -> None:
        """A failure of ``component`` (tsdb, model, store, run) of type ``kind``."""
        ...

    def observe_lag(self, pipeline: str, seconds: float) -> None:
        """How late a scheduled run started against its slot plus delay."""
        ...

    def observe_slots(self, pipeline: str, caught_up: int, missed: int) -> None:
        """Slots run late to catch up, and slots beyond the horizon never run."""
        ...


class ModelTelemetry(Protocol):
    """What a model engine reports: how long models take to load and what its cache holds."""

    def observe_model_load(self, model: str, seconds: float) -> None:
        ...

    def observe_model_cache(self, models: int, size_bytes: int) -> None:
        ...


class BeatTelemetry(Protocol):
    """What a beat reports: whether it leads, how long reconciling took, the queue."""

    def observe_leadership(self, leader: bool) -> None:
        ...

    def observe_reconcile(self, seconds: float) -> None:
        ...

    def observe_queue(self, queue: str, messages: int) -> None:
        ...


class RunLog(Protocol):
    """The last run of each pipeline, whichever process ran it."""

    def record_run(self, state: RunState) -> None:
        """Replace the pipeline's run state with ``state``."""
        ...

    def run_state(self, pipeline: str) -> RunState | None:
        ...

    def run_states(self) -> dict[str, RunState]:
        ...


class PipelineStore(ConfigStore, RunLog, Protocol):
    """A ConfigStore that can also change pipelines; every change raises the pipeline's
    version by one and is seen by ``refresh()`` in every process using the store."""

    def list_stored(self) -> list[StoredPipeline]:
        ...

    def get_stored(self, name: str) -> StoredPipeline:
        """Raises UnknownPipeline."""
        ...

    def create(self, spec: PipelineSpec) -> StoredPipeline:
        """Raises AlreadyExists when the name is taken."""
        ...

    def update(self, spec: PipelineSpec, version: int) -> StoredPipeline:
        """Replace the pipeline named ``spec.name``, last read at ``version``. Raises
        VersionConflict when it changed since, UnknownPipeline when it is gone."""
        ...

    def delete(self, name: str, version: int | None = None) -> None:
        """Raises UnknownPipeline; VersionConflict when ``version`` is given and stale."""
        ...


class UserStore(Protocol):
    def create_user(self, name: str, role: Role, password_hash: str) -> User:
        """Raises AlreadyExists."""
        ...

    def get_user(self, name: str) -> User:
        """Raises UnknownUser."""
        ...

    def list_users(self) -> list[User]:
        ...

    def update_user(self, name: str, role: Role | None = None,
                    password_hash: str | None = None) -> User:
        ...

    def delete_user(self, name: str) -> None:
        """Deletes the user's tokens too."""
        ...

    def add_token(self, user: str, name: str, token_hash: str) -> ApiToken:
        ...

    def token_by_hash(self, token_hash: str) -> ApiToken | None:
        ...

    def list_tokens(self, user: str | None = None) -> list[ApiToken]:
        ...

    def touch_token(self, token_id: str, at_ms: int) -> None:
        """Record a use of the token."""
        ...

    def revoke_token(self, token_id: str) -> None:
        """Raises UnknownUser when no token has that id."""
        ...


RunPipeline = Callable[[PipelineSpec, int], object]
"""What a scheduler calls for each due slot: the pipeline and the slot time in ms."""


class Scheduler(Protocol):
    def run(self, run_pipeline: RunPipeline) -> None:
        """Run every enabled pipeline on its schedule until ``stop`` is called."""
        ...

    def stop(self) -> None:
        ...


class SlotLedger(Protocol):
    """Which slots of which pipeline are claimed, done or failed, shared by every worker.

    ``pipeline`` is a bookkeeping key: the pipeline's name, or ``name/mode`` for runs of
    another mode than the pipeline's own.
    """

    def claim(self, pipeline: str, slot_ms: int, worker: str, ttl_ms: int) -> bool:
        """True when ``worker`` now holds the slot; False when someone else does. The claim
        expires after ``ttl_ms`` so a dead worker frees its slot."""
        ...

    def claimed_by(self, pipeline: str, slot_ms: int) -> str | None:
        ...

    def release(self, pipeline: str, slot_ms: int, worker: str) -> bool:
        """Drop ``worker``'s claim; False when it no longer held it."""
        ...

    def done(self, pipeline: str, slot_ms: int) -> bool:
        ...

    def complete(self, pipeline: str, slot_ms: int, worker: str = "") -> int:
        """Mark the slot done, move last-completed forward (never back), clear the last
        error and drop ``worker``'s claim; returns last-completed."""
        ...

    def last_completed(self, pipeline: str) -> int | None:
        ...

    def record_error(self, pipeline: str, slot_ms: int, error: BaseException) -> None:
        """Keep the latest failure (slot, type and message) until the next success."""
        ...

    def last_error(self, pipeline: str) -> dict[str, str] | None:
        ...

    def record_skipped(self, pipeline: str, count: int) -> None:
        """Count slots that were missed and are too old to run."""
        ...

    def skipped(self, pipeline: str) -> int:
        ...

    def status(self, pipeline: str) -> SlotStatus:
        """Everything the ledger holds for ``pipeline``, for `openanomaly status`."""
        ...


class ShardStore(Protocol):
    """The data of each shard of a sharded slot, handed from the worker that read the slot
    to the workers that score its shards. ``pipeline`` is the slot's ledger key."""

    def plan(self, pipeline: str, slot_ms: int, count: int) -> int:
        """The slot's shard count: ``count``, unless the slot was split before, whose
        count stands (a series must stay in the shard it was first given to)."""
        ...

    def put(self, pipeline: str, slot_ms: int, index: int, data: ShardData) -> None:
        ...

    def get(self, pipeline: str, slot_ms: int, index: int) -> ShardData | None:
        """None once the data expired or its shard was scored."""
        ...

    def finish(self, pipeline: str, slot_ms: int, index: int,
               summary: dict[str, Any]) -> None:
        """Keep a scored shard's summary and drop its data."""
        ...

    def summaries(self, pipeline: str, slot_ms: int) -> dict[int, dict[str, Any]]:
        ...

    def forget(self, pipeline: str, slot_ms: int) -> None:
        """Drop what is left of a completed slot."""
        ...


class ContextStore(Protocol):
    """Each pipeline's latest context, shared by the processes that run it, so that any
    of them reads only the steps since (services/context_cache.py)."""

    def latest(self, pipeline: str) -> int | None:
        """The last timestamp of the stored context; None when there is none."""
        ...

    def get(self, pipeline: str, query: str, step_ms: int) -> SeriesBatch | None:
        """The stored context, if it was read for this query and step."""
        ...

    def put(self, pipeline: str, query: str, step_ms: int, batch: SeriesBatch) -> None:
        ...

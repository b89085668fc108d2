"""The composition root: reads AppConfig and wires adapters to services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from openanomaly.adapters.config.yaml_store import YamlConfigStore
from openanomaly.adapters.models.local_engine import LocalModelEngine
from openanomaly.adapters.scheduler.embedded import EmbeddedScheduler
from openanomaly.adapters.tsdb.prometheus import PrometheusAdapter
from openanomaly.config import AppConfig, load_config
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.ports import ConfigStore, ModelEngine, Scheduler, TSDBClient
from openanomaly.services import backfill as backfill_service
from openanomaly.services import runs
from openanomaly.services.runs import RunResult


@dataclass
class App:
    config: AppConfig
    tsdb: TSDBClient
    engine: ModelEngine
    store: ConfigStore

    def run(self, spec: PipelineSpec, at_ms: int) -> RunResult:
        return runs.run_pipeline(spec, at_ms, self.tsdb, self.engine)

    def backfill(
        self, spec: PipelineSpec, start_ms: int, end_ms: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> RunResult:
        return backfill_service.backfill(spec, start_ms, end_ms, self.tsdb, self.engine, progress)

    def scheduler(self) -> Scheduler:
        return EmbeddedScheduler(self.store, max_workers=self.config.scheduler.max_workers)

    def close(self) -> None:
        close = getattr(self.tsdb, "close", None)
        if close is not None:
            close()


def build_store(config: AppConfig) -> ConfigStore:
    if not config.source_files:
        return YamlConfigStore(config.pipelines)
    path = config.source_files[0]
    return YamlConfigStore(config.pipelines, files=config.source_files,
                           reload=lambda: load_config(path).pipelines)


def build_app(config: AppConfig) -> App:
    return App(
        config=config,
        tsdb=PrometheusAdapter(config.prometheus),
        engine=LocalModelEngine(config.models, cache_mb=config.inference.cache_mb),
        store=build_store(config),
    )


def load_app(path: str | Path | None = None) -> App:
    return build_app(load_config(path))

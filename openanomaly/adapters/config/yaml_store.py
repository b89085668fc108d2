"""Pipelines from the YAML configuration: tests, GitOps and the single-machine default."""

from __future__ import annotations

from collections.abc import Iterable

from openanomaly.domain.errors import UnknownPipeline
from openanomaly.domain.pipeline import PipelineSpec


class YamlConfigStore:
    def __init__(self, pipelines: Iterable[PipelineSpec]) -> None:
        self._pipelines = {pipeline.name: pipeline for pipeline in pipelines}

    def list_pipelines(self) -> list[PipelineSpec]:
        return list(self._pipelines.values())

    def get_pipeline(self, name: str) -> PipelineSpec:
        try:
            return self._pipelines[name]
        except KeyError:
            known = ", ".join(sorted(self._pipelines)) or "none configured"
            raise UnknownPipeline(f"unknown pipeline {name!r}; pipelines: {known}") from None

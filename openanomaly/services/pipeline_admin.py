"""Moving pipelines between YAML and a database store (`openanomaly pipelines`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from openanomaly.domain.errors import ConfigError, UnknownPipeline
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.timeutil import format_duration
from openanomaly.ports import PipelineStore

# Fields written as durations ("5m", "7d") in YAML; stored as seconds.
_DURATIONS = {"step", "context", "horizon", "check_window", "delay"}
_SCORING_DURATIONS = {"calibration_window", "suppression_window"}


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def check_models(specs: Sequence[PipelineSpec], models: Collection[str]) -> None:
    """Refuse pipelines naming a model this installation does not configure."""
    for spec in specs:
        if spec.model not in models:
            raise ConfigError(f"pipeline {spec.name!r}: unknown model {spec.model!r}; "
                              f"configured models: {', '.join(sorted(models))}")


def apply_pipelines(store: PipelineStore, specs: Sequence[PipelineSpec]) -> ApplyReport:
    """Create the new pipelines and update the changed ones; others stay as they are."""
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"pipelines named more than once: {', '.join(duplicates)}")
    report = ApplyReport()
    for spec in specs:
        try:
            stored = store.get_stored(spec.name)
        except UnknownPipeline:
            store.create(spec)
            report.created.append(spec.name)
            continue
        if stored.spec == spec:
            report.unchanged.append(spec.name)
        else:
            store.update(spec, stored.version)
            report.updated.append(spec.name)
    return report


def export_document(spec: PipelineSpec) -> dict[str, Any]:
    """The spec as a user writes it: only what differs from the defaults, durations
    spelled like Prometheus' (``5m``)."""
    document = spec.model_dump(mode="json", exclude_defaults=True)
    for key in _DURATIONS & document.keys():
        document[key] = format_duration(document[key])
    scoring = document.get("scoring", {})
    for key in _SCORING_DURATIONS & scoring.keys():
        if scoring[key] is not None:
            scoring[key] = format_duration(scoring[key])
    return document

"""Pipelines from the YAML configuration: tests, GitOps and the single-machine default.

A store built from files watches them: an edit is picked up by the next read (checked at
most once a second), so beat and workers follow a changed pipelines file without a
restart. An edit that does not validate is logged and the previous pipelines stay in use.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from openanomaly.domain.errors import ConfigError, ReadOnlyStore, UnknownPipeline
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.run_state import RunState
from openanomaly.domain.store import StoredPipeline

log = logging.getLogger(__name__)

Reload = Callable[[], Iterable[PipelineSpec]]
_Signature = tuple[tuple[str, int, int], ...]


def _signature(files: Sequence[Path]) -> _Signature:
    stamps = []
    for file in files:
        try:
            stat = file.stat()
            stamps.append((str(file), stat.st_mtime_ns, stat.st_size))
        except OSError:
            # A file being replaced (editors, ConfigMap updates) is briefly missing.
            stamps.append((str(file), -1, -1))
    return tuple(stamps)


class YamlConfigStore:
    def __init__(
        self, pipelines: Iterable[PipelineSpec], files: Sequence[Path] = (),
        reload: Reload | None = None, check_every_s: float = 1.0,
    ) -> None:
        self._pipelines = {pipeline.name: pipeline for pipeline in pipelines}
        self._files = tuple(files)
        self._reload = reload
        self._check_every_s = check_every_s
        self._seen = _signature(self._files)
        self._checked_at = time.monotonic()
        self._changed = False
        self._lock = threading.Lock()
        # Run states have no file to go to: this process's runs only.
        self._runs: dict[str, RunState] = {}

    def list_pipelines(self) -> list[PipelineSpec]:
        self._maybe_reload()
        return list(self._pipelines.values())

    def get_pipeline(self, name: str) -> PipelineSpec:
        self._maybe_reload()
        try:
            return self._pipelines[name]
        except KeyError:
            known = ", ".join(sorted(self._pipelines)) or "none configured"
            raise UnknownPipeline(f"unknown pipeline {name!r}; pipelines: {known}") from None

    def record_run(self, state: RunState) -> None:
        self._runs[state.pipeline] = state

    def run_state(self, pipeline: str) -> RunState | None:
        return self._runs.get(pipeline)

    def run_states(self) -> dict[str, RunState]:
        return dict(self._runs)

    def list_stored(self) -> list[StoredPipeline]:
        return [StoredPipeline(spec, 1, 0) for spec in self.list_pipelines()]

    def get_stored(self, name: str) -> StoredPipeline:
        return StoredPipeline(self.get_pipeline(name), 1, 0)

    def create(self, spec: PipelineSpec) -> StoredPipeline:
        raise self._read_only()

    def update(self, spec: PipelineSpec, version: int) -> StoredPipeline:
        raise self._read_only()

    def delete(self, name: str, version: int | None = None) -> None:
        raise self._read_only()

    def _read_only(self) -> ReadOnlyStore:
        where = ", ".join(str(file) for file in self._files) or "the configuration"
        return ReadOnlyStore(
            f"pipelines come from {where} and are read-only here: edit the file (it is "
            "reloaded while running), or set store.kind to sqlite or mongo and move them "
            "there with `openanomaly pipelines import`")

    def refresh(self) -> bool:
        """Reload now if the files changed; True when the pipelines changed since the last
        call to refresh."""
        self._maybe_reload(force=True)
        with self._lock:
            changed, self._changed = self._changed, False
        return changed

    def _maybe_reload(self, force: bool = False) -> None:
        if self._reload is None:
            return
        with self._lock:
            now = time.monotonic()
            if not force and now - self._checked_at < self._check_every_s:
                return
            self._checked_at = now
            signature = _signature(self._files)
            if signature == self._seen:
                return
            self._seen = signature
            try:
                pipelines = {p.name: p for p in self._reload()}
            except ConfigError as exc:
                log.error("changed pipelines do not validate; keeping the previous ones",
                          extra={"error": str(exc)})
                return
            if pipelines != self._pipelines:
                self._pipelines = pipelines
                self._changed = True
                log.info("pipelines reloaded", extra={"pipelines": len(pipelines)})

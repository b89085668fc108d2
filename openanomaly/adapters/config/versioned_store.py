"""What the database stores share: the ConfigStore half of PipelineStore, on top of their
stored pipelines and a change counter every change raises."""

from __future__ import annotations

from abc import ABC, abstractmethod

from openanomaly.domain.errors import UnknownPipeline, VersionConflict
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.store import StoredPipeline


class VersionedStore(ABC):
    _seen_changes: int = 0

    @abstractmethod
    def list_stored(self) -> list[StoredPipeline]: ...

    @abstractmethod
    def get_stored(self, name: str) -> StoredPipeline: ...

    @abstractmethod
    def _changes(self) -> int:
        """The change counter, read from the database."""

    @abstractmethod
    def _version_of(self, name: str) -> int | None:
        """The stored version of pipeline ``name``; None when there is none."""

    @abstractmethod
    def _names(self) -> list[str]:
        """Every stored pipeline's name, sorted."""

    def _why_not(self, name: str, version: int | None) -> UnknownPipeline | VersionConflict:
        """Why a change of ``name`` made against ``version`` matched nothing."""
        current = self._version_of(name)
        if current is None:
            return self._unknown(name)
        return VersionConflict(
            f"pipeline {name!r} changed since version {version} (it is at version "
            f"{current}); reload it and apply the change again")

    def _unknown(self, name: str) -> UnknownPipeline:
        return UnknownPipeline(
            f"unknown pipeline {name!r}; pipelines: {', '.join(self._names()) or 'none stored'}")

    def list_pipelines(self) -> list[PipelineSpec]:
        return [stored.spec for stored in self.list_stored()]

    def get_pipeline(self, name: str) -> PipelineSpec:
        return self.get_stored(name).spec

    def refresh(self) -> bool:
        """True when the pipelines changed (in any process) since the last call."""
        changes = self._changes()
        changed, self._seen_changes = changes != self._seen_changes, changes
        return changed

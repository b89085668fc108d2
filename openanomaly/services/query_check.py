"""Evaluate each pipeline's query once, so a query the database cannot parse, or one that
finds nothing, shows at `check-config --connect` instead of at the first scheduled run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from openanomaly.domain.errors import TSDBError, TSDBUnavailable
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.timeutil import align_down
from openanomaly.ports import TSDBClient


@dataclass(frozen=True)
class QueryCheck:
    pipeline: str
    series: int = 0
    error: str | None = None

    @property
    def empty(self) -> bool:
        return self.error is None and self.series == 0


def check_queries(specs: Sequence[PipelineSpec], tsdb: TSDBClient, at_ms: int,
                  ) -> list[QueryCheck]:
    """Each pipeline's query evaluated at ``at`` (aligned to its step), as a run would.

    A query the database rejects or answers badly, or one returning more than the
    pipeline's max_series, is that pipeline's error; an unreachable database is raised
    (TSDBUnavailable), since no query can be checked then.
    """
    checks = []
    for spec in specs:
        at = align_down(at_ms, spec.step_ms)
        try:
            # A one-step range is an instant evaluation on the code path runs take.
            found = tsdb.query_range(spec.query, at, at, spec.step_ms,
                                     max_series=spec.max_series)
        except TSDBUnavailable:
            raise
        except TSDBError as exc:
            checks.append(QueryCheck(spec.name, error=str(exc)))
            continue
        if len(found) > spec.max_series:
            checks.append(QueryCheck(spec.name, len(found), (
                f"the query returns {len(found)} series, more than max_series="
                f"{spec.max_series}; narrow the query or raise max_series")))
        else:
            checks.append(QueryCheck(spec.name, len(found)))
    return checks

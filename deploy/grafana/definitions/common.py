"""What every dashboard shares: the data source variable, query targets, panel layout,
and the step from SDK builders to the JSON that Grafana imports."""

from __future__ import annotations

import json
import string
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    GridPos,
    VariableOption,
    VariableRefresh,
)

# Panels name the data source through a variable, so the dashboards work in any Grafana;
# its default is the uid the Compose deployment provisions its Prometheus under.
DEFAULT_DATASOURCE_UID = "prometheus"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
GRID_WIDTH = 24


def datasource_variable() -> db.DatasourceVariable:
    return (
        db.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(VariableOption(selected=True, text=DEFAULT_DATASOURCE_UID,
                                value=DEFAULT_DATASOURCE_UID))
    )


def label_variable(name: str, label: str, selector: str, *, multi: bool = False,
                   all_value: str | None = None) -> db.QueryVariable:
    """A variable listing the values of ``label`` on the series ``selector`` matches.

    ``all_value`` is a regex standing for "All": ``multi`` variables are used with ``=~``.
    """
    variable = (
        db.QueryVariable(name)
        .label(name.replace("_", " "))
        .datasource(DATASOURCE)
        .query(f"label_values({selector}, {label})")
        # Refreshed with the time range: pipelines come and go.
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(1)
    )
    if multi:
        variable = variable.multi(True).include_all(True)
        if all_value is not None:
            variable = variable.all_value(all_value)
    return variable


def target(expr: str, legend: str = "", *, instant: bool = False,
           table: bool = False) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).legend_format(legend or "__auto")
    query = query.instant() if instant else query.range()
    if table:
        query = query.format("table")
    return query


def with_ref_ids(targets: list[prometheus.Dataquery]) -> list[prometheus.Dataquery]:
    """Name the targets A, B, C...: overrides and transformations refer to them so."""
    return [t.ref_id(string.ascii_uppercase[i]) for i, t in enumerate(targets)]


def histogram_quantile(quantile: float, metric: str, by: str, matchers: str) -> str:
    """The ``quantile`` of a histogram's observations per ``by`` over the rate window."""
    group = f"le, {by}" if by else "le"
    return (f"histogram_quantile({quantile:g}, sum by ({group}) "
            f"(rate({metric}_bucket{{{matchers}}}[$__rate_interval])))")


class Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping into new lines,
    so a dashboard lists its panels in reading order instead of coordinates."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.line_height = 0

    def place(self, panel: Any, width: int, height: int) -> Any:
        if self.x + width > GRID_WIDTH:
            self.newline()
        panel = panel.grid_pos(GridPos(h=height, w=width, x=self.x, y=self.y))
        self.x += width
        self.line_height = max(self.line_height, height)
        return panel

    def row(self, row: db.Row) -> db.Row:
        self.newline()
        row = row.grid_pos(GridPos(h=1, w=GRID_WIDTH, x=0, y=self.y))
        self.y += 1
        return row

    def newline(self) -> None:
        self.y += self.line_height
        self.x = 0
        self.line_height = 0


def to_json(dashboard: Builder[Any], annotation_fields: dict[str, Any] | None = None) -> str:
    """The dashboard as Grafana's JSON model, stable from run to run (committed, diffed).

    ``annotation_fields`` adds Prometheus annotation options the SDK does not model
    (title format, step), keyed by annotation name.
    """
    model = json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))
    for annotation in model.get("annotations", {}).get("list", []):
        annotation.update((annotation_fields or {}).get(annotation["name"], {}))
    return json.dumps(model, indent=2, sort_keys=True) + "\n"

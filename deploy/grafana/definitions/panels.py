"""Panel kinds the dashboards use, with the options every one of them shares."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
)

from .common import DATASOURCE, with_ref_ids


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    """Colour steps: ``(None, base colour)`` first, then ``(from value, colour)``."""
    return (db.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE)
            .steps([Threshold(value=value, color=color) for value, color in steps]))


def timeseries_panel(title: str, description: str, targets: list[prometheus.Dataquery],
                     unit: str = "short") -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(with_ref_ids(targets))
        .unit(unit)
        .line_width(1)
        .fill_opacity(8)
        .show_points(common.VisibilityMode.NEVER)
        # Gaps are real (a run that wrote nothing), so they stay visible.
        .span_nulls(False)
        .legend(cb.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM).show_legend(True))
        .tooltip(cb.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                 .sort(common.SortOrder.DESCENDING))
    )


def stat_panel(title: str, description: str, expr: str, unit: str = "short",
               colours: db.ThresholdsConfig | None = None) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(with_ref_ids([prometheus.Dataquery().expr(expr).instant()
                               .legend_format("__auto")]))
        .unit(unit)
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    return panel.thresholds(colours or thresholds((None, "green")))


def table_panel(title: str, description: str, expr: str, unit: str = "short",
                sort_by: str = "Value") -> table.Panel:
    """An instant query as a table: one row per series, its labels as columns."""
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(with_ref_ids([prometheus.Dataquery().expr(expr).instant()
                               .format("table").legend_format("__auto")]))
        .unit(unit)
        .sort_by([cb.TableSortByFieldState().display_name(sort_by).desc(True)])
        # The evaluation time is the same on every row.
        .override_by_name("Time", [DynamicConfigValue(id_val="custom.hidden", value=True)])
    )


def ratio_bars(title: str, description: str, expr: str, legend: str) -> bargauge.Panel:
    """One horizontal bar per series of a 0..1 ratio, red below 0.9, green from 0.99."""
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(with_ref_ids([prometheus.Dataquery().expr(expr).instant()
                               .legend_format(legend)]))
        .unit("percentunit")
        .min(0)
        .max(1)
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.BASIC)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(thresholds((None, "red"), (0.9, "orange"), (0.99, "green")))
    )

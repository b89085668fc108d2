"""Overview: are the pipelines running, and what is anomalous right now."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from .common import Layout, datasource_variable, histogram_quantile, label_variable, target
from .panels import ratio_bars, stat_panel, table_panel, thresholds, timeseries_panel

UID = "openanomaly-overview"
# Pipelines appear in the service's run counters and in what they write; one that always
# fails writes nothing, one scraped nowhere still writes, so the variable reads both.
NAMES = '__name__=~"openanomaly_runs_total|openanomaly_anomaly_score"'
PIPELINE_SOURCES = "{" + NAMES + "}"
P = 'pipeline=~"$pipeline"'
RUNS = f"openanomaly_runs_total{{{P}}}"
# A run that wrote what it could is healthy; stale and no_data say the source is quiet,
# which the anomaly scores cannot show, so they count as healthy runs of the service.
NOT_FAILED = f'openanomaly_runs_total{{{P}, outcome!="failed"}}'


def build() -> db.Dashboard:
    layout = Layout()
    board = (
        db.Dashboard("OpenAnomaly / Overview")
        .uid(UID)
        .tags(["openanomaly"])
        .description("Pipelines' health and the series scored anomalous.")
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("utc")
        .with_variable(datasource_variable())
        .with_variable(label_variable("pipeline", "pipeline", PIPELINE_SOURCES, multi=True,
                                      all_value=".*"))
    )
    stats = [
        stat_panel(
            "Pipelines", "Pipelines the service counts runs of, or with a score in the last 5 "
            "minutes.",
            f"count(count by (pipeline) ({{{NAMES}, {P}}}))"),
        stat_panel(
            "Pipelines failing",
            "Pipelines whose runs failed in the last 15 minutes with no successful run.",
            f'count((sum by (pipeline) (increase(openanomaly_runs_total{{{P}, outcome="failed"}}'
            f'[15m])) > 0) unless on (pipeline) (sum by (pipeline) (increase('
            f'openanomaly_runs_total{{{P}, outcome="ok"}}[15m])) > 0)) or vector(0)',
            colours=thresholds((None, "green"), (1, "red"))),
        stat_panel(
            "Anomalous series now", "Series whose latest anomaly score is above 1.",
            f"count(openanomaly_anomaly_score{{{P}}} > 1) or vector(0)",
            colours=thresholds((None, "green"), (1, "orange"))),
        stat_panel(
            "Runs not failed", "Share of runs in the time range that did not fail.",
            f"sum(increase({NOT_FAILED}[$__range])) / sum(increase({RUNS}[$__range]))",
            unit="percentunit",
            colours=thresholds((None, "red"), (0.9, "orange"), (0.99, "green"))),
        stat_panel(
            "Slots missed",
            "Slots older than the catch-up horizon in the time range: never run.",
            f"sum(increase(openanomaly_slots_missed_total{{{P}}}[$__range])) or vector(0)",
            colours=thresholds((None, "green"), (1, "red"))),
    ]
    for panel, width in zip(stats, (4, 5, 5, 5, 5), strict=True):
        board = board.with_panel(layout.place(panel, width, 4))

    health = ratio_bars(
        "Runs not failed, by pipeline",
        "Per pipeline, the share of runs in the time range that did not fail.",
        f"(sum by (pipeline) (increase({NOT_FAILED}[$__range])) or 0 * sum by (pipeline) "
        f"(increase({RUNS}[$__range]))) / sum by (pipeline) (increase({RUNS}[$__range]))",
        legend="{{pipeline}}")
    anomalous = timeseries_panel(
        "Anomalous series by pipeline", "Series scored above 1, per pipeline.",
        [target(f"count by (pipeline) (openanomaly_anomaly_score{{{P}}} > 1)", "{{pipeline}}")])
    board = board.with_panel(layout.place(health, 8, 8))
    board = board.with_panel(layout.place(anomalous, 16, 8))

    top = table_panel(
        "Top anomaly scores",
        "The 20 series with the highest score in the time range. Open one in the series "
        "explorer with its pipeline and source_metric.",
        f"topk(20, max_over_time(openanomaly_anomaly_score{{{P}}}[$__range]))")
    outcomes = timeseries_panel(
        "Runs by outcome", "Runs per second by outcome (ok, partial, stale, no_data, "
        "already_written, failed).",
        [target(f"sum by (outcome) (rate({RUNS}[$__rate_interval]))", "{{outcome}}")],
        unit="ops")
    board = board.with_panel(layout.place(top, 12, 9))
    board = board.with_panel(layout.place(outcomes, 12, 9))

    errors = timeseries_panel(
        "Errors by component and kind", "Failures per second: the database (tsdb), models, "
        "the pipeline store, and runs.",
        [target("sum by (component, kind) (rate(openanomaly_errors_total[$__rate_interval]))",
                "{{component}} {{kind}}")],
        unit="ops")
    lag = timeseries_panel(
        "Slot lag (p99)", "How late runs start after their slot plus delay.",
        [target(histogram_quantile(0.99, "openanomaly_slot_lag_seconds", "pipeline", P),
                "{{pipeline}}")],
        unit="s")
    inference = timeseries_panel(
        "Inference time", "Time spent in the model per run, quantiles over all pipelines.",
        [target(histogram_quantile(q, "openanomaly_run_stage_duration_seconds", "",
                                   'stage="inference"'), f"p{round(q * 100)}")
         for q in (0.5, 0.9, 0.99)],
        unit="s")
    for panel in (errors, lag, inference):
        board = board.with_panel(layout.place(panel, 8, 8))
    return board

"""Service health: the processes' own metrics, one row per part of the deployment."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from .common import Layout, datasource_variable, histogram_quantile, label_variable, target
from .panels import stat_panel, thresholds, timeseries_panel

UID = "openanomaly-service-health"
# Jobs of the Compose Prometheus: openanomaly (the single-process run),
# openanomaly-api, -beat, -worker and -model-server.
J = 'job=~"$job"'


def _rate(metric: str, by: str, matchers: str = J) -> str:
    return f"sum by ({by}) (rate({metric}{{{matchers}}}[$__rate_interval]))"


def _quantiles(metric: str, by: str, legend: str) -> list:
    legend = f"{legend} " if legend else ""
    return [target(histogram_quantile(q, metric, by, J), f"{legend}p{round(q * 100)}")
            for q in (0.5, 0.99)]


def _processes(layout: Layout) -> list:
    return [
        layout.row(db.Row("Processes")),
        layout.place(timeseries_panel(
            "Targets up", "1 while Prometheus scrapes the process, 0 when the scrape fails.",
            [target(f"up{{{J}}}", "{{job}} {{instance}}")]).min(0).max(1), 8, 7),
        layout.place(timeseries_panel(
            "CPU", "CPU seconds per second (cores busy) per process.",
            [target(f"rate(process_cpu_seconds_total{{{J}}}[$__rate_interval])",
                    "{{job}} {{instance}}")]), 8, 7),
        layout.place(timeseries_panel(
            "Resident memory", "Resident set size per process.",
            [target(f"process_resident_memory_bytes{{{J}}}", "{{job}} {{instance}}")],
            unit="bytes"), 8, 7),
    ]


def _runs(layout: Layout) -> list:
    return [
        layout.row(db.Row("Runs")),
        layout.place(timeseries_panel(
            "Runs by pipeline and outcome", "Runs per second.",
            [target(_rate("openanomaly_runs_total", "pipeline, outcome"),
                    "{{pipeline}} {{outcome}}")], unit="ops"), 8, 8),
        layout.place(timeseries_panel(
            "Run duration", "End to end, per pipeline.",
            _quantiles("openanomaly_run_duration_seconds", "pipeline", "{{pipeline}}"),
            unit="s"), 8, 8),
        layout.place(timeseries_panel(
            "Run stages (p90)", "Time per stage of a run: query, history (calibration "
            "read-back), inference, scoring, write.",
            [target(histogram_quantile(0.9, "openanomaly_run_stage_duration_seconds", "stage",
                                       J), "{{stage}}")], unit="s"), 8, 8),
        layout.place(timeseries_panel(
            "Series read and samples written", "Per second, per pipeline.",
            [target(_rate("openanomaly_series_read_total", "pipeline"), "read {{pipeline}}"),
             target(_rate("openanomaly_samples_written_total", "pipeline"),
                    "written {{pipeline}}")]), 8, 8),
        layout.place(timeseries_panel(
            "Errors", "Failures per second by component (tsdb, model, store, run) and kind.",
            [target(_rate("openanomaly_errors_total", "component, kind"),
                    "{{component}} {{kind}}")], unit="ops"), 8, 8),
        layout.place(timeseries_panel(
            "Slot lag (p99)", "How late runs start against their slot plus delay.",
            [target(histogram_quantile(0.99, "openanomaly_slot_lag_seconds", "pipeline", J),
                    "{{pipeline}}")], unit="s"), 8, 8),
        layout.place(timeseries_panel(
            "Slots caught up and missed", "Slots run late after a pause (caught up) and "
            "slots beyond the catch-up horizon, never run (missed), per interval.",
            [target(f"sum by (pipeline) (increase(openanomaly_slots_caught_up_total{{{J}}}"
                    "[$__rate_interval]))", "caught up {{pipeline}}"),
             target(f"sum by (pipeline) (increase(openanomaly_slots_missed_total{{{J}}}"
                    "[$__rate_interval]))", "missed {{pipeline}}")]), 24, 7),
    ]


def _scheduling(layout: Layout) -> list:
    return [
        layout.row(db.Row("Scheduling")),
        layout.place(stat_panel(
            "Beat leaders", "Beats holding the leader lock: exactly 1 is healthy, 0 means "
            "no slot is dispatched.",
            f"sum(openanomaly_beat_leader{{{J}}}) or vector(0)",
            colours=thresholds((None, "red"), (1, "green"), (2, "red"))), 4, 7),
        layout.place(timeseries_panel(
            "Leader by beat", "1 on the leading beat, 0 on standbys.",
            [target(f"openanomaly_beat_leader{{{J}}}", "{{instance}}")]).min(0).max(1), 6, 7),
        layout.place(timeseries_panel(
            "Reconcile duration", "Time the leader takes to sync pipelines into the schedule.",
            _quantiles("openanomaly_beat_reconcile_duration_seconds", "", ""), unit="s"), 7, 7),
        layout.place(timeseries_panel(
            "Queue length", "Messages waiting in the broker's queues.",
            [target(f"sum by (queue) (openanomaly_queue_messages{{{J}}})", "{{queue}}")]),
            7, 7),
    ]


def _models(layout: Layout) -> list:
    server = "openanomaly_model_server"
    return [
        layout.row(db.Row("Models")),
        layout.place(timeseries_panel(
            "Model load time (p99)", "Time to load a model into a process's cache.",
            [target(histogram_quantile(0.99, "openanomaly_model_load_duration_seconds",
                                       "model", J), "{{model}}")], unit="s"), 8, 7),
        layout.place(timeseries_panel(
            "Model cache size", "Bytes of loaded models per process.",
            [target(f"openanomaly_model_cache_bytes{{{J}}}", "{{job}} {{instance}}")],
            unit="bytes"), 8, 7),
        layout.place(timeseries_panel(
            "Models cached", "Models loaded per process.",
            [target(f"openanomaly_model_cache_models{{{J}}}", "{{job}} {{instance}}")]), 8, 7),
        layout.place(timeseries_panel(
            "Model server requests", "Forecast requests per second by model and HTTP status.",
            [target(_rate(f"{server}_requests_total", "model, status"),
                    "{{model}} {{status}}")], unit="reqps"), 8, 7),
        layout.place(timeseries_panel(
            "Model server batching", "Requests and series served per engine call: above 1, "
            "concurrent requests share a forward pass.",
            [target(f"{_rate(f'{server}_batched_requests_total', 'model')} / "
                    f"{_rate(f'{server}_batches_total', 'model')}", "requests {{model}}"),
             target(f"{_rate(f'{server}_series_total', 'model')} / "
                    f"{_rate(f'{server}_batches_total', 'model')}", "series {{model}}")]),
            8, 7),
        layout.place(timeseries_panel(
            "Model server latency", "Seconds per engine call (one batch).",
            _quantiles(f"{server}_forecast_duration_seconds", "model", "{{model}}"),
            unit="s"), 8, 7),
    ]


def _api(layout: Layout) -> list:
    return [
        layout.row(db.Row("API")),
        layout.place(timeseries_panel(
            "API requests", "Requests per second by route and status.",
            [target(_rate("openanomaly_api_requests_total", "method, route, status"),
                    "{{method}} {{route}} {{status}}")], unit="reqps"), 12, 8),
        layout.place(timeseries_panel(
            "API latency (p99)", "Per route.",
            [target(histogram_quantile(0.99, "openanomaly_api_request_duration_seconds",
                                       "method, route", J), "{{method}} {{route}}")],
            unit="s"), 12, 8),
    ]


def build() -> db.Dashboard:
    layout = Layout()
    board = (
        db.Dashboard("OpenAnomaly / Service health")
        .uid(UID)
        .tags(["openanomaly"])
        .description("The OpenAnomaly processes' own metrics: runs, scheduling, models, API.")
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("utc")
        .with_variable(datasource_variable())
        .with_variable(label_variable("job", "job", 'up{job=~"openanomaly.*"}', multi=True,
                                      all_value="openanomaly.*"))
    )
    for section in (_processes, _runs, _scheduling, _models, _api):
        for item in section(layout):
            board = board.with_row(item) if isinstance(item, db.Row) else board.with_panel(item)
    return board

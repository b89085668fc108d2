"""Series explorer: one pipeline's series with what the model expected of them."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import DynamicConfigValue

from .common import DATASOURCE, Layout, datasource_variable, label_variable, target
from .panels import table_panel, thresholds, timeseries_panel

UID = "openanomaly-series"
ALARMS = "Alarms"
# The textbox takes extra label matchers (instance="db-1"). It comes last in every
# selector: left empty it leaves a trailing comma, which PromQL accepts, where an empty
# matcher between two others would not parse.
SEL = 'pipeline="$pipeline", source_metric="$source_metric", $matchers'


def quantile(q: str) -> str:
    return f'openanomaly_forecast{{quantile="{q}", {SEL}}}'

# fillBelowTo fills between two series named exactly so: with one series selected (by
# the matchers) the band is shaded; with several, the lines are still drawn.
ACTUAL, MEDIAN, LOWER, UPPER = "actual", "forecast median", "band lower", "band upper"
AHEAD_LOW, AHEAD_MEDIAN, AHEAD_HIGH = "q0.1 ahead", "median ahead", "q0.9 ahead"


def _fill_between(panel: object, upper: str, lower: str) -> object:
    shaded = [DynamicConfigValue(id_val="custom.fillBelowTo", value=lower),
              DynamicConfigValue(id_val="custom.fillOpacity", value=20),
              DynamicConfigValue(id_val="custom.lineWidth", value=0)]
    edge = [DynamicConfigValue(id_val="custom.lineWidth", value=0),
            DynamicConfigValue(id_val="custom.fillOpacity", value=0)]
    return panel.override_by_name(upper, shaded).override_by_name(lower, edge)  # type: ignore[attr-defined]


def _dashed(name: str) -> tuple[str, list[DynamicConfigValue]]:
    return name, [DynamicConfigValue(id_val="custom.lineStyle",
                                     value={"fill": "dash", "dash": [10, 10]})]


def build() -> db.Dashboard:
    layout = Layout()
    board = (
        db.Dashboard("OpenAnomaly / Series explorer")
        .uid(UID)
        .tags(["openanomaly"])
        .description("One pipeline's series: actual values, the forecast and its band, "
                     "the anomaly score, and forecasts ahead.")
        # Forecasts are written ahead of now; the range reaches into the future to show them.
        .time("now-12h", "now+2h")
        .refresh("1m")
        .timezone("utc")
        .with_variable(datasource_variable())
        .with_variable(label_variable("pipeline", "pipeline", "openanomaly_anomaly_score"))
        .with_variable(label_variable("source_metric", "source_metric",
                                      'openanomaly_anomaly_score{pipeline="$pipeline"}'))
        .with_variable(db.TextBoxVariable("matchers").label("label matchers")
                       .description('Extra label matchers, e.g. instance="db-1"')
                       .default_value(""))
        .annotation(db.AnnotationQuery().name(ALARMS).datasource(DATASOURCE).enable(True)
                    .icon_color("red").expr(f"openanomaly_anomaly_score{{{SEL}}} > 1"))
    )

    fitted = timeseries_panel(
        "Actual, forecast and band",
        "The values each score was computed against, the median forecast and the band where "
        "the score is 1. Narrow the matchers to one series to shade the band.",
        [target(f"openanomaly_y{{{SEL}}}", ACTUAL),
         target(f"openanomaly_yhat{{{SEL}}}", MEDIAN),
         target(f"openanomaly_yhat_lower{{{SEL}}}", LOWER),
         target(f"openanomaly_yhat_upper{{{SEL}}}", UPPER)])
    fitted = _fill_between(fitted, UPPER, LOWER)
    fitted = fitted.override_by_name(*_dashed(MEDIAN))  # type: ignore[attr-defined]
    board = board.with_panel(layout.place(fitted, 24, 10))

    score = (
        timeseries_panel(
            "Anomaly score",
            "0 at the median forecast, 1 at the band edge (the alert threshold), above 1 "
            "outside the band.",
            [target(f"openanomaly_anomaly_score{{{SEL}}}")])
        .thresholds(thresholds((None, "green"), (1, "red")))
        .thresholds_style(cb.GraphThresholdsStyleConfig()
                          .mode(common.GraphTresholdsStyleMode.DASHED))
        .axis_soft_min(0)
        .axis_soft_max(1.5)
    )
    board = board.with_panel(layout.place(score, 24, 7))

    ahead = timeseries_panel(
        "Forecast ahead",
        "Forecasts written ahead of now by forecast-mode runs: median and the 0.1 to 0.9 "
        "band.",
        [target(quantile("0.1"), AHEAD_LOW),
         target(quantile("0.5"), AHEAD_MEDIAN),
         target(quantile("0.9"), AHEAD_HIGH)])
    ahead = _fill_between(ahead, AHEAD_HIGH, AHEAD_LOW)
    latest = table_panel(
        "Latest scores",
        "Every series of the selection with its latest score (within 3 h of the range's "
        "end, which lies 2 h ahead for the forecasts): copy labels from here into the "
        "matchers.",
        f"sort_desc(last_over_time(openanomaly_anomaly_score{{{SEL}}}[3h]))")
    board = board.with_panel(layout.place(ahead, 12, 9))
    board = board.with_panel(layout.place(latest, 12, 9))
    return board


# Prometheus annotation options the SDK leaves out: one annotation per alarming series
# and step, titled with its source.
ANNOTATION_FIELDS = {
    ALARMS: {
        "step": "60s",
        "titleFormat": "score > 1",
        "textFormat": "{{source_metric}} in {{pipeline}}",
        "tagKeys": "pipeline,source_metric",
        "useValueForTime": False,
    }
}

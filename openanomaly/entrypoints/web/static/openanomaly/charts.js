// Charts of one pipeline's series: the actual values, the median forecast and its band, and
// the score with the threshold line; the points above the threshold are marked.
// window.previewCharts keeps the drawn uPlot charts (the browser test reads them).
"use strict";

window.previewCharts = [];

function selector(labels) {
  const name = labels.__name__ || "";
  const rest = Object.entries(labels).filter(([k]) => k !== "__name__")
    .map(([k, v]) => `${k}="${v}"`).join(",");
  return `${name}{${rest}}`;
}

function drawSeries(container, one, threshold) {
  const seconds = one.timestamps_ms.map((t) => t / 1000);
  const alarms = new Set(one.alarms_ms);
  const alarmed = one.timestamps_ms.map((t, i) => (alarms.has(t) ? one.actual[i] : null));
  const box = document.createElement("div");
  box.className = "chart";
  const title = document.createElement("h3");
  title.textContent = `${selector(one.labels)}: ${one.alarms_ms.length} alarm(s)`;
  box.appendChild(title);
  container.appendChild(box);
  const width = Math.max(320, Math.min(1060, container.clientWidth - 20));
  const values = new uPlot({
    width, height: 240,
    series: [
      {},
      { label: "lower", stroke: "#9db7f0", width: 1 },
      { label: "upper", stroke: "#9db7f0", width: 1 },
      { label: "median", stroke: "#2859c5", width: 1.5, dash: [6, 4] },
      { label: "actual", stroke: "#1d2330", width: 1.5 },
      { label: "alarm", stroke: "#d92d20", width: 0, points: { show: true, size: 9, fill: "#d92d20" } },
    ],
    bands: [{ series: [2, 1], fill: "#2859c522" }],
  }, [seconds, one.lower, one.upper, one.yhat, one.actual, alarmed], box);
  const scores = new uPlot({
    width, height: 140,
    series: [
      {},
      { label: "score", stroke: "#b54708", width: 1.5 },
      { label: "threshold", stroke: "#d92d20", width: 1, dash: [4, 4] },
    ],
  }, [seconds, one.score, seconds.map(() => threshold)], box);
  window.previewCharts.push(values, scores);
}

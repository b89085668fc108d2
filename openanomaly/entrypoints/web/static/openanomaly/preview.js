// The editor's preview: post the YAML to /pipelines/preview and draw, per series, the actual
// values, the median forecast and its band, and the score with the threshold line; the
// points that would have alarmed are marked. window.previewCharts keeps the drawn charts.
"use strict";

window.previewCharts = [];

function csrfToken() {
  const field = document.querySelector("input[name=csrfmiddlewaretoken]");
  return field ? field.value : "";
}

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

async function preview() {
  const status = document.getElementById("preview-status");
  const charts = document.getElementById("charts");
  const body = new URLSearchParams({
    yaml: document.getElementById("yaml").value,
    hours: document.getElementById("hours").value,
  });
  status.textContent = "Replaying the pipeline over recent data...";
  status.className = "";
  charts.replaceChildren();
  window.previewCharts = [];
  const response = await fetch("/pipelines/preview", {
    method: "POST", body, headers: { "X-CSRFToken": csrfToken() }, credentials: "same-origin",
  });
  const answer = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) {
    status.textContent = answer.error || `HTTP ${response.status}`;
    status.className = "error";
    return;
  }
  const alarms = answer.series.reduce((n, one) => n + one.alarms_ms.length, 0);
  status.textContent = `${answer.series.length} series, ${alarms} would-be alarm(s), ` +
    `computed in ${answer.seconds.toFixed(1)} s. Nothing was written.`;
  status.className = "notice";
  for (const one of answer.series) {
    drawSeries(charts, one, answer.threshold);
  }
}

document.getElementById("preview").addEventListener("click", () => {
  preview().catch((error) => {
    const status = document.getElementById("preview-status");
    status.textContent = String(error);
    status.className = "error";
  });
});

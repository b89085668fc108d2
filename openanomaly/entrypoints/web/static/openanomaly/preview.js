// The editor's preview: post the editor (form or YAML view) to /pipelines/preview and draw what the pipeline
// would have done (charts.js).
"use strict";

function csrfToken() {
  const field = document.querySelector("input[name=csrfmiddlewaretoken]");
  return field ? field.value : "";
}

async function preview() {
  const status = document.getElementById("preview-status");
  const charts = document.getElementById("charts");
  // The form or the YAML view, whichever is shown: the server reads both.
  const body = new URLSearchParams(new FormData(document.getElementById("editor")));
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

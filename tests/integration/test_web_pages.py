"""The web UI's pages through Django's test client: the pipeline list with status, last
anomaly and sparkline; the editor's form and YAML views and its inline validation."""

from __future__ import annotations

import re

import yaml

from openanomaly.entrypoints.web import state
from tests.integration.test_api import (  # noqa: F401  (fixtures)
    PASSWORD,
    call,
    clean,
    people,
    recent_minutes,
    signed_in_browser,
    spike_slot,
)


def test_the_list_shows_status_last_anomaly_and_a_score_sparkline(
        people, prom_client, unique):  # noqa: F811
    metric = unique("ui_list")
    source = recent_minutes(metric)
    prom_client.write([source])
    editor = people["editor"]
    for name, query in (("spiky", metric), ("broken", "rate(up[5m]"), ("idle", metric)):
        spec = {"name": name, "query": query, "model": "seasonal_naive", "step": "1m",
                "context": "1h", "schedule": "5m"}
        assert call("post", "/api/pipelines", editor, spec).status_code == 201
    # The slot whose window holds the spike, then a failing run; idle never runs.
    assert call("post", "/api/pipelines/spiky/run", editor,
                {"at": spike_slot(source)}).status_code == 200
    assert call("post", "/api/pipelines/broken/run", editor, {}).status_code == 422
    call("post", "/api/pipelines/idle/disable", editor, {"version": 1})

    browser, _ = signed_in_browser("viewer")
    page = browser.get("/pipelines").content.decode()
    rows = {name: row for row, name in re.findall(
        r'(<tr>\s*<td><a href="/pipelines/([^"]+)">.*?</tr>)', page, flags=re.S)}
    assert set(rows) == {"spiky", "broken", "idle"}
    assert 'class="health ok"' in rows["spiky"] and "ago</time>, " in rows["spiky"]
    assert 'class="health failing"' in rows["broken"] and "parse error" in rows["broken"]
    assert 'class="health disabled"' in rows["idle"] and "—" in rows["idle"]
    assert 'hx-get="/pipelines/spiky/sparkline"' in rows["spiky"]

    spark = browser.get("/pipelines/spiky/sparkline").content.decode()
    bars = re.findall(r'<rect x="([0-9.]+)" y="([0-9.]+)"[^>]*?( class="alarm")?/>', spark)
    assert bars and all(0 <= float(x) <= 160 and 0 <= float(y) <= 32 for x, y, _ in bars)
    assert any(alarm for _, _, alarm in bars), "the spike crossed the threshold"
    assert re.search(r'class="last-anomaly"><time [^>]+>[^<]+ ago</time> \(score [0-9.]+\)',
                     spark), spark
    assert "no scores written" in browser.get("/pipelines/idle/sparkline").content.decode()
    assert browser.get("/pipelines/nope/sparkline").status_code == 200  # a fragment says why

    detail = browser.get("/pipelines/broken").content.decode()
    assert 'id="health">failing' in detail and "Failed 1 time in a row" in detail


def test_the_form_view_saves_its_fields_and_keeps_the_rest_of_the_yaml(people):  # noqa: F811
    browser, csrf = signed_in_browser("editor")
    page = browser.get("/pipelines/new").content.decode()
    assert 'name="view" value="form"' in page and '<input name="name"' in page
    rest = "name: x\nquery: up\nscoring:\n  calibration_window: 1d\n  threshold: 2\n"
    form = {"csrfmiddlewaretoken": csrf, "view": "form", "rest": rest, "name": "from-form",
            "query": "sum(up)", "model": "seasonal_naive", "step": "30s", "context": "2h",
            "schedule": "1m", "threshold": "1.5", "direction": "above", "enabled": "on"}
    saved = browser.post("/pipelines/new", data=form)
    assert saved.status_code == 302, saved.content
    spec = state.current().store.get_pipeline("from-form")
    assert (spec.query, spec.model, spec.step, spec.context) == ("sum(up)", "seasonal_naive",
                                                                 30.0, 7200.0)
    assert spec.scoring.threshold == 1.5 and spec.scoring.direction == "above"
    assert spec.scoring.calibration_window == 86400.0, "kept from the YAML"

    # Switching views carries what was typed; a bad field is named, and nothing is saved.
    shown = browser.post("/pipelines/editor?to=yaml", data={**form, "step": "2m"})
    text = re.search(r'<textarea id="yaml" name="yaml"[^>]*>(.*?)</textarea>',
                     shown.content.decode(), flags=re.S)[1]
    assert yaml.safe_load(text.replace("&#x27;", "'"))["step"] == "2m"
    bad = browser.post("/pipelines/new", data={**form, "name": "bad", "step": "soon"})
    assert bad.status_code == 422 and "step" in bad.content.decode()
    assert 'name="view" value="form"' in bad.content.decode(), "stays in the form"
    assert "bad" not in [p.name for p in state.current().store.list_pipelines()]


def test_yaml_that_does_not_parse_stays_in_the_yaml_view_with_the_reason(people):  # noqa: F811
    browser, csrf = signed_in_browser("editor")
    shown = browser.post("/pipelines/editor?to=form", data={
        "csrfmiddlewaretoken": csrf, "view": "yaml", "yaml": "name: [unclosed"})
    page = shown.content.decode()
    assert "fix the YAML first" in page and 'name="view" value="yaml"' in page
    assert "name: [unclosed" in page, "what was typed is kept"


def test_inline_validation_names_the_field_or_says_it_is_valid(people):  # noqa: F811
    browser, csrf = signed_in_browser("editor")

    def check(text):
        return browser.post("/pipelines/check", data={
            "csrfmiddlewaretoken": csrf, "view": "yaml", "yaml": text}).content.decode()

    assert "Valid: ok runs fracast" in check("name: ok\nquery: up\n")
    assert "step" in check("name: ok\nquery: up\nstep: later\n")
    assert "unknown model" in check("name: ok\nquery: up\nmodel: nonesuch\n").lower()
    viewer, viewer_csrf = signed_in_browser("viewer")
    assert viewer.post("/pipelines/check", data={"csrfmiddlewaretoken": viewer_csrf,
                                                 "yaml": "name: ok"}).status_code == 403

"""The web UI in a real browser (Playwright driving Debian's Chromium) against a running
`openanomaly api`: sign in, write a pipeline, see the preview drawn, save, run, disable."""

from __future__ import annotations

import os
import shutil
import subprocess

import httpx
import pytest

from openanomaly.adapters.tsdb.local_prometheus import free_port
from tests.e2e.test_accounts_command import PASSWORD
from tests.e2e.test_api_command import api_config, stop, wait_ready
from tests.e2e.test_cli import CLI, openanomaly
from tests.integration.test_api import recent_minutes

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium not found; install the Debian package chromium")
        pytest.skip("chromium not found; install the Debian package chromium")
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM,
                                          args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


@pytest.fixture
def site(tmp_path, prometheus, prom_client, unique):
    port = free_port()
    config = api_config(tmp_path, prometheus.url, port)
    metric = unique("ui_requests")
    prom_client.write([recent_minutes(metric, hours=8, spike_at=-90)])
    openanomaly("createuser", "ana", "--role", "editor", config=config,
                env={"OPENANOMALY_PASSWORD": PASSWORD})
    process = subprocess.Popen([*CLI, "--config", str(config), "api", "--workers", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        yield base, metric
    finally:
        stop(process)


def test_sign_in_preview_save_run_and_disable_a_pipeline(browser, site, tmp_path):
    base, metric = site
    assert httpx.get(f"{base}/pipelines", follow_redirects=False).status_code == 302
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base}/pipelines")
    assert page.url.startswith(f"{base}/login")
    page.fill("input[name=name]", "ana")
    page.fill("input[name=password]", "wrong password!")
    page.click("button[type=submit]")
    assert "Wrong name or password." in page.inner_text("main")
    page.fill("input[name=name]", "ana")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/pipelines")
    assert "No pipeline yet." in page.inner_text("main")

    # The form view: the settings most pipelines change, checked while typing (htmx).
    page.click("text=New pipeline")
    page.fill("input[name=name]", "ui-test")
    page.fill("textarea[name=query]", metric)
    page.select_option("select[name=model]", "seasonal_naive")
    page.fill("input[name=step]", "1 minute")
    page.wait_for_selector("#check .error")
    assert "step" in page.inner_text("#check")
    page.fill("input[name=step]", "1m")
    page.fill("input[name=context]", "1h")
    page.fill("input[name=schedule]", "5m")
    page.wait_for_selector("#check .ok")
    page.click("#preview")
    page.wait_for_selector("#charts canvas", timeout=60_000)
    status = page.inner_text("#preview-status")
    assert "1 series" in status and "Nothing was written." in status, status
    drawn = page.evaluate("window.previewCharts.map(chart => chart.data[0].length)")
    assert len(drawn) == 2 and min(drawn) >= 300, drawn  # six hours of minutes, both charts
    alarms = page.evaluate("window.previewCharts[0].data[5].filter(v => v !== null).length")
    assert alarms >= 1, "the injected spike is marked"
    page.screenshot(path=str(tmp_path / "pipeline-editor-preview.png"), full_page=True)

    page.click("#save")
    page.wait_for_url(f"{base}/pipelines/ui-test?message=saved")
    assert page.inner_text("#health") == "never run"
    page.click("text=Run now")
    page.wait_for_selector("text=ran slot: ok")
    assert page.inner_text("#health") == "ok" and "Last run" in page.inner_text("#last-run")
    # The page's chart: the last day read back, with the scores the run just wrote.
    page.wait_for_selector("#history canvas", timeout=30_000)
    actual = page.evaluate("window.previewCharts[0].data[4].filter(v => v !== null).length")
    scored = page.evaluate("window.previewCharts[1].data[1].filter(v => v !== null).length")
    assert actual >= 300 and scored >= 1, (actual, scored)
    # The list: its status, last run, and the score sparkline htmx loads into the row.
    page.goto(f"{base}/pipelines")
    page.wait_for_selector("td.spark svg.sparkline rect")
    row = page.inner_text("table")
    assert "ui-test" in row and "ok" in row and "ago" in row
    page.screenshot(path=str(tmp_path / "pipelines-list.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280, "no sideways scroll"
    page.goto(f"{base}/pipelines/ui-test")
    page.click("button:has-text('Disable')")
    page.wait_for_selector("#health:has-text('disabled')")
    page.goto(f"{base}/pipelines")
    assert "disabled" in page.inner_text("table")
    # A phone: the list keeps name, status, last run and last anomaly in view.
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    phone.context.add_cookies(page.context.cookies())
    phone.goto(f"{base}/pipelines")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_bad_pipeline_is_shown_with_what_to_fix_and_nothing_saved(browser, site):
    base, metric = site
    page = browser.new_page()
    page.goto(f"{base}/login?next=/pipelines/new")
    page.fill("input[name=name]", "ana")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/pipelines/new")
    page.click("#tab-yaml")
    page.wait_for_selector("#yaml")
    page.fill("#yaml", f"name: broken\nquery: {metric}\nstep: 1 minute\n")
    page.wait_for_selector("#check .error")
    page.click("#preview")
    page.wait_for_selector("#preview-status.error")
    assert "step" in page.inner_text("#preview-status")
    page.click("#save")
    assert "step" in page.inner_text("#save-error")
    page.goto(f"{base}/pipelines")
    assert "No pipeline yet." in page.inner_text("main")


def test_sign_in_never_redirects_to_another_site(site):
    base, _ = site
    for target in ("//evil.example/x", "https://evil.example/x"):
        with httpx.Client(base_url=base) as browser:
            form = browser.get(f"/login?next={target}")
            token = browser.cookies["csrftoken"]
            done = browser.post(f"/login?next={target}", data={
                "name": "ana", "password": PASSWORD, "csrfmiddlewaretoken": token},
                headers={"Referer": base})
            assert form.status_code == 200
            assert done.status_code == 302 and done.headers["location"] == "/pipelines"

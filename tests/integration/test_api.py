"""The REST API through Django's test client, on a SQLite store and on mongomock."""

from __future__ import annotations

import json
import re
import time

import mongomock
import numpy as np
import pytest
from django.test import Client

from openanomaly.adapters.config.mongo_store import MongoStore
from openanomaly.adapters.config.sqlite_store import SqliteStore
from openanomaly.adapters.passwords import DjangoPasswordHasher
from openanomaly.adapters.scheduler.slot_ledger import RedisSlotLedger
from openanomaly.adapters.tsdb.prometheus import PrometheusAdapter
from openanomaly.adapters.tsdb.settings import PrometheusSettings
from openanomaly.bootstrap import bootstrap_api
from openanomaly.config import AppConfig
from openanomaly.domain.series import Series
from openanomaly.entrypoints.web import state
from openanomaly.entrypoints.web.server import wsgi_application
from openanomaly.services.accounts import create_user, issue_token
from tests.redis_server import redis_server  # noqa: F401  (fixture)

PASSWORD = "correct horse battery"
CONFIG = AppConfig.model_validate({"django": {"secret_key": "test-secret-key",
                                              "allowed_hosts": ["testserver", "localhost"]}})

PIPELINE = {"name": "cpu", "query": "up", "step": "1m", "context": "6h"}


@pytest.fixture(scope="module", params=["sqlite", "mongomock"])
def people(request, tmp_path_factory, prometheus):
    """A store with one user of each role, their tokens, and a revoked token."""
    if request.param == "sqlite":
        store = SqliteStore(tmp_path_factory.mktemp("api") / "store.db")
    else:
        store = MongoStore(mongomock.MongoClient()["openanomaly"])
    context = bootstrap_api(CONFIG, store=store, hasher=DjangoPasswordHasher(),
                            tsdb=PrometheusAdapter(PrometheusSettings(url=prometheus.url)))
    wsgi_application(CONFIG, context)  # configures Django (once) and uses this context
    tokens = {}
    for role in ("viewer", "editor", "admin"):
        create_user(store, context.hasher, role, role, PASSWORD)
        tokens[role] = issue_token(store, role, "tests")[1]
    revoked, tokens["revoked"] = issue_token(store, "admin", "old")
    store.revoke_token(revoked.id)
    tokens["anonymous"] = None
    yield tokens
    context.close()


@pytest.fixture(autouse=True)
def clean(people):
    from django.core.cache import cache

    for stored in state.current().store.list_stored():
        state.current().store.delete(stored.spec.name)
    cache.clear()  # the sign-in limiter's counts


def call(method, path, token=None, body=None, client=None, **headers):
    client = client or Client()
    if token:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    data = json.dumps(body) if body is not None else None
    return getattr(client, method)(path, data=data, content_type="application/json", **headers)


def test_pipelines_change_only_against_their_current_version(people):
    editor = people["editor"]
    created = call("post", "/api/pipelines", editor, PIPELINE)
    assert created.status_code == 201, created.content
    assert created.json()["version"] == 1 and created.json()["spec"]["step"] == 60.0
    assert call("post", "/api/pipelines", editor, PIPELINE).status_code == 409

    changed = {**PIPELINE, "context": "12h"}
    updated = call("put", "/api/pipelines/cpu", editor, {"version": 1, "spec": changed})
    assert updated.status_code == 200 and updated.json()["version"] == 2
    stale = call("put", "/api/pipelines/cpu", editor, {"version": 1, "spec": PIPELINE})
    assert stale.status_code == 409
    assert "changed since version 1" in stale.json()["error"]

    disabled = call("post", "/api/pipelines/cpu/disable", editor, {"version": 2})
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert call("get", "/api/pipelines/cpu", people["viewer"]).json()["version"] == 3
    assert call("delete", "/api/pipelines/cpu?version=2", editor).status_code == 409
    assert call("delete", "/api/pipelines/cpu?version=3", editor).status_code == 204
    missing = call("get", "/api/pipelines/cpu", editor)
    assert missing.status_code == 404 and "unknown pipeline 'cpu'" in missing.json()["error"]


@pytest.mark.parametrize(("body", "status", "message"), [
    ({**PIPELINE, "step": "5 minutes"}, 422, "step"),
    ({**PIPELINE, "model": "gpt"}, 422, "unknown model 'gpt'"),
    ({**PIPELINE, "name": "bad name"}, 422, "may hold letters, digits"),
    ({"name": "cpu"}, 422, "query"),
    ([1, 2], 422, ""),
])
def test_bad_pipelines_are_refused_with_what_to_fix(people, body, status, message):
    answer = call("post", "/api/pipelines", people["editor"], body)
    assert answer.status_code == status, answer.content
    assert message in answer.json()["error"]
    assert state.current().store.list_stored() == []


def test_malformed_json_is_a_client_error_not_a_server_error(people):
    answer = Client().post("/api/pipelines", data="{not json", content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {people['editor']}")
    assert 400 <= answer.status_code < 500 and "error" in answer.json()


def test_a_rename_through_update_is_refused(people):
    call("post", "/api/pipelines", people["editor"], PIPELINE)
    answer = call("put", "/api/pipelines/cpu", people["editor"],
                  {"version": 1, "spec": {**PIPELINE, "name": "other"}})
    assert answer.status_code == 422 and "differs from the pipeline 'cpu'" in answer.json()["error"]


# Every endpoint, the least role it needs, and what an allowed caller gets here.
ENDPOINTS = [
    ("get", "/api/session", None, "viewer"),
    ("get", "/api/pipelines", None, "viewer"),
    ("get", "/api/pipelines/cpu", None, "viewer"),
    ("post", "/api/pipelines", {**PIPELINE, "name": "new"}, "editor"),
    ("put", "/api/pipelines/cpu", {"version": 99, "spec": PIPELINE}, "editor"),
    ("post", "/api/pipelines/cpu/enable", {"version": 99}, "editor"),
    ("post", "/api/pipelines/cpu/disable", {"version": 99}, "editor"),
    ("delete", "/api/pipelines/gone", None, "editor"),
    ("post", "/api/pipelines/cpu/run", {"at": "yesterday-ish"}, "editor"),
    ("post", "/api/preview", {"spec": {"name": "p", "query": "up", "model": "gpt"}}, "editor"),
    ("get", "/api/pipelines/cpu/anomalies?hours=2", None, "viewer"),
    ("get", "/api/pipelines/cpu/status", None, "viewer"),
    ("get", "/api/models", None, "viewer"),
    ("get", "/api/users", None, "admin"),
    ("post", "/api/users", {"name": "new", "password": "short"}, "admin"),
    ("patch", "/api/users/viewer", {}, "admin"),
    ("delete", "/api/users/nobody", None, "admin"),
    ("get", "/api/users/viewer/tokens", None, "admin"),
    ("post", "/api/users/nobody/tokens", {"name": "x"}, "admin"),
    ("delete", "/api/tokens/nothing", None, "admin"),
]
RANK = {"viewer": 0, "editor": 1, "admin": 2}


@pytest.mark.parametrize(("method", "path", "body", "needs"), ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_authorisation_matrix(people, method, path, body, needs):
    call("post", "/api/pipelines", people["editor"], PIPELINE)
    for who in ("anonymous", "revoked", "viewer", "editor", "admin"):
        answer = call(method, path, people[who], body)
        if who in ("anonymous", "revoked"):
            expected = {401}
        elif RANK[who] < RANK[needs]:
            expected = {403}
        else:
            expected = {200, 201, 204, 404, 409, 422}
        assert answer.status_code in expected, (who, answer.status_code, answer.content)
        assert answer.status_code < 500


def test_sign_in_sets_a_session_whose_changes_need_the_csrf_token(people):
    browser = Client(enforce_csrf_checks=True)
    wrong = call("post", "/api/session", body={"name": "editor", "password": "nope"},
                 client=browser)
    assert wrong.status_code == 401 and wrong.json()["error"] == "wrong name or password"
    signed = call("post", "/api/session", body={"name": "editor", "password": PASSWORD},
                  client=browser)
    assert signed.status_code == 200 and signed.json() == {"name": "editor", "role": "editor"}
    assert call("get", "/api/pipelines", client=browser).status_code == 200
    refused = call("post", "/api/pipelines", body=PIPELINE, client=browser)
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    csrf = browser.cookies["csrftoken"].value
    accepted = call("post", "/api/pipelines", body=PIPELINE, client=browser,
                    HTTP_X_CSRFTOKEN=csrf)
    assert accepted.status_code == 201, accepted.content
    assert call("delete", "/api/session", client=browser, HTTP_X_CSRFTOKEN=csrf).status_code == 204
    assert call("get", "/api/pipelines", client=browser).status_code == 401


def test_failed_sign_ins_are_limited_per_user(people):
    for _ in range(5):
        assert call("post", "/api/session",
                    body={"name": "admin", "password": "guess"}).status_code == 401
    blocked = call("post", "/api/session", body={"name": "admin", "password": PASSWORD})
    assert blocked.status_code == 429


def test_a_revoked_token_stops_working_at_once(people):
    admin = people["admin"]
    made = call("post", "/api/users/viewer/tokens", admin, {"name": "script"})
    assert made.status_code == 201, made.content
    token, token_id = made.json()["token"], made.json()["id"]
    assert call("get", "/api/pipelines", token).status_code == 200
    listed = call("get", "/api/users/viewer/tokens", admin).json()
    assert token_id in [t["id"] for t in listed] and all("token" not in t for t in listed)
    assert call("delete", f"/api/tokens/{token_id}", admin).status_code == 204
    assert call("get", "/api/pipelines", token).status_code == 401


def test_admins_manage_users_but_not_their_own_deletion(people):
    admin = people["admin"]
    created = call("post", "/api/users", admin,
                   {"name": "cy", "role": "editor", "password": PASSWORD})
    assert created.status_code == 201 and created.json()["role"] == "editor"
    short = call("patch", "/api/users/cy", admin, {"password": "short"})
    assert short.status_code == 422 and "at least 12 characters" in short.json()["error"]
    assert call("patch", "/api/users/cy", admin, {"role": "viewer"}).json()["role"] == "viewer"
    assert call("delete", "/api/users/admin", admin).status_code == 409
    assert call("delete", "/api/users/cy", admin).status_code == 204


def test_only_health_is_public_and_the_openapi_document_describes_the_api(people):
    assert Client().get("/healthz").json() == {"status": "alive"}
    assert Client().get("/readyz").json() == {"status": "ready"}, "store and Prometheus"
    assert Client().get("/api/openapi.json").status_code == 401, "only health is public"
    assert Client().get("/api/docs").status_code == 401
    document = call("get", "/api/openapi.json", people["viewer"]).json()
    assert "/api/pipelines/{name}" in document["paths"]
    browser, _ = signed_in_browser("viewer")
    assert browser.get("/api/docs").status_code == 200


def test_metrics_count_requests_by_route_and_probes_pass_any_host(people):
    from prometheus_client.parser import text_string_to_metric_families

    call("get", "/api/pipelines", people["viewer"])
    Client().get("/api/pipelines/no-such-pipeline")
    # Probes and scrapers use the pod's address, which allowed_hosts does not list.
    assert Client(HTTP_HOST="10.1.2.3").get("/healthz").status_code == 200
    elsewhere = Client(HTTP_HOST="10.1.2.3", raise_request_exception=False)
    assert elsewhere.get("/api/pipelines").status_code == 400
    response = Client(HTTP_HOST="10.1.2.3").get("/metrics")
    assert response.status_code == 200
    counted = {(s.labels["method"], s.labels["route"], s.labels["status"]): s.value
               for family in text_string_to_metric_families(response.content.decode())
               for s in family.samples if s.name == "openanomaly_api_requests_total"}
    assert counted[("GET", "api/pipelines", "200")] >= 1
    # The route template, never the name asked for: labels stay bounded.
    assert counted[("GET", "api/pipelines/<name>", "401")] >= 1
    assert not any("no-such-pipeline" in route for _, route, _ in counted)


def recent_minutes(metric, hours=3, spike_at=-10):
    now = int(time.time() * 1000)
    stamps = np.arange(now - hours * 3_600_000, now, 60_000, dtype=np.int64)
    values = 100 + 10 * np.sin(np.arange(stamps.size) * 2 * np.pi / 60)
    values[spike_at] += 500
    return Series.of({"__name__": metric, "job": "api-test"}, stamps, values)


def spike_slot(source, spike_at=-10, schedule_ms=300_000):
    """The scheduled slot (Unix seconds) whose check window holds ``recent_minutes``'s
    spike: the first slot at or after it."""
    spike = int(source.timestamps_ms[spike_at])
    return str(-(-spike // schedule_ms) * schedule_ms // 1000)


def test_a_preview_shows_band_scores_and_alarms_without_writing(people, prom_client, unique):
    metric = unique("api_preview")
    prom_client.write([recent_minutes(metric)])
    spec = {"name": "draft", "query": metric, "model": "seasonal_naive", "step": "1m",
            "context": "1h", "schedule": "5m"}
    started = time.perf_counter()
    answer = call("post", "/api/preview", people["editor"], {"spec": spec, "hours": 2})
    assert answer.status_code == 200, answer.content
    shown = answer.json()
    print(f"\npreview of 2 h, 1 series, seasonal naive: {time.perf_counter() - started:.2f} s")
    (one,) = shown["series"]
    assert one["labels"]["job"] == "api-test"
    size = len(one["timestamps_ms"])
    assert size >= 100 and all(len(one[k]) == size for k in ("actual", "yhat", "lower",
                                                              "upper", "score"))
    assert one["timestamps_ms"] == sorted(one["timestamps_ms"])
    assert len(one["alarms_ms"]) >= 1, "the spike"
    assert state.current().store.list_stored() == [], "a preview saves nothing"
    assert prom_client.query_range('openanomaly_anomaly_score{pipeline="draft"}',
                                   int(time.time() * 1000) - 3_600_000,
                                   int(time.time() * 1000), 60_000) == []
    bad = call("post", "/api/preview", people["editor"],
               {"spec": {**spec, "query": "rate(up[5m"}})
    assert bad.status_code == 422 and "parse error" in bad.json()["error"]


def test_run_writes_one_slot_now(people, prom_client, unique):
    metric = unique("api_run")
    source = recent_minutes(metric)
    prom_client.write([source])
    spec = {"name": "live", "query": metric, "model": "seasonal_naive", "step": "1m",
            "context": "1h", "schedule": "5m"}
    assert call("post", "/api/pipelines", people["editor"], spec).status_code == 201
    ran = call("post", "/api/pipelines/live/run", people["editor"], {"at": "now"})
    assert ran.status_code == 200, ran.content
    assert ran.json()["status"] == "ok" and ran.json()["samples_written"] > 0
    assert call("post", "/api/pipelines/live/run", people["viewer"], {}).status_code == 403
    bad = call("post", "/api/pipelines/live/run", people["editor"], {"at": "teatime"})
    assert bad.status_code == 422 and bad.json()["error"].startswith("at: ")

    # The slot whose window holds the spike, then the anomaly it wrote, read back.
    assert call("post", "/api/pipelines/live/run", people["editor"],
                {"at": spike_slot(source)}).json()["anomalous_points"] >= 1
    found = call("get", "/api/pipelines/live/anomalies?hours=1", people["viewer"]).json()
    assert found and found[0]["score"] > 1 and found[0]["labels"]["job"] == "api-test"

    # Each run left the pipeline's status: the last one found the spike.
    status = call("get", "/api/pipelines/live/status", people["viewer"]).json()
    assert status["health"] == "ok" and status["scheduler"] == "embedded"
    last = status["last_run"]
    assert last["ok"] and last["error"] == "" and last["seconds"] > 0 and last["series"] == 1
    assert last["last_anomaly_ms"] == last["slot_ms"] and last["last_anomaly_score"] > 1
    assert call("get", "/api/pipelines/live/anomalies?hours=0",
                people["viewer"]).status_code == 422


def test_status_comes_from_the_slot_ledger_of_the_distributed_deployment(
        people, redis_server):  # noqa: F811
    call("post", "/api/pipelines", people["editor"], PIPELINE)
    context = state.current()
    embedded = call("get", "/api/pipelines/cpu/status", people["viewer"]).json()
    assert embedded == {"health": "never run", "scheduler": "embedded", "last_run": None,
                        "last_completed_ms": None, "completed_in_window": None,
                        "running": {}, "skipped": None, "last_error": None}
    ledger = RedisSlotLedger(redis_server.client(), prefix=f"api-{time.time_ns()}")
    ledger.complete("cpu", 1_700_000_000_000)
    ledger.record_error("cpu", 1_700_000_060_000, TimeoutError("model server slow"))
    context.ledger = ledger
    try:
        status = call("get", "/api/pipelines/cpu/status", people["viewer"]).json()
    finally:
        context.ledger = None
    assert status["scheduler"] == "celery" and status["last_completed_ms"] == 1_700_000_000_000
    assert status["last_error"]["kind"] == "TimeoutError"


def test_a_failing_run_shows_as_failing_with_its_error(people):
    spec = {**PIPELINE, "name": "broken", "query": "rate(up[5m]"}
    assert call("post", "/api/pipelines", people["editor"], spec).status_code == 201
    ran = call("post", "/api/pipelines/broken/run", people["editor"], {})
    assert ran.status_code == 422 and "parse error" in ran.json()["error"]
    status = call("get", "/api/pipelines/broken/status", people["viewer"]).json()
    assert status["health"] == "failing" and status["last_run"]["failures"] == 1
    assert "parse error" in status["last_run"]["error"]
    assert status["last_run"]["last_ok_slot_ms"] is None
    disabled = call("post", "/api/pipelines/broken/disable", people["editor"], {"version": 1})
    assert disabled.status_code == 200
    assert call("get", "/api/pipelines/broken/status",
                people["viewer"]).json()["health"] == "disabled"


def signed_in_browser(name):
    browser = Client(enforce_csrf_checks=True)
    answer = call("post", "/api/session", body={"name": name, "password": PASSWORD},
                  client=browser)
    assert answer.status_code == 200, answer.content
    return browser, browser.cookies["csrftoken"].value


def test_the_users_page_lets_admins_manage_users_and_tokens(people):
    assert Client().get("/users")["Location"] == "/login?next=/users"
    editor, _ = signed_in_browser("editor")
    assert editor.get("/users").status_code == 403
    admin, csrf = signed_in_browser("admin")
    page = admin.get("/users")
    assert page.status_code == 200 and b"viewer" in page.content

    def post(path, **form):
        return admin.post(path, data={**form, "csrfmiddlewaretoken": csrf})

    assert Client(enforce_csrf_checks=True).post("/users/new").status_code == 403, "CSRF"
    assert post("/users/new", name="dee", role="viewer", password=PASSWORD).status_code == 302
    assert state.current().users.get_user("dee").role == "viewer"
    shown = post("/users/dee/token", token="laptop")
    token = re.search(rb'id="new-token">(oa_[^<]+)<', shown.content)[1].decode()
    assert call("get", "/api/pipelines", token).status_code == 200
    assert token.encode() not in admin.get("/users").content, "shown once"
    (record,) = state.current().users.list_tokens("dee")
    assert post("/tokens/revoke", id=record.id).status_code == 302
    assert call("get", "/api/pipelines", token).status_code == 401
    post("/users/dee/role", role="editor")
    assert state.current().users.get_user("dee").role == "editor"
    refused = admin.get(post("/users/admin/delete")["Location"])
    assert b"cannot delete your own user" in refused.content
    post("/users/dee/delete")
    assert [u.name for u in state.current().users.list_users()] == ["admin", "editor",
                                                                    "viewer"]

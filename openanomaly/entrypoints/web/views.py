"""The web UI: server-rendered pages over the same store and services as the API.

Sign-in sets the same signed session the API accepts, so the pages' scripts call the API
(and the preview view) with the session and the CSRF token.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any
from urllib.parse import urlencode

import numpy as np
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme

from openanomaly.domain.errors import OpenAnomalyError, UnknownPipeline
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.run_state import health
from openanomaly.domain.series import Series
from openanomaly.domain.store import Role, StoredPipeline
from openanomaly.entrypoints.web import editor, state
from openanomaly.entrypoints.web.auth import LIMITER, RANK, session_user, sign_in
from openanomaly.services import accounts, run_status, runs
from openanomaly.services import preview as preview_service
from openanomaly.services.pipeline_admin import check_models, export_document

View = Callable[..., HttpResponse]


def signed_in(role: Role, methods: tuple[str, ...] = ("GET",)) -> Callable[[View], View]:
    """Pages for users of at least ``role``; others go to the sign-in page."""
    def decorate(view: View) -> View:
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                return HttpResponseNotAllowed(methods)
            user = session_user(request)
            if user is None:
                return HttpResponseRedirect(f"/login?next={request.path}")
            if RANK[user.role] < RANK[role]:
                return render(request, "openanomaly/error.html", {
                    "user": user, "message": f"This page needs the {role} role."}, status=403)
            request.user_record = user
            return view(request, *args, **kwargs)
        return checked
    return decorate


def login(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    error = ""
    if request.method == "POST":
        name, password = request.POST.get("name", ""), request.POST.get("password", "")
        address = request.META.get("REMOTE_ADDR", "")
        try:
            LIMITER.check(name, address)
        except Exception as exc:  # the limiter's 429
            return render(request, "openanomaly/login.html", {"error": str(exc)}, status=429)
        context = state.current()
        user = accounts.check_password(context.users, context.hasher, name, password)
        if user is not None:
            sign_in(request, user)
            target = request.GET.get("next", "/pipelines")
            # Only back into this site: never to another host ("//host", "https://host").
            safe = url_has_allowed_host_and_scheme(target, allowed_hosts=None)
            return HttpResponseRedirect(target if safe else "/pipelines")
        LIMITER.failed(name, address)
        error = "Wrong name or password."
    return render(request, "openanomaly/login.html", {"error": error},
                  status=401 if error else 200)


def logout(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    request.session.flush()
    return HttpResponseRedirect("/login")


@signed_in(Role.viewer)
def pipeline_list(request: HttpRequest) -> HttpResponse:
    """Every pipeline with its health and last run (from the run states the runs leave in
    the store); each row's last anomaly and score sparkline load on their own, from the
    time series database."""
    store = state.current().store
    states = store.run_states()
    rows = []
    for stored in store.list_stored():
        last = states.get(stored.spec.name)
        rows.append({
            "stored": stored, "last": last,
            "health": health(stored.spec.enabled, last),
            "finished": _when(last.finished_ms if last else None)})
    return render(request, "openanomaly/pipelines.html", {
        "user": request.user_record, "rows": rows})


@signed_in(Role.viewer)
def pipeline_sparkline(request: HttpRequest, name: str) -> HttpResponse:
    """The pipeline's last anomaly and the highest anomaly score of its series over the
    last day, as an inline SVG (a fragment the list page loads with htmx)."""
    context = state.current()
    try:
        spec = context.store.get_pipeline(name)
        end_ms = int(time.time() * 1000)
        peaks = preview_service.score_peaks(spec, end_ms - 86_400_000, end_ms, context.tsdb)
    except (OpenAnomalyError, ValueError) as exc:
        return render(request, "openanomaly/sparkline.html", {"problem": str(exc)})
    return render(request, "openanomaly/sparkline.html", sparkline(
        peaks, end_ms - 86_400_000, end_ms, spec.scoring.threshold))


def sparkline(peaks: Series | None, start_ms: int, end_ms: int, threshold: float,
              width: int = 160, height: int = 32) -> dict[str, Any]:
    """One bar per step on a ``width`` x ``height`` box (steps without scores stay
    empty) and the threshold as a line; the scale reaches at least 1.5 x the threshold,
    so quiet days look quiet."""
    if peaks is None or not np.isfinite(peaks.values).any():
        return {"empty": True, "width": width, "height": height}
    top = max(1.5 * threshold, float(np.nanmax(peaks.values)))
    span = max(1, end_ms - start_ms)
    times = peaks.timestamps_ms
    bar = max(1.0, width * float(np.min(np.diff(times))) / span) if times.size > 1 else 2.0

    def y(value: float) -> float:
        return round(height - (height - 1) * min(value, top) / top, 1)

    bars = [{"x": round(max(0.0, width * (t - start_ms) / span - bar), 1),
             "y": y(v), "height": round(height - y(v), 1), "alarm": v > threshold}
            for t, v in zip(times.tolist(), peaks.values.tolist(), strict=True)
            if math.isfinite(v)]
    above = [(t, v) for t, v in zip(times.tolist(), peaks.values.tolist(), strict=True)
             if v > threshold]
    return {"bars": bars, "bar_width": round(bar, 1), "width": width, "height": height,
            "threshold_y": y(threshold), "peak": float(np.nanmax(peaks.values)),
            "last_anomaly": _when(above[-1][0]) if above else None,
            "last_anomaly_score": above[-1][1] if above else None}


def _when(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


@signed_in(Role.viewer)
def pipeline_page(request: HttpRequest, name: str) -> HttpResponse:
    context = state.current()
    try:
        stored = context.store.get_stored(name)
    except UnknownPipeline as exc:
        return render(request, "openanomaly/error.html", {
            "user": request.user_record, "message": str(exc)}, status=404)
    anomalies: list[runs.Anomaly] = []
    problem = ""
    end_ms = int(time.time() * 1000)
    try:
        anomalies = runs.recent_anomalies(stored.spec, context.tsdb, end_ms - 86_400_000,
                                          end_ms, limit=50)
    except OpenAnomalyError as exc:
        problem = str(exc)
    last = context.store.run_state(name)
    return render(request, "openanomaly/pipeline.html", {
        "user": request.user_record, "stored": stored, "last": last,
        "health": health(stored.spec.enabled, last),
        "last_slot": _when(last.slot_ms if last else None),
        "last_finished": _when(last.finished_ms if last else None),
        "yaml": _yaml(stored.spec), "anomalies": anomalies, "problem": problem,
        "message": request.GET.get("message", "")})


@signed_in(Role.editor, methods=("POST",))
def pipeline_action(request: HttpRequest, name: str, action: str) -> HttpResponse:
    """Enable, disable or run a pipeline from its page."""
    context = state.current()
    message = ""
    try:
        stored = context.store.get_stored(name)
        version = int(request.POST.get("version", stored.version))
        if action in ("enable", "disable"):
            spec = stored.spec.model_copy(update={"enabled": action == "enable"})
            context.store.update(spec, version)
            message = f"{action}d"
        elif action == "run":
            at_ms = int(time.time() * 1000)
            result = run_status.recorded(context.store, name, at_ms, lambda: runs.run_pipeline(
                stored.spec, at_ms, context.tsdb, context.engine))
            message = (f"ran slot: {result.status}, {result.series} series, "
                       f"{result.anomalous_points} anomalous points")
    except (OpenAnomalyError, ValueError) as exc:
        message = f"error: {exc}"
    return HttpResponseRedirect(f"/pipelines/{name}?" + urlencode({"message": message}))


@signed_in(Role.editor, methods=("GET", "POST"))
def pipeline_edit(request: HttpRequest, name: str | None = None) -> HttpResponse:
    """The editor: a pipeline as a form or as YAML, a preview chart, save (create or
    update)."""
    context = state.current()
    stored = None
    if name is not None:
        try:
            stored = context.store.get_stored(name)
        except UnknownPipeline as exc:
            return render(request, "openanomaly/error.html", {
                "user": request.user_record, "message": str(exc)}, status=404)
    text = _yaml(stored.spec) if stored else NEW_PIPELINE
    view, error = request.GET.get("view", editor.FORM), ""
    if request.method == "POST":
        view = request.POST.get("view", editor.YAML)
        try:
            text = editor.posted_text(request.POST)
            spec = editor.parse_spec(text)
            check_models([spec], context.config.models)
            if stored is None:
                context.store.create(spec)
            else:
                if spec.name != stored.spec.name:
                    raise ValueError("the name cannot change here; create a new pipeline")
                context.store.update(spec, int(request.POST.get("version", "0")))
            return HttpResponseRedirect(f"/pipelines/{spec.name}?message=saved")
        except (OpenAnomalyError, ValueError) as exc:
            error = str(exc)
    return render(request, "openanomaly/edit.html", {
        "user": request.user_record, "stored": stored, "error": error,
        **_panel(view, text, stored)}, status=422 if error else 200)


@signed_in(Role.editor, methods=("POST",))
def editor_switch(request: HttpRequest) -> HttpResponse:
    """The editor's panel in the other view (htmx), carrying over what was typed."""
    to = request.GET.get("to", editor.YAML)
    stored = None
    if request.POST.get("stored"):
        try:
            stored = state.current().store.get_stored(request.POST["stored"])
        except UnknownPipeline:
            stored = None
    try:
        text = editor.posted_text(request.POST)
        editor.parse_document(text)
    except ValueError as exc:
        # Unparsable YAML has no form view: stay, and say what to fix.
        return render(request, "openanomaly/editor_panel.html", {
            **_panel(editor.YAML, request.POST.get("yaml", ""), stored),
            "switch_error": f"fix the YAML first: {exc}"})
    return render(request, "openanomaly/editor_panel.html", _panel(to, text, stored))


@signed_in(Role.editor, methods=("POST",))
def editor_check(request: HttpRequest) -> HttpResponse:
    """Inline validation while typing (htmx): the first problems, or that it is valid."""
    try:
        spec = editor.parse_spec(editor.posted_text(request.POST))
        check_models([spec], state.current().config.models)
    except (OpenAnomalyError, ValueError) as exc:
        return render(request, "openanomaly/editor_check.html", {"error": str(exc)})
    return render(request, "openanomaly/editor_check.html", {"spec": spec})


def _panel(view: str, text: str, stored: StoredPipeline | None) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if view == editor.FORM:
        try:
            fields = editor.form_fields(text)
        except ValueError:
            view = editor.YAML  # text that does not parse is shown as it is
    models = sorted(state.current().config.models)
    if fields.get("model") and fields["model"] not in models:
        models.append(fields["model"])
    return {"view": view, "yaml": text, "fields": fields, "models": models,
            "directions": editor.DIRECTIONS, "stored": stored}


@signed_in(Role.viewer)
def pipeline_chart(request: HttpRequest, name: str) -> JsonResponse:
    """The pipeline page's chart: actual values and what the pipeline wrote (JSON)."""
    context = state.current()
    try:
        spec = context.store.get_pipeline(name)
        hours = float(request.GET.get("hours", "24"))
        if not 0 < hours <= 168:
            raise ValueError("hours must be above 0 and at most 168")
        end_ms = int(time.time() * 1000)
        shown = preview_service.history(spec, end_ms - int(hours * 3_600_000), end_ms,
                                        context.tsdb)
    except UnknownPipeline as exc:
        return JsonResponse({"error": str(exc)}, status=404)
    except (OpenAnomalyError, ValueError) as exc:
        return JsonResponse({"error": str(exc)}, status=422)
    return JsonResponse({"pipeline": name, "threshold": spec.scoring.threshold,
                         "series": [one.as_json() for one in shown.series]})


@signed_in(Role.editor, methods=("POST",))
def pipeline_preview(request: HttpRequest) -> JsonResponse:
    """The preview chart's data for the editor's YAML (JSON, as POST /api/preview)."""
    context = state.current()
    try:
        spec = editor.parse_spec(editor.posted_text(request.POST))
        check_models([spec], context.config.models)
        hours = float(request.POST.get("hours", "6"))
        if not 0 < hours <= 168:
            raise ValueError("hours must be above 0 and at most 168")
        end_ms = int(time.time() * 1000)
        shown = preview_service.preview(spec, end_ms - int(hours * 3_600_000), end_ms,
                                        context.tsdb, context.engine)
    except (OpenAnomalyError, ValueError) as exc:
        return JsonResponse({"error": str(exc)}, status=422)
    return JsonResponse({"pipeline": shown.pipeline, "seconds": shown.seconds,
                         "threshold": spec.scoring.threshold,
                         "series": [one.as_json() for one in shown.series]})


def _yaml(spec: PipelineSpec) -> str:
    return editor.dump(export_document(spec))


NEW_PIPELINE = """name: my-pipeline
query: sum by (service) (rate(http_requests_total[5m]))
model: fracast
step: 1m
context: 1d
schedule: 5m
"""


@signed_in(Role.admin)
def users_page(request: HttpRequest) -> HttpResponse:
    return _users(request, "", request.GET.get("message", ""))


def _users(request: HttpRequest, new_token: str, message: str) -> HttpResponse:
    """Users with their roles and tokens; a new token is shown on this page once."""
    store = state.current().users
    tokens: dict[str, list[Any]] = {}
    for token in store.list_tokens():
        tokens.setdefault(token.user, []).append(token)
    return render(request, "openanomaly/users.html", {
        "user": request.user_record, "roles": [str(role) for role in Role],
        "people": [(person, tokens.get(person.name, [])) for person in store.list_users()],
        "new_token": new_token, "message": message})


@signed_in(Role.admin, methods=("POST",))
def users_action(request: HttpRequest, action: str, name: str = "") -> HttpResponse:
    """Create, change or delete a user; create or revoke a token."""
    context = state.current()
    form = request.POST
    try:
        if action == "create":
            accounts.create_user(context.users, context.hasher, form.get("name", ""),
                                 form.get("role", "viewer"), form.get("password", ""))
            message = f"created user {form.get('name')}"
        elif action == "role":
            accounts.change_user(context.users, context.hasher, name, role=Role(form["role"]))
            message = f"{name} is now a {form['role']}"
        elif action == "delete":
            if name == request.user_record.name:
                raise ValueError("you cannot delete your own user; ask another admin")
            context.users.delete_user(name)
            message = f"deleted user {name}"
        elif action == "token":
            record, token = accounts.issue_token(context.users, name, form.get("token", "") or "ui")
            # Shown in this answer only: a redirect would put the token in a URL.
            return _users(request, token, f"token {record.name} for {name}")
        elif action == "revoke":
            context.users.revoke_token(form.get("id", ""))
            message = "token revoked"
        else:
            return HttpResponse(status=404)
    except (OpenAnomalyError, ValueError, KeyError) as exc:
        message = f"error: {exc}"
    return HttpResponseRedirect("/users?" + urlencode({"message": message}))

"""The web UI: server-rendered pages over the same store and services as the API.

Sign-in sets the same signed session the API accepts, so the pages' scripts call the API
(and the preview view) with the session and the CSRF token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

import yaml
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from pydantic import ValidationError

from openanomaly.domain.errors import OpenAnomalyError, UnknownPipeline
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.store import Role
from openanomaly.entrypoints.web import state
from openanomaly.entrypoints.web.auth import LIMITER, RANK, session_user, sign_in
from openanomaly.services import accounts, runs
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
    stored = state.current().store.list_stored()
    return render(request, "openanomaly/pipelines.html", {
        "user": request.user_record, "pipelines": stored})


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
    return render(request, "openanomaly/pipeline.html", {
        "user": request.user_record, "stored": stored,
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
            result = runs.run_pipeline(stored.spec, int(time.time() * 1000), context.tsdb,
                                       context.engine)
            message = (f"ran slot: {result.status}, {result.series} series, "
                       f"{result.anomalous_points} anomalous points")
    except (OpenAnomalyError, ValueError) as exc:
        message = f"error: {exc}"
    return HttpResponseRedirect(f"/pipelines/{name}?" + urlencode({"message": message}))


@signed_in(Role.editor, methods=("GET", "POST"))
def pipeline_edit(request: HttpRequest, name: str | None = None) -> HttpResponse:
    """The editor: YAML of one pipeline, a preview chart, save (create or update)."""
    context = state.current()
    stored = None
    if name is not None:
        try:
            stored = context.store.get_stored(name)
        except UnknownPipeline as exc:
            return render(request, "openanomaly/error.html", {
                "user": request.user_record, "message": str(exc)}, status=404)
    text = _yaml(stored.spec) if stored else NEW_PIPELINE
    error = ""
    if request.method == "POST":
        text = request.POST.get("yaml", "")
        try:
            spec = parse_spec(text)
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
        "user": request.user_record, "stored": stored, "yaml": text,
        "error": error}, status=422 if error else 200)


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
        spec = parse_spec(request.POST.get("yaml", ""))
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


def parse_spec(text: str) -> PipelineSpec:
    """A pipeline from the editor's YAML; errors name the field."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"malformed YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError("expected one pipeline: a mapping with name, query, ...")
    try:
        return PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        raise ValueError("; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'pipeline'}: {e['msg']}"
            for e in exc.errors())) from None


def _yaml(spec: PipelineSpec) -> str:
    return yaml.safe_dump(export_document(spec), sort_keys=False, allow_unicode=True)


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

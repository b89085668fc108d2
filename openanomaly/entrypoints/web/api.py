"""The REST API (django-ninja): pipelines, models, users and tokens, sign-in.

Every operation but sign-in needs a bearer token or a signed-in session; viewers read,
editors change pipelines, admins manage users and tokens. Errors are ``{"error": "..."}``.
Pipelines carry a version: a change sent with an older version than the stored one is
refused with 409, so two editors never overwrite each other.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from ninja import NinjaAPI, Router, Schema, Status
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from pydantic import Field

from openanomaly import __version__
from openanomaly.domain.errors import (
    ConfigError,
    ModelError,
    PipelineError,
    ReadOnlyStore,
    StoreConflict,
    TSDBError,
    UnknownPipeline,
    UnknownUser,
    is_retryable,
)
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.run_state import health
from openanomaly.domain.store import ApiToken, Role, StoredPipeline, User
from openanomaly.domain.timeutil import parse_time
from openanomaly.entrypoints.web import state
from openanomaly.entrypoints.web.auth import (
    LIMITER,
    BearerToken,
    SessionCookie,
    api_docs_signed_in,
    require,
    sign_in,
)
from openanomaly.services import accounts, run_status, runs
from openanomaly.services import preview as preview_service
from openanomaly.services.pipeline_admin import check_models

api = NinjaAPI(title="OpenAnomaly", version=__version__, auth=[BearerToken(), SessionCookie()],
               urls_namespace="api", docs_url="/docs", docs_decorator=api_docs_signed_in)


# -- answers --------------------------------------------------------------------------------

class ErrorOut(Schema):
    error: str


class PipelineOut(Schema):
    name: str
    version: int
    updated_ms: int
    enabled: bool
    spec: dict[str, Any]


class VersionIn(Schema):
    version: int = Field(ge=1, description="the version the change was made against")


class PipelineUpdate(Schema):
    version: int = Field(ge=1, description="the version the change was made against")
    spec: PipelineSpec


class UserOut(Schema):
    name: str
    role: Role
    created_ms: int


class UserIn(Schema):
    name: str
    role: Role = Role.viewer
    password: str


class UserChange(Schema):
    role: Role | None = None
    password: str | None = None


class TokenIn(Schema):
    name: str = Field(min_length=1, max_length=100)


class TokenOut(Schema):
    id: str
    user: str
    name: str
    created_ms: int
    last_used_ms: int | None


class NewTokenOut(TokenOut):
    token: str = Field(description="shown only in this answer; the store keeps a digest")


class SignIn(Schema):
    name: str
    password: str


class Me(Schema):
    name: str
    role: Role


def _pipeline(stored: StoredPipeline) -> PipelineOut:
    return PipelineOut(name=stored.spec.name, version=stored.version,
                       updated_ms=stored.updated_ms, enabled=stored.spec.enabled,
                       spec=stored.spec.model_dump(mode="json"))


def _user(user: User) -> UserOut:
    return UserOut(name=user.name, role=user.role, created_ms=user.created_ms)


def _token(token: ApiToken) -> TokenOut:
    return TokenOut(id=token.id, user=token.user, name=token.name,
                    created_ms=token.created_ms, last_used_ms=token.last_used_ms)


# -- errors ---------------------------------------------------------------------------------

def _error(request: HttpRequest, status: int, message: str) -> HttpResponse:
    return api.create_response(request, {"error": message}, status=status)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _error(request, 401, "sign in, or send Authorization: Bearer <token>")


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return _error(request, exc.status_code, str(exc))


@api.exception_handler(NinjaValidationError)
def _invalid(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    problems = []
    for error in exc.errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        problems.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return _error(request, 422, "; ".join(problems))


@api.exception_handler(UnknownPipeline)
@api.exception_handler(UnknownUser)
def _not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
    return _error(request, 404, str(exc))


@api.exception_handler(StoreConflict)
@api.exception_handler(ReadOnlyStore)
def _conflict(request: HttpRequest, exc: Exception) -> HttpResponse:
    return _error(request, 409, str(exc))


@api.exception_handler(ConfigError)
@api.exception_handler(PipelineError)
def _unprocessable(request: HttpRequest, exc: Exception) -> HttpResponse:
    return _error(request, 422, str(exc))


@api.exception_handler(TSDBError)
@api.exception_handler(ModelError)
def _upstream_failed(request: HttpRequest, exc: Exception) -> HttpResponse:
    # A database or model server that failed may answer next time (502 / 503); a query,
    # a write or a model that can never work is the request's own problem (422).
    if not is_retryable(exc):
        return _unprocessable(request, exc)
    return _error(request, 502 if isinstance(exc, TSDBError) else 503, str(exc))


ERRORS: dict[int | str, Any] = {code: ErrorOut for code in (401, 403, 404, 409, 422)}


# -- session --------------------------------------------------------------------------------

session = Router(tags=["session"])


@session.post("", auth=None, response={200: Me, 401: ErrorOut, 429: ErrorOut, 422: ErrorOut})
def create_session(request: HttpRequest, body: SignIn) -> Me:
    """Sign in with a name and password: sets the session cookie (and the CSRF cookie that
    unsafe requests of the session must echo in X-CSRFToken)."""
    address = request.META.get("REMOTE_ADDR", "")
    LIMITER.check(body.name, address)
    context = state.current()
    user = accounts.check_password(context.users, context.hasher, body.name, body.password)
    if user is None:
        LIMITER.failed(body.name, address)
        raise HttpError(401, "wrong name or password")
    sign_in(request, user)
    get_token(request)
    return Me(name=user.name, role=user.role)


@session.delete("", response={204: None, 401: ErrorOut})
def delete_session(request: HttpRequest) -> Status[None]:
    """Sign out."""
    request.session.flush()
    return Status(204, None)


@session.get("", response={200: Me, 401: ErrorOut})
def me(request: HttpRequest) -> Me:
    user = require(request, Role.viewer)
    return Me(name=user.name, role=user.role)


# -- pipelines ------------------------------------------------------------------------------

pipelines = Router(tags=["pipelines"])


@pipelines.get("", response={200: list[PipelineOut], **ERRORS})
def list_pipelines(request: HttpRequest) -> list[PipelineOut]:
    require(request, Role.viewer)
    return [_pipeline(stored) for stored in state.current().store.list_stored()]


@pipelines.post("", response={201: PipelineOut, **ERRORS})
def create_pipeline(request: HttpRequest, spec: PipelineSpec) -> Status[PipelineOut]:
    require(request, Role.editor)
    context = state.current()
    check_models([spec], context.config.models)
    return Status(201, _pipeline(context.store.create(spec)))


@pipelines.get("/{name}", response={200: PipelineOut, **ERRORS})
def get_pipeline(request: HttpRequest, name: str) -> PipelineOut:
    require(request, Role.viewer)
    return _pipeline(state.current().store.get_stored(name))


@pipelines.put("/{name}", response={200: PipelineOut, **ERRORS})
def update_pipeline(request: HttpRequest, name: str, body: PipelineUpdate) -> PipelineOut:
    require(request, Role.editor)
    if body.spec.name != name:
        raise HttpError(422, f"spec.name {body.spec.name!r} differs from the pipeline {name!r} "
                             "in the URL; a pipeline is renamed by creating the new one and "
                             "deleting the old")
    context = state.current()
    check_models([body.spec], context.config.models)
    return _pipeline(context.store.update(body.spec, body.version))


def _set_enabled(request: HttpRequest, name: str, version: int, enabled: bool) -> PipelineOut:
    require(request, Role.editor)
    store = state.current().store
    spec = store.get_stored(name).spec.model_copy(update={"enabled": enabled})
    return _pipeline(store.update(spec, version))


@pipelines.post("/{name}/enable", response={200: PipelineOut, **ERRORS})
def enable_pipeline(request: HttpRequest, name: str, body: VersionIn) -> PipelineOut:
    return _set_enabled(request, name, body.version, True)


@pipelines.post("/{name}/disable", response={200: PipelineOut, **ERRORS})
def disable_pipeline(request: HttpRequest, name: str, body: VersionIn) -> PipelineOut:
    return _set_enabled(request, name, body.version, False)


@pipelines.delete("/{name}", response={204: None, **ERRORS})
def delete_pipeline(request: HttpRequest, name: str,
                    version: int | None = None) -> Status[None]:
    require(request, Role.editor)
    state.current().store.delete(name, version)
    return Status(204, None)


class RunIn(Schema):
    at: str = Field(default="now", description="the slot: RFC 3339, Unix seconds, now-1h")


@pipelines.post("/{name}/run", response={200: dict[str, Any], **ERRORS, 502: ErrorOut,
                                          503: ErrorOut})
def run_pipeline(request: HttpRequest, name: str, body: RunIn) -> dict[str, Any]:
    """Run one slot of the pipeline now (as `openanomaly run-once`) and write its outputs."""
    require(request, Role.editor)
    context = state.current()
    spec = context.store.get_pipeline(name)
    try:
        at_ms = parse_time(body.at, int(time.time() * 1000))
    except ValueError as exc:
        raise HttpError(422, f"at: {exc}") from None
    result = asdict(run_status.recorded(context.store, spec.name, at_ms, lambda: runs.run_pipeline(
        spec, at_ms, context.tsdb, context.engine)))
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in result.items()}


class AnomalyOut(Schema):
    labels: dict[str, str]
    at_ms: int
    score: float


@pipelines.get("/{name}/anomalies", response={200: list[AnomalyOut], **ERRORS, 502: ErrorOut})
def list_anomalies(request: HttpRequest, name: str, hours: float = 24.0) -> list[AnomalyOut]:
    """Points the pipeline scored above its threshold in the last ``hours`` (up to 30
    days), newest first (at most 500), read from the time series database."""
    require(request, Role.viewer)
    if not 0 < hours <= 24 * 30:
        raise HttpError(422, f"hours must be above 0 and at most 720, got {hours}")
    context = state.current()
    spec = context.store.get_pipeline(name)
    end_ms = int(time.time() * 1000)
    found = runs.recent_anomalies(spec, context.tsdb, end_ms - int(hours * 3_600_000), end_ms)
    return [AnomalyOut(labels=a.labels, at_ms=a.at_ms, score=a.score) for a in found]


class LastRunOut(Schema):
    slot_ms: int
    finished_ms: int
    seconds: float = Field(description="how long the last run took")
    ok: bool
    error: str
    series: int
    anomalous_points: int
    max_score: float | None
    last_ok_slot_ms: int | None
    last_anomaly_ms: int | None
    last_anomaly_score: float | None
    failures: int = Field(description="failed runs in a row")
    status: str = Field(default="ok", description="the last run's status: ok, partial, stale, "
                        "no_data, already_written, failed")


class StatusOut(Schema):
    health: str = Field(description="ok, failing (the last run failed), disabled, or "
                                    "never run")
    scheduler: str
    last_run: LastRunOut | None = None
    last_completed_ms: int | None = None
    completed_in_window: int | None = None
    running: dict[str, str] = Field(default_factory=dict)
    skipped: int | None = None
    last_error: dict[str, str] | None = None


@pipelines.get("/{name}/status", response={200: StatusOut, **ERRORS})
def pipeline_status(request: HttpRequest, name: str) -> StatusOut:
    """How the pipeline's runs go: the last run (slot, duration, outcome, error, last
    anomaly), recorded by whichever process ran it; with the Celery scheduler also the slot
    ledger (last completed slot, running slots, missed slots, last error)."""
    require(request, Role.viewer)
    context = state.current()
    spec = context.store.get_pipeline(name)
    last = context.store.run_state(spec.name)
    answer = StatusOut(health=health(spec.enabled, last),
                       scheduler="embedded" if context.ledger is None else "celery",
                       last_run=LastRunOut(**last.as_json()) if last else None)
    if context.ledger is None:
        return answer
    status = context.ledger.status(spec.name)
    return answer.model_copy(update={
        "last_completed_ms": status.last_completed_ms,
        "completed_in_window": status.completed_in_window,
        "running": {str(slot): owner for slot, owner in status.running.items()},
        "skipped": status.skipped, "last_error": status.last_error})


class PreviewIn(Schema):
    spec: PipelineSpec
    hours: float = Field(default=24.0, gt=0, le=168, description="how far back to replay")


class SeriesPreviewOut(Schema):
    labels: dict[str, str]
    timestamps_ms: list[int]
    actual: list[float | None]
    yhat: list[float | None]
    lower: list[float | None]
    upper: list[float | None]
    score: list[float | None]
    alarms_ms: list[int]


class PreviewOut(Schema):
    pipeline: str
    seconds: float
    series: list[SeriesPreviewOut]


preview = Router(tags=["pipelines"])


@preview.post("", response={200: PreviewOut, **ERRORS, 502: ErrorOut, 503: ErrorOut})
def preview_pipeline(request: HttpRequest, body: PreviewIn) -> PreviewOut:
    """An unsaved pipeline replayed over the last ``hours`` through the production check:
    actual, median, band, score and the alarms it would have raised. Nothing is written."""
    require(request, Role.editor)
    context = state.current()
    check_models([body.spec], context.config.models)
    end_ms = int(time.time() * 1000)
    shown = preview_service.preview(body.spec, end_ms - int(body.hours * 3_600_000), end_ms,
                                    context.tsdb, context.engine)
    return PreviewOut(pipeline=shown.pipeline, seconds=shown.seconds,
                      series=[SeriesPreviewOut(**one.as_json()) for one in shown.series])


# -- models ---------------------------------------------------------------------------------

models = Router(tags=["models"])


@models.get("", response={200: list[dict[str, Any]], **ERRORS})
def list_models(request: HttpRequest) -> list[dict[str, Any]]:
    """The configured models pipelines can name."""
    require(request, Role.viewer)
    configured = state.current().config.models
    return [{"name": name, "backend": settings.backend}
            for name, settings in sorted(configured.items())]


# -- users and tokens (admins) --------------------------------------------------------------

users = Router(tags=["users"])


@users.get("", response={200: list[UserOut], **ERRORS})
def list_users(request: HttpRequest) -> list[UserOut]:
    require(request, Role.admin)
    return [_user(user) for user in state.current().users.list_users()]


@users.post("", response={201: UserOut, **ERRORS})
def add_user(request: HttpRequest, body: UserIn) -> Status[UserOut]:
    require(request, Role.admin)
    context = state.current()
    user = accounts.create_user(context.users, context.hasher, body.name, body.role,
                                body.password)
    return Status(201, _user(user))


@users.patch("/{name}", response={200: UserOut, **ERRORS})
def update_user(request: HttpRequest, name: str, body: UserChange) -> UserOut:
    require(request, Role.admin)
    context = state.current()
    return _user(accounts.change_user(context.users, context.hasher, name, body.role,
                                      body.password))


@users.delete("/{name}", response={204: None, **ERRORS})
def remove_user(request: HttpRequest, name: str) -> Status[None]:
    admin = require(request, Role.admin)
    if name == admin.name:
        raise HttpError(409, "an admin cannot delete their own user; ask another admin")
    state.current().users.delete_user(name)
    return Status(204, None)


@users.get("/{name}/tokens", response={200: list[TokenOut], **ERRORS})
def list_tokens(request: HttpRequest, name: str) -> list[TokenOut]:
    require(request, Role.admin)
    store = state.current().users
    store.get_user(name)
    return [_token(token) for token in store.list_tokens(name)]


@users.post("/{name}/tokens", response={201: NewTokenOut, **ERRORS})
def add_token(request: HttpRequest, name: str, body: TokenIn) -> Status[NewTokenOut]:
    require(request, Role.admin)
    record, token = accounts.issue_token(state.current().users, name, body.name)
    return Status(201, NewTokenOut(**_token(record).model_dump(), token=token))


tokens = Router(tags=["users"])


@tokens.delete("/{token_id}", response={204: None, **ERRORS})
def revoke_token(request: HttpRequest, token_id: str) -> Status[None]:
    require(request, Role.admin)
    state.current().users.revoke_token(token_id)
    return Status(204, None)


api.add_router("/session", session)
api.add_router("/pipelines", pipelines)
api.add_router("/preview", preview)
api.add_router("/models", models)
api.add_router("/users", users)
api.add_router("/tokens", tokens)

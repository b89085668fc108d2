"""Who is asking: a bearer token (API clients) or a signed session cookie (the UI, with
CSRF protection), and whether their role allows what they ask."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja.errors import HttpError
from ninja.security import APIKeyCookie, HttpBearer

from openanomaly.domain.errors import UnknownUser
from openanomaly.domain.store import Role, User
from openanomaly.entrypoints.web import state
from openanomaly.services.accounts import user_of_token

RANK = {Role.viewer: 0, Role.editor: 1, Role.admin: 2}
SESSION_USER = "openanomaly_user"
SESSION_FINGERPRINT = "openanomaly_fingerprint"


def _now_ms() -> int:
    return int(time.time() * 1000)


def fingerprint(user: User) -> str:
    """Changes when the password or the role changes, ending sessions signed in before."""
    return hashlib.sha256(f"{user.password_hash}|{user.role}".encode()).hexdigest()[:32]


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> User | None:
        return user_of_token(state.current().users, token, _now_ms())


class SessionCookie(APIKeyCookie):
    """The signed session cookie set by signing in; unsafe methods also need the CSRF
    token (header X-CSRFToken), as Django checks it."""

    param_name = "sessionid"

    def authenticate(self, request: HttpRequest, key: str | None) -> User | None:
        return session_user(request) if key else None


def session_user(request: HttpRequest) -> User | None:
    """The user signed in on this session, while their password and role are unchanged."""
    name = request.session.get(SESSION_USER)
    if not name:
        return None
    try:
        user = state.current().users.get_user(name)
    except UnknownUser:
        return None
    return user if request.session.get(SESSION_FINGERPRINT) == fingerprint(user) else None


def api_docs_signed_in(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The OpenAPI document and its interactive page: for signed-in users and token
    holders only, as everything else but health."""
    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = session_user(request)
        header = request.headers.get("Authorization", "")
        if user is None and header.lower().startswith("bearer "):
            user = user_of_token(state.current().users, header[7:].strip(), _now_ms())
        if user is None:
            return JsonResponse({"error": "sign in, or send Authorization: Bearer <token>"},
                                status=401)
        return view(request, *args, **kwargs)
    return checked


def sign_in(request: HttpRequest, user: User) -> None:
    request.session.cycle_key()
    request.session[SESSION_USER] = user.name
    request.session[SESSION_FINGERPRINT] = fingerprint(user)


def require(request: HttpRequest, role: Role) -> User:
    """The signed-in user, when their role is at least ``role``; 403 otherwise."""
    user = request.auth
    assert isinstance(user, User), "every operation but sign-in and health is authenticated"
    if RANK[user.role] < RANK[role]:
        raise HttpError(403, f"this needs the {role} role; {user.name} is a {user.role}")
    return user


class LoginLimiter:
    """At most ``attempts`` failed sign-ins per user name and per client address within
    ``window_s``: guessing passwords gets slow. Kept in this process."""

    def __init__(self, attempts: int = 5, window_s: float = 300.0) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> int:
        failures = self._failures.get(key)
        if failures is None:
            return 0
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[key]  # names tried once do not pile up
        return len(failures)

    def check(self, name: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (f"user:{name}", f"address:{address}"):
                if self._recent(key, now) >= self.attempts:
                    raise HttpError(429, "too many failed sign-ins; wait a few minutes")

    def failed(self, name: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (f"user:{name}", f"address:{address}"):
                self._recent(key, now)
                self._failures[key].append(now)


LIMITER = LoginLimiter()

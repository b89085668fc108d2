"""Who is asking: a bearer token (API clients) or a signed session cookie (the UI, with
CSRF protection), and whether their role allows what they ask."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja.errors import HttpError
from ninja.security import APIKeyCookie, HttpBearer

from openanomaly.domain.errors import UnknownUser
from openanomaly.domain.store import Role, User
from openanomaly.entrypoints.web import state
from openanomaly.services.accounts import user_of_token

log = logging.getLogger(__name__)
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
    ``window_s`` of the first: guessing passwords gets slow. The counts live in Django's
    cache, which is shared by every api process (Redis in the distributed deployment, a
    folder beside the SQLite store on one machine; see bootstrap.web_cache)."""

    def __init__(self, attempts: int = 5, window_s: int = 300) -> None:
        self.attempts = attempts
        self.window_s = window_s

    @staticmethod
    def _keys(name: str, address: str) -> list[str]:
        # Hashed: a user name may hold anything, a cache key may not.
        return [f"openanomaly:login:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"
                for kind, value in (("user", name), ("address", address))]

    def check(self, name: str, address: str) -> None:
        try:
            counts = cache.get_many(self._keys(name, address))
        except Exception as exc:  # the cache is down: sign-in still works, and says so
            log.warning("login limiter unavailable", extra={"error": str(exc)})
            return
        if any(count >= self.attempts for count in counts.values()):
            raise HttpError(429, "too many failed sign-ins; wait a few minutes")

    def failed(self, name: str, address: str) -> None:
        for key in self._keys(name, address):
            try:
                cache.add(key, 0, timeout=self.window_s)
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.set(key, 1, timeout=self.window_s)
            except Exception as exc:
                log.warning("login limiter unavailable", extra={"error": str(exc)})


LIMITER = LoginLimiter()

"""Users and API tokens: creation, password and token checks."""

from __future__ import annotations

import secrets
from typing import Protocol

from openanomaly.domain.errors import ConfigError, UnknownUser
from openanomaly.domain.store import (
    TOKEN_PREFIX,
    ApiToken,
    Role,
    User,
    check_user_name,
    token_digest,
)
from openanomaly.ports import UserStore

MIN_PASSWORD_LENGTH = 12


class PasswordHasher(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, password: str, encoded: str) -> bool: ...


def create_user(store: UserStore, hasher: PasswordHasher, name: str, role: Role | str,
                password: str) -> User:
    """A new user; refuses a malformed name, an unknown role or a short password."""
    try:
        check_user_name(name)
        role = Role(role)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return store.create_user(name, role, new_password_hash(hasher, password))


def change_user(store: UserStore, hasher: PasswordHasher, name: str,
                role: Role | None = None, password: str | None = None) -> User:
    """A new role and/or password; the password obeys the same rules as a new user's."""
    password_hash = new_password_hash(hasher, password) if password is not None else None
    return store.update_user(name, role=role, password_hash=password_hash)


def new_password_hash(hasher: PasswordHasher, password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return hasher.hash(password)


def check_password(store: UserStore, hasher: PasswordHasher, name: str,
                   password: str) -> User | None:
    try:
        user = store.get_user(name)
    except UnknownUser:
        # Hash anyway, so an unknown name takes as long to refuse as a wrong password.
        hasher.hash(password)
        return None
    return user if hasher.verify(password, user.password_hash) else None


def issue_token(store: UserStore, user: str, name: str) -> tuple[ApiToken, str]:
    """A new API token for ``user``: the stored record, and the token itself, which is
    shown once and kept nowhere."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return store.add_token(user, name, token_digest(token)), token


def user_of_token(store: UserStore, token: str, now_ms: int) -> User | None:
    """The user a bearer token belongs to (recording the use), or None when the token is
    unknown or revoked."""
    found = store.token_by_hash(token_digest(token))
    if found is None:
        return None
    store.touch_token(found.id, now_ms)
    try:
        return store.get_user(found.user)
    except UnknownUser:
        return None

"""Password hashes with Django's hashers (PBKDF2-SHA256 by default), the same format the
web sign-in checks, so a user created on the command line signs in to the UI."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import hashers


def _ready() -> None:
    # The hashers read their list from Django's settings; outside the web process (the
    # command line) nothing has configured them yet.
    if not settings.configured:
        settings.configure()


class DjangoPasswordHasher:
    def hash(self, password: str) -> str:
        _ready()
        return str(hashers.make_password(password))

    def verify(self, password: str, encoded: str) -> bool:
        _ready()
        return bool(hashers.check_password(password, encoded))

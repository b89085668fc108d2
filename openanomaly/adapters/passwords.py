"""Password hashes with Django's PBKDF2-SHA256 hasher, the format Django itself stores, so
a user created on the command line signs in to the web service.

The hasher is used directly rather than through ``make_password``: that would read Django's
settings, which only the web process configures.
"""

from __future__ import annotations

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class DjangoPasswordHasher:
    def __init__(self) -> None:
        self._hasher = PBKDF2PasswordHasher()

    def hash(self, password: str) -> str:
        return str(self._hasher.encode(password, self._hasher.salt()))

    def verify(self, password: str, encoded: str) -> bool:
        if not encoded.startswith(f"{self._hasher.algorithm}$"):
            return False
        return bool(self._hasher.verify(password, encoded))

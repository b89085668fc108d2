"""Secrets out of anything shown: every URL or error text that is printed, logged, stored
(the slot ledger, run states) or served goes through ``redact`` first.

URLs may carry credentials (``http://user:password@host``, ``redis://:password@host``,
``?token=...``); exception texts often quote the URL they failed on.
"""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@  or  scheme://:password@  or  scheme://token@
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s@?#]*)@")
# ?token=... &password=... (query parameters whose name says secret)
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;](?:[a-z0-9_.-]*(?:token|password|passwd|pwd|secret|key|auth|signature|"
    r"credential)[a-z0-9_.-]*))=(?P<value>[^&#\s'\"]*)", re.IGNORECASE)
# Authorization: Bearer xyz / Basic xyz quoted in an error
_AUTH_HEADER = re.compile(r"(?P<kind>\b(?:Bearer|Basic)\s+)(?P<value>[A-Za-z0-9._~+/=-]{8,})")


def redact(text: str) -> str:
    """``text`` with URL credentials, secret query parameters and bearer/basic
    credentials masked; the rest (host, port, path) kept so the message still helps."""
    if not text:
        return text

    def userinfo(match: re.Match[str]) -> str:
        user, _, _password = match["userinfo"].partition(":")
        # Keep a user name that is only a name; any password part is a secret.
        shown = f"{user}:{MASK}" if _password or not user else MASK
        return f"{match['scheme']}{shown}@"

    text = _USERINFO.sub(userinfo, text)
    text = _SECRET_PARAM.sub(lambda m: f"{m['name']}={MASK}", text)
    return _AUTH_HEADER.sub(lambda m: f"{m['kind']}{MASK}", text)

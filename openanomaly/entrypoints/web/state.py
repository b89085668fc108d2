"""The web service's adapters, set once per process before the first request."""

from __future__ import annotations

from openanomaly.bootstrap import ApiContext

_context: ApiContext | None = None


def use(context: ApiContext) -> None:
    global _context
    _context = context


def current() -> ApiContext:
    if _context is None:
        raise RuntimeError("the web service was started without its context (state.use)")
    return _context

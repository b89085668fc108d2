"""What the HTTP adapters share: retry waits and context-manager support."""

from __future__ import annotations

import random
from typing import Self

import httpx


def full_jitter(retry: int, base: float, cap: float) -> float:
    """A wait in [0, min(cap, base * 2**retry)]: clients that failed together spread out
    instead of retrying together."""
    return random.uniform(0.0, min(cap, base * 2**retry))


def retry_after(response: httpx.Response | None) -> float | None:
    """The Retry-After header in seconds, or None when absent or an HTTP date."""
    if response is None:
        return None
    header = response.headers.get("Retry-After")
    if header is None:
        return None
    try:
        return max(float(header), 0.0)
    except ValueError:
        return None


class Closing:
    """``with adapter:`` closes its connection pool at the end."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

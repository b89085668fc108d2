"""What the writable stores hold: pipelines with a version, users with a role, API tokens.

Every stored pipeline has a version that each change raises by one; a change made against
an older version is refused (``VersionConflict``), so two people editing one pipeline never
overwrite each other silently. Stored documents carry ``SCHEMA_VERSION`` so a later release
can tell which shape it reads.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from openanomaly.domain.pipeline import PipelineSpec

SCHEMA_VERSION = 1
# API tokens start with this, so a leaked one is recognisable (secret scanners, logs).
TOKEN_PREFIX = "oa_"
_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class Role(StrEnum):
    viewer = "viewer"  # reads pipelines, status and results
    editor = "editor"  # also changes pipelines and triggers runs
    admin = "admin"  # also manages users and tokens


@dataclass(frozen=True)
class StoredPipeline:
    spec: PipelineSpec
    version: int
    updated_ms: int


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password_hash: str
    """A Django password hash (algorithm$iterations$salt$hash); never the password."""
    created_ms: int


@dataclass(frozen=True)
class ApiToken:
    id: str
    user: str
    name: str
    token_hash: str
    """A digest of the token; the token itself is shown once, at creation, and not kept."""
    created_ms: int
    last_used_ms: int | None = None


def pipeline_document(spec: PipelineSpec) -> dict[str, Any]:
    """The spec as stored: plain JSON types, durations in seconds."""
    return spec.model_dump(mode="json")


def pipeline_from_document(document: dict[str, Any], schema: int) -> PipelineSpec:
    if schema > SCHEMA_VERSION:
        raise ValueError(
            f"pipeline {document.get('name')!r} was stored by a newer release (document "
            f"schema {schema}, this release reads up to {SCHEMA_VERSION}); upgrade first")
    return PipelineSpec.model_validate(document)


def check_user_name(name: str) -> str:
    if not _USER_NAME.match(name):
        raise ValueError(f"user name {name!r}: 1 to 64 letters, digits, '_', '.', '@' or '-', "
                         "starting with a letter or digit")
    return name


def token_digest(token: str) -> str:
    """What a store keeps of an API token. Tokens are long random strings, so a plain
    SHA-256 cannot be reversed by guessing (unlike a password, which needs a slow hash)."""
    return hashlib.sha256(token.encode()).hexdigest()

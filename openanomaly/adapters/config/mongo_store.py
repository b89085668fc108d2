"""Pipelines, users and API tokens in MongoDB: the production store every process shares.

Collections: ``pipelines`` (``_id`` = name, ``version``, ``schema``, ``updated_ms``,
``spec``), ``users`` (``_id`` = name), ``tokens`` (``_id`` = token id, unique
``token_hash``) and ``meta`` (the ``changes`` counter). Each pipeline change also raises
the counter, which ``refresh()`` compares with the value it saw last: a poll that works on
a single server as on a replica set (change streams need a replica set).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from openanomaly.adapters.config.versioned_store import VersionedStore
from openanomaly.domain.errors import (
    AlreadyExists,
    UnknownUser,
)
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.run_state import RunState
from openanomaly.domain.store import (
    SCHEMA_VERSION,
    ApiToken,
    Role,
    StoredPipeline,
    User,
    pipeline_document,
    pipeline_from_document,
)

Document = dict[str, Any]
_CHANGES = {"_id": "changes"}


def _now_ms() -> int:
    return int(time.time() * 1000)


class MongoStore(VersionedStore):
    def __init__(self, database: Database[Document]) -> None:
        self.db = database
        self.pipelines: Collection[Document] = database["pipelines"]
        self.users: Collection[Document] = database["users"]
        self.tokens: Collection[Document] = database["tokens"]
        self.meta: Collection[Document] = database["meta"]
        self.runs: Collection[Document] = database["run_states"]
        self.tokens.create_index([("token_hash", ASCENDING)], unique=True)
        self.tokens.create_index([("user", ASCENDING)])
        self.meta.update_one(_CHANGES, {"$setOnInsert": {"value": 0}}, upsert=True)
        self._seen_changes = self._changes()

    def _changes(self) -> int:
        found = self.meta.find_one(_CHANGES)
        return int(found["value"]) if found else 0

    def _changed(self) -> None:
        self.meta.update_one(_CHANGES, {"$inc": {"value": 1}}, upsert=True)

    def close(self) -> None:
        self.db.client.close()

    # -- RunLog -----------------------------------------------------------------------

    def record_run(self, state: RunState) -> None:
        self.runs.replace_one({"_id": state.pipeline}, {"_id": state.pipeline,
                                                        **state.as_json()}, upsert=True)

    def run_state(self, pipeline: str) -> RunState | None:
        found = self.runs.find_one({"_id": pipeline})
        return None if found is None else RunState.from_json(found)

    def run_states(self) -> dict[str, RunState]:
        return {found["_id"]: RunState.from_json(found) for found in self.runs.find()}

    # -- PipelineStore ----------------------------------------------------------------

    def list_stored(self) -> list[StoredPipeline]:
        return [_pipeline(found) for found in self.pipelines.find().sort("_id", ASCENDING)]

    def get_stored(self, name: str) -> StoredPipeline:
        found = self.pipelines.find_one({"_id": name})
        if found is None:
            raise self._unknown(name)
        return _pipeline(found)

    def create(self, spec: PipelineSpec) -> StoredPipeline:
        stored = StoredPipeline(spec, 1, _now_ms())
        try:
            self.pipelines.insert_one(_document(stored))
        except DuplicateKeyError:
            raise AlreadyExists(f"a pipeline named {spec.name!r} exists already") from None
        self._changed()
        return stored

    def update(self, spec: PipelineSpec, version: int) -> StoredPipeline:
        stored = StoredPipeline(spec, version + 1, _now_ms())
        done = self.pipelines.replace_one({"_id": spec.name, "version": version},
                                          _document(stored))
        if done.matched_count == 0:
            raise self._why_not(spec.name, version)
        self._changed()
        return stored

    def delete(self, name: str, version: int | None = None) -> None:
        query: Document = {"_id": name} if version is None else {"_id": name,
                                                                  "version": version}
        if self.pipelines.delete_one(query).deleted_count == 0:
            raise self._why_not(name, version)
        self.runs.delete_one({"_id": name})
        self._changed()

    def _version_of(self, name: str) -> int | None:
        found = self.pipelines.find_one({"_id": name}, {"version": 1})
        return None if found is None else int(found["version"])

    def _names(self) -> list[str]:
        return sorted(str(found["_id"]) for found in self.pipelines.find({}, {"_id": 1}))

    # -- UserStore --------------------------------------------------------------------

    def create_user(self, name: str, role: Role, password_hash: str) -> User:
        user = User(name, Role(role), password_hash, _now_ms())
        try:
            self.users.insert_one({"_id": name, "role": str(user.role),
                                   "password_hash": password_hash,
                                   "created_ms": user.created_ms})
        except DuplicateKeyError:
            raise AlreadyExists(f"a user named {name!r} exists already") from None
        return user

    def get_user(self, name: str) -> User:
        found = self.users.find_one({"_id": name})
        if found is None:
            raise UnknownUser(f"unknown user {name!r}")
        return _user(found)

    def list_users(self) -> list[User]:
        return [_user(found) for found in self.users.find().sort("_id", ASCENDING)]

    def update_user(self, name: str, role: Role | None = None,
                    password_hash: str | None = None) -> User:
        changes: Document = {}
        if role is not None:
            changes["role"] = str(Role(role))
        if password_hash is not None:
            changes["password_hash"] = password_hash
        found = self.users.find_one_and_update(
            {"_id": name}, {"$set": changes}, return_document=ReturnDocument.AFTER
        ) if changes else self.users.find_one({"_id": name})
        if found is None:
            raise UnknownUser(f"unknown user {name!r}")
        return _user(found)

    def delete_user(self, name: str) -> None:
        if self.users.delete_one({"_id": name}).deleted_count == 0:
            raise UnknownUser(f"unknown user {name!r}")
        self.tokens.delete_many({"user": name})

    def add_token(self, user: str, name: str, token_hash: str) -> ApiToken:
        self.get_user(user)
        token = ApiToken(uuid.uuid4().hex, user, name, token_hash, _now_ms())
        try:
            self.tokens.insert_one({"_id": token.id, "user": user, "name": name,
                                    "token_hash": token_hash,
                                    "created_ms": token.created_ms})
        except DuplicateKeyError:
            raise AlreadyExists("a token with that digest exists already") from None
        return token

    def token_by_hash(self, token_hash: str) -> ApiToken | None:
        found = self.tokens.find_one({"token_hash": token_hash})
        return _token(found) if found is not None else None

    def list_tokens(self, user: str | None = None) -> list[ApiToken]:
        query: Document = {} if user is None else {"user": user}
        found = self.tokens.find(query).sort(
            [("created_ms", ASCENDING), ("name", ASCENDING), ("_id", ASCENDING)])
        return [_token(one) for one in found]

    def touch_token(self, token_id: str, at_ms: int) -> None:
        self.tokens.update_one({"_id": token_id}, {"$max": {"last_used_ms": at_ms}})

    def revoke_token(self, token_id: str) -> None:
        if self.tokens.delete_one({"_id": token_id}).deleted_count == 0:
            raise UnknownUser(f"unknown token {token_id!r}")


def _document(stored: StoredPipeline) -> Document:
    return {"_id": stored.spec.name, "version": stored.version, "schema": SCHEMA_VERSION,
            "updated_ms": stored.updated_ms, "spec": pipeline_document(stored.spec)}


def _pipeline(found: Document) -> StoredPipeline:
    spec = pipeline_from_document(found["spec"], int(found["schema"]))
    return StoredPipeline(spec, int(found["version"]), int(found["updated_ms"]))


def _user(found: Document) -> User:
    return User(str(found["_id"]), Role(found["role"]), found["password_hash"],
                int(found["created_ms"]))


def _token(found: Document) -> ApiToken:
    last = found.get("last_used_ms")
    return ApiToken(str(found["_id"]), found["user"], found["name"], found["token_hash"],
                    int(found["created_ms"]), int(last) if last is not None else None)

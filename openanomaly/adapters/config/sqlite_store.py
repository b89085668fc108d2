"""Pipelines, users and API tokens in one SQLite file: the writable store of one machine.

Every process that opens the file sees every other's changes: each change also bumps a
counter in ``meta``, which ``refresh()`` compares with the value it saw last, so the
embedded scheduler or a beat leader picks up an edit made by the API within a tick.
WAL mode lets readers go on while one writer commits.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path

from openanomaly.adapters.config.versioned_store import VersionedStore
from openanomaly.adapters.sqlite_file import SqliteFile
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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('changes', 0);
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT PRIMARY KEY, version INTEGER NOT NULL, schema INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
    created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    name TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE, created_ms INTEGER NOT NULL,
    last_used_ms INTEGER);
CREATE INDEX IF NOT EXISTS tokens_by_user ON tokens (user);
CREATE TABLE IF NOT EXISTS run_states (pipeline TEXT PRIMARY KEY, state TEXT NOT NULL);
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


class SqliteStore(VersionedStore):
    def __init__(self, path: str | Path) -> None:
        self.file = SqliteFile(path, pragmas=["foreign_keys=ON"], rows_by_name=True)
        self.path = self.file.path
        self.file.connection().executescript(_SCHEMA)
        self._seen_changes = self._changes()
        self.close()  # threads (and forked workers) open their own when they need one

    @staticmethod
    def _changed(db: sqlite3.Connection) -> None:
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'changes'")

    def _changes(self) -> int:
        row = self.file.connection().execute(
            "SELECT value FROM meta WHERE key = 'changes'").fetchone()
        return int(row["value"])

    def close(self) -> None:
        self.file.close()

    # -- RunLog -----------------------------------------------------------------------

    def record_run(self, state: RunState) -> None:
        # Not a pipeline change: the change counter stays, so schedulers do not reload.
        self.file.connection().execute(
            "INSERT INTO run_states VALUES (?, ?) ON CONFLICT (pipeline) "
            "DO UPDATE SET state = excluded.state", (state.pipeline, json.dumps(state.as_json())))

    def run_state(self, pipeline: str) -> RunState | None:
        row = self.file.connection().execute(
            "SELECT state FROM run_states WHERE pipeline = ?", (pipeline,)).fetchone()
        return None if row is None else RunState.from_json(json.loads(row["state"]))

    def run_states(self) -> dict[str, RunState]:
        rows = self.file.connection().execute("SELECT pipeline, state FROM run_states").fetchall()
        return {row["pipeline"]: RunState.from_json(json.loads(row["state"])) for row in rows}

    # -- PipelineStore ----------------------------------------------------------------

    def list_stored(self) -> list[StoredPipeline]:
        rows = self.file.connection().execute("SELECT * FROM pipelines ORDER BY name").fetchall()
        return [_pipeline(row) for row in rows]

    def get_stored(self, name: str) -> StoredPipeline:
        row = self.file.connection().execute(
            "SELECT * FROM pipelines WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise self._unknown(name)
        return _pipeline(row)

    def create(self, spec: PipelineSpec) -> StoredPipeline:
        stored = StoredPipeline(spec, 1, _now_ms())
        try:
            with self.file.transaction() as db:
                db.execute("INSERT INTO pipelines VALUES (?, ?, ?, ?, ?)",
                           (spec.name, 1, SCHEMA_VERSION, stored.updated_ms,
                            json.dumps(pipeline_document(spec))))
                self._changed(db)
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"a pipeline named {spec.name!r} exists already") from None
        return stored

    def update(self, spec: PipelineSpec, version: int) -> StoredPipeline:
        stored = StoredPipeline(spec, version + 1, _now_ms())
        with self.file.transaction() as db:
            done = db.execute(
                "UPDATE pipelines SET version = ?, schema = ?, updated_ms = ?, spec = ? "
                "WHERE name = ? AND version = ?",
                (stored.version, SCHEMA_VERSION, stored.updated_ms,
                 json.dumps(pipeline_document(spec)), spec.name, version))
            if done.rowcount == 0:
                raise self._why_not(spec.name, version)
            self._changed(db)
        return stored

    def delete(self, name: str, version: int | None = None) -> None:
        with self.file.transaction() as db:
            done = db.execute(
                "DELETE FROM pipelines WHERE name = ? AND (? IS NULL OR version = ?)",
                (name, version, version))
            if done.rowcount == 0:
                raise self._why_not(name, version)
            db.execute("DELETE FROM run_states WHERE pipeline = ?", (name,))
            self._changed(db)

    def _version_of(self, name: str) -> int | None:
        row = self.file.connection().execute(
            "SELECT version FROM pipelines WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row["version"])

    def _names(self) -> list[str]:
        return [row["name"] for row in self.file.connection().execute(
            "SELECT name FROM pipelines ORDER BY name")]

    # -- UserStore --------------------------------------------------------------------

    def create_user(self, name: str, role: Role, password_hash: str) -> User:
        user = User(name, Role(role), password_hash, _now_ms())
        try:
            with self.file.transaction() as db:
                db.execute("INSERT INTO users VALUES (?, ?, ?, ?)",
                           (name, str(user.role), password_hash, user.created_ms))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"a user named {name!r} exists already") from None
        return user

    def get_user(self, name: str) -> User:
        row = self.file.connection().execute(
            "SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise UnknownUser(f"unknown user {name!r}")
        return _user(row)

    def list_users(self) -> list[User]:
        return [_user(row) for row in
                self.file.connection().execute("SELECT * FROM users ORDER BY name")]

    def update_user(self, name: str, role: Role | None = None,
                    password_hash: str | None = None) -> User:
        with self.file.transaction() as db:
            done = db.execute(
                "UPDATE users SET role = coalesce(?, role), "
                "password_hash = coalesce(?, password_hash) WHERE name = ?",
                (str(Role(role)) if role is not None else None, password_hash, name))
            if done.rowcount == 0:
                raise UnknownUser(f"unknown user {name!r}")
        return self.get_user(name)

    def delete_user(self, name: str) -> None:
        with self.file.transaction() as db:
            if db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
                raise UnknownUser(f"unknown user {name!r}")

    def add_token(self, user: str, name: str, token_hash: str) -> ApiToken:
        token = ApiToken(uuid.uuid4().hex, user, name, token_hash, _now_ms())
        try:
            with self.file.transaction() as db:
                db.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, NULL)",
                           (token.id, user, name, token_hash, token.created_ms))
        except sqlite3.IntegrityError:
            # The user is gone (foreign key) or, vanishingly unlikely, the digest is taken.
            self.get_user(user)
            raise AlreadyExists("a token with that digest exists already") from None
        return token

    def token_by_hash(self, token_hash: str) -> ApiToken | None:
        row = self.file.connection().execute(
            "SELECT * FROM tokens WHERE token_hash = ?", (token_hash,)).fetchone()
        return _token(row) if row is not None else None

    def list_tokens(self, user: str | None = None) -> list[ApiToken]:
        rows = self.file.connection().execute(
            "SELECT * FROM tokens WHERE ? IS NULL OR user = ? ORDER BY created_ms, name, id",
            (user, user))
        return [_token(row) for row in rows]

    def touch_token(self, token_id: str, at_ms: int) -> None:
        with self.file.transaction() as db:
            db.execute("UPDATE tokens SET last_used_ms = max(coalesce(last_used_ms, 0), ?) "
                       "WHERE id = ?", (at_ms, token_id))

    def revoke_token(self, token_id: str) -> None:
        with self.file.transaction() as db:
            if db.execute("DELETE FROM tokens WHERE id = ?", (token_id,)).rowcount == 0:
                raise UnknownUser(f"unknown token {token_id!r}")


def _pipeline(row: sqlite3.Row) -> StoredPipeline:
    spec = pipeline_from_document(json.loads(row["spec"]), int(row["schema"]))
    return StoredPipeline(spec, int(row["version"]), int(row["updated_ms"]))


def _user(row: sqlite3.Row) -> User:
    return User(row["name"], Role(row["role"]), row["password_hash"], int(row["created_ms"]))


def _token(row: sqlite3.Row) -> ApiToken:
    last = row["last_used_ms"]
    return ApiToken(row["id"], row["user"], row["name"], row["token_hash"],
                    int(row["created_ms"]), int(last) if last is not None else None)

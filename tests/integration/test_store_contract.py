"""One contract for every writable store: SQLite on a real file, MongoDB through mongomock,
and a real MongoDB when OPENANOMALY_TEST_MONGO_URL is set (none can be installed on the
machines this suite usually runs on)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator

import mongomock
import pymongo
import pytest

from openanomaly.adapters.config.mongo_store import MongoStore
from openanomaly.adapters.config.sqlite_store import SqliteStore
from openanomaly.adapters.config.yaml_store import YamlConfigStore
from openanomaly.domain.errors import (
    AlreadyExists,
    ReadOnlyStore,
    UnknownPipeline,
    UnknownUser,
    VersionConflict,
)
from openanomaly.domain.pipeline import PipelineSpec
from openanomaly.domain.run_state import after_failure, after_success
from openanomaly.domain.store import Role

MONGO_URL = os.environ.get("OPENANOMALY_TEST_MONGO_URL")
KINDS = ["sqlite", "mongomock", pytest.param("mongodb", marks=pytest.mark.skipif(
    not MONGO_URL, reason="set OPENANOMALY_TEST_MONGO_URL to run against a real MongoDB"))]


@pytest.fixture(params=KINDS)
def open_store(request, tmp_path) -> Iterator[Callable[[], SqliteStore | MongoStore]]:
    """Opens another handle on the same storage each call, as another process would."""
    opened: list[SqliteStore | MongoStore] = []
    if request.param == "sqlite":
        def one() -> SqliteStore | MongoStore:
            opened.append(SqliteStore(tmp_path / "store" / "openanomaly.db"))
            return opened[-1]
        yield one
    else:
        name = f"openanomaly_test_{uuid.uuid4().hex[:8]}"
        client = (pymongo.MongoClient(MONGO_URL) if request.param == "mongodb"
                  else mongomock.MongoClient())

        def one() -> SqliteStore | MongoStore:
            opened.append(MongoStore(client[name]))
            return opened[-1]
        yield one
        client.drop_database(name)
    for store in opened:
        if isinstance(store, SqliteStore):
            store.close()


@pytest.fixture
def store(open_store):
    return open_store()


def spec(name="cpu", **fields) -> PipelineSpec:
    base = {"name": name, "query": 'rate(node_cpu_seconds_total{mode="user"}[5m])',
            "step": "1m", "context": "6h"}
    return PipelineSpec(**{**base, **fields})


def test_pipelines_round_trip_with_a_version(store):
    created = store.create(spec(scoring={"threshold": 2}))
    assert created.version == 1
    again = store.get_stored("cpu")
    assert again.spec == spec(scoring={"threshold": 2}) and again.version == 1
    store.create(spec("alpha"))
    assert [p.name for p in store.list_pipelines()] == ["alpha", "cpu"]
    assert store.get_pipeline("cpu") == again.spec


def test_names_are_unique(store):
    store.create(spec())
    with pytest.raises(AlreadyExists, match="a pipeline named 'cpu' exists already"):
        store.create(spec(enabled=False))
    assert store.get_pipeline("cpu").enabled


def test_an_update_against_a_stale_version_is_refused_and_changes_nothing(store):
    store.create(spec())
    disabled = store.update(spec(enabled=False), version=1)
    assert disabled.version == 2 and not store.get_pipeline("cpu").enabled
    with pytest.raises(VersionConflict, match=r"changed since version 1 .*at version 2"):
        store.update(spec(step="5m", check_window="5m", schedule="5m"), version=1)
    assert store.get_stored("cpu").spec == spec(enabled=False)
    with pytest.raises(UnknownPipeline, match="unknown pipeline 'gone'; pipelines: cpu"):
        store.update(spec("gone"), version=1)


def test_delete_checks_the_version_when_given(store):
    store.create(spec())
    store.update(spec(enabled=False), version=1)
    with pytest.raises(VersionConflict):
        store.delete("cpu", version=1)
    store.delete("cpu", version=2)
    with pytest.raises(UnknownPipeline, match="none stored"):
        store.delete("cpu")
    with pytest.raises(UnknownPipeline):
        store.get_pipeline("cpu")


def test_every_handle_on_the_store_sees_a_change_through_refresh(open_store):
    api, scheduler = open_store(), open_store()
    assert scheduler.refresh() is False
    api.create(spec())
    assert scheduler.refresh() is True
    assert scheduler.refresh() is False, "each change is reported once"
    assert [p.name for p in scheduler.list_pipelines()] == ["cpu"]
    api.update(spec(enabled=False), version=1)
    assert scheduler.refresh() is True and not scheduler.get_pipeline("cpu").enabled
    api.delete("cpu")
    assert scheduler.refresh() is True and scheduler.list_pipelines() == []


def test_concurrent_updates_of_one_version_let_exactly_one_win(open_store):
    open_store().create(spec())
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def edit(handle, threshold):
        start.wait()
        try:
            handle.update(spec(scoring={"threshold": threshold}), version=1)
            outcomes.append("won")
        except VersionConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=edit, args=(open_store(), t)) for t in (2, 3, 4, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["conflict"] * 3 + ["won"]
    assert open_store().get_stored("cpu").version == 2


def test_users_with_roles_and_password_hashes(store):
    store.create_user("ana", Role.admin, "pbkdf2_sha256$1$salt$hash")
    store.create_user("bo", Role.viewer, "pbkdf2_sha256$1$salt$other")
    with pytest.raises(AlreadyExists, match="a user named 'ana' exists already"):
        store.create_user("ana", Role.viewer, "x")
    assert [(u.name, u.role) for u in store.list_users()] == [("ana", Role.admin),
                                                             ("bo", Role.viewer)]
    promoted = store.update_user("bo", role=Role.editor)
    assert promoted.role == Role.editor and promoted.password_hash.endswith("$other")
    assert store.update_user("bo", password_hash="new").password_hash == "new"
    assert store.get_user("bo").role == Role.editor
    with pytest.raises(UnknownUser, match="unknown user 'cy'"):
        store.get_user("cy")
    with pytest.raises(UnknownUser):
        store.update_user("cy", role=Role.admin)


def test_tokens_are_found_by_digest_touched_and_revoked(store):
    store.create_user("ana", Role.editor, "hash")
    token = store.add_token("ana", "ci", "digest-1")
    other = store.add_token("ana", "laptop", "digest-2")
    assert store.token_by_hash("digest-1") == token and token.last_used_ms is None
    store.touch_token(token.id, 2_000)
    store.touch_token(token.id, 1_000)  # a late, older use never moves it back
    assert store.token_by_hash("digest-1").last_used_ms == 2_000
    assert [t.name for t in store.list_tokens("ana")] == ["ci", "laptop"]
    store.revoke_token(token.id)
    assert store.token_by_hash("digest-1") is None, "revoked at once"
    with pytest.raises(UnknownUser, match="unknown token"):
        store.revoke_token(token.id)
    with pytest.raises(UnknownUser, match="unknown user 'cy'"):
        store.add_token("cy", "x", "digest-3")
    store.delete_user("ana")
    assert store.token_by_hash(other.token_hash) is None, "a deleted user's tokens go too"
    assert store.list_tokens() == []


def test_run_states_are_seen_by_every_handle_without_reloading_the_pipelines(open_store):
    writer, reader = open_store(), open_store()
    writer.create(PipelineSpec(name="cpu", query="up"))
    reader.refresh()
    failed = after_failure(None, "cpu", 60_000, 61_000, 0.5, "TSDBError: down")
    writer.record_run(failed)
    assert reader.run_state("cpu") == failed and reader.run_states() == {"cpu": failed}
    assert not reader.refresh(), "a run is not a pipeline change"
    ok = after_success(failed, "cpu", 120_000, 121_000, 0.2, 3, 1, 4.5)
    writer.record_run(ok)
    assert reader.run_state("cpu") == ok and reader.run_state("other") is None
    writer.delete("cpu")
    assert reader.run_states() == {}, "a deleted pipeline's status goes with it"


def test_the_yaml_store_refuses_every_write_saying_where_pipelines_come_from(tmp_path):
    file = tmp_path / "config.yaml"
    store = YamlConfigStore([spec()], files=[file])
    for change in (lambda: store.create(spec("new")),
                   lambda: store.update(spec(enabled=False), version=1),
                   lambda: store.delete("cpu")):
        with pytest.raises(ReadOnlyStore, match=f"pipelines come from {file}"):
            change()
    assert store.get_stored("cpu").spec == spec()

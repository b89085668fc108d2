"""Users and tokens through the accounts service, on a real SQLite store and Django's
password hashers."""

import pytest

from openanomaly.adapters.config.sqlite_store import SqliteStore
from openanomaly.adapters.passwords import DjangoPasswordHasher
from openanomaly.domain.errors import AlreadyExists, ConfigError
from openanomaly.domain.store import Role, token_digest
from openanomaly.services.accounts import check_password, create_user, issue_token, user_of_token

HASHER = DjangoPasswordHasher()
PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path):
    store = SqliteStore(tmp_path / "store.db")
    yield store
    store.close()


def test_a_password_is_kept_only_as_a_slow_hash_and_checked(store):
    user = create_user(store, HASHER, "ana", "admin", PASSWORD)
    assert user.role == Role.admin
    assert user.password_hash.startswith("pbkdf2_sha256$") and PASSWORD not in user.password_hash
    assert check_password(store, HASHER, "ana", PASSWORD) == store.get_user("ana")
    assert check_password(store, HASHER, "ana", PASSWORD + "!") is None
    assert check_password(store, HASHER, "nobody", PASSWORD) is None
    with pytest.raises(AlreadyExists):
        create_user(store, HASHER, "ana", "viewer", PASSWORD)


@pytest.mark.parametrize(("name", "role", "password", "message"), [
    ("ana", "admin", "short", "at least 12 characters"),
    ("ana", "root", PASSWORD, "'root' is not a valid Role"),
    ("-ana", "viewer", PASSWORD, "user name '-ana'"),
    ("a b", "viewer", PASSWORD, "user name 'a b'"),
])
def test_bad_users_are_refused_with_what_to_fix(store, name, role, password, message):
    with pytest.raises(ConfigError, match=message):
        create_user(store, HASHER, name, role, password)
    assert store.list_users() == []


def test_a_token_is_shown_once_kept_as_a_digest_and_stops_working_when_revoked(store):
    create_user(store, HASHER, "bo", "editor", PASSWORD)
    record, token = issue_token(store, "bo", "ci")
    assert token.startswith("oa_") and len(token) > 40
    assert record.token_hash == token_digest(token) and token not in record.token_hash
    assert user_of_token(store, token, now_ms=5_000).name == "bo"
    assert store.list_tokens("bo")[0].last_used_ms == 5_000
    assert user_of_token(store, token + "x", now_ms=6_000) is None
    store.revoke_token(record.id)
    assert user_of_token(store, token, now_ms=7_000) is None

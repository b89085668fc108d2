"""`openanomaly createuser` and `openanomaly tokens` as processes, on a SQLite store."""

import subprocess

from openanomaly.adapters.config.sqlite_store import SqliteStore
from openanomaly.domain.store import Role, token_digest
from tests.e2e.test_cli import CLI, openanomaly, write_config
from tests.e2e.test_pipelines_command import sqlite_config

PASSWORD = "correct horse battery"


def test_createuser_takes_the_password_from_the_environment_for_automation(tmp_path):
    config = sqlite_config(tmp_path)
    done = openanomaly("createuser", "ana", "--role", "admin", config=config,
                       env={"OPENANOMALY_PASSWORD": PASSWORD})
    assert done.returncode == 0, done.stderr
    assert "created user ana (admin)" in done.stdout and PASSWORD not in done.stdout
    user = SqliteStore(tmp_path / "state" / "store.db").get_user("ana")
    assert user.role == Role.admin and PASSWORD not in user.password_hash

    again = openanomaly("createuser", "ana", config=config,
                        env={"OPENANOMALY_PASSWORD": PASSWORD})
    assert again.returncode == 1 and "a user named 'ana' exists already" in again.stderr


def test_createuser_without_a_terminal_or_password_says_how_to_give_one(tmp_path):
    config = sqlite_config(tmp_path)
    done = subprocess.run([*CLI, "--config", str(config), "createuser", "ana"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2, done.stderr
    assert "no terminal to ask for the password: set OPENANOMALY_PASSWORD" in done.stderr


def test_a_token_is_printed_once_listed_without_its_secret_and_revoked(tmp_path):
    config = sqlite_config(tmp_path)
    openanomaly("createuser", "bo", "--role", "editor", config=config,
                env={"OPENANOMALY_PASSWORD": PASSWORD})
    created = openanomaly("tokens", "create", "bo", "ci", config=config)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("oa_") and "shown only now" in created.stderr
    store = SqliteStore(tmp_path / "state" / "store.db")
    (record,) = store.list_tokens("bo")
    assert record.token_hash == token_digest(token)

    listed = openanomaly("tokens", "list", config=config).stdout
    assert f"{record.id}  bo  ci  created" in listed and "last used never" in listed
    assert token not in listed
    revoked = openanomaly("tokens", "revoke", record.id, config=config)
    assert revoked.returncode == 0 and store.token_by_hash(token_digest(token)) is None
    unknown = openanomaly("tokens", "create", "nobody", "x", config=config)
    assert unknown.returncode == 1 and "unknown user 'nobody'" in unknown.stderr


def test_users_need_a_database_store(tmp_path):
    config = write_config(tmp_path, "pipelines: []\n")
    done = openanomaly("createuser", "ana", config=config,
                       env={"OPENANOMALY_PASSWORD": PASSWORD})
    assert done.returncode == 2
    assert "users and API tokens need a database store: set store.kind" in done.stderr

"""The SlotLedger port in one SQLite file: the embedded service's record of completed
slots, so that after an outage or a restart (even a kill -9) it catches up what it missed,
as the Celery deployment does with its Redis ledger.

Tables (``pipeline`` is the ledger key, as in the Redis ledger):
  ``done``    completed slots, trimmed to a window (7 days)
  ``last``    the latest completed slot per pipeline; only ever moves forward
  ``claims``  a slot being run, by whom, until when
  ``errors``  the last failure per pipeline (slot, kind, error, at), cleared by a success
  ``skipped`` missed slots older than the catch-up horizon, never run
"""

from __future__ import annotations

import time
from pathlib import Path

from openanomaly.adapters.sqlite_file import SqliteFile
from openanomaly.domain.redaction import redact
from openanomaly.domain.slots import SlotStatus

_SCHEMA = """
CREATE TABLE IF NOT EXISTS done (pipeline TEXT NOT NULL, slot INTEGER NOT NULL,
                                 PRIMARY KEY (pipeline, slot));
CREATE TABLE IF NOT EXISTS last (pipeline TEXT PRIMARY KEY, slot INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS claims (pipeline TEXT NOT NULL, slot INTEGER NOT NULL,
                                   worker TEXT NOT NULL, expires_ms INTEGER NOT NULL,
                                   PRIMARY KEY (pipeline, slot));
CREATE TABLE IF NOT EXISTS errors (pipeline TEXT PRIMARY KEY, slot INTEGER NOT NULL,
                                   kind TEXT NOT NULL, error TEXT NOT NULL,
                                   at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS skipped (pipeline TEXT PRIMARY KEY, count INTEGER NOT NULL);
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


class SqliteSlotLedger:
    def __init__(self, path: str | Path, done_window_ms: int = 7 * 86_400_000) -> None:
        # A completed slot must survive a power cut as well as a kill -9.
        self.file = SqliteFile(path, pragmas=["synchronous=FULL"])
        self.path = self.file.path
        self.done_window_ms = done_window_ms
        self.file.connection().executescript(_SCHEMA)

    def close(self) -> None:
        self.file.close()

    def claim(self, pipeline: str, slot_ms: int, worker: str, ttl_ms: int) -> bool:
        now = _now_ms()
        with self.file.transaction() as db:
            db.execute("DELETE FROM claims WHERE pipeline = ? AND slot = ? AND expires_ms <= ?",
                       (pipeline, slot_ms, now))
            taken = db.execute("INSERT OR IGNORE INTO claims VALUES (?, ?, ?, ?)",
                               (pipeline, slot_ms, worker, now + ttl_ms)).rowcount
        return bool(taken)

    def claimed_by(self, pipeline: str, slot_ms: int) -> str | None:
        row = self.file.connection().execute(
            "SELECT worker FROM claims WHERE pipeline = ? AND slot = ? AND expires_ms > ?",
            (pipeline, slot_ms, _now_ms())).fetchone()
        return None if row is None else str(row[0])

    def release(self, pipeline: str, slot_ms: int, worker: str) -> bool:
        with self.file.transaction() as db:
            return bool(db.execute(
                "DELETE FROM claims WHERE pipeline = ? AND slot = ? AND worker = ?",
                (pipeline, slot_ms, worker)).rowcount)

    def done(self, pipeline: str, slot_ms: int) -> bool:
        return self.file.connection().execute("SELECT 1 FROM done WHERE pipeline = ? AND slot = ?",
                                  (pipeline, slot_ms)).fetchone() is not None

    def complete(self, pipeline: str, slot_ms: int, worker: str = "") -> int:
        with self.file.transaction() as db:
            db.execute("INSERT OR IGNORE INTO done VALUES (?, ?)", (pipeline, slot_ms))
            db.execute("INSERT INTO last VALUES (?, ?) ON CONFLICT (pipeline) DO UPDATE "
                       "SET slot = max(slot, excluded.slot)", (pipeline, slot_ms))
            last = int(db.execute("SELECT slot FROM last WHERE pipeline = ?",
                                  (pipeline,)).fetchone()[0])
            db.execute("DELETE FROM done WHERE pipeline = ? AND slot < ?",
                       (pipeline, last - self.done_window_ms))
            db.execute("DELETE FROM errors WHERE pipeline = ?", (pipeline,))
            db.execute("DELETE FROM claims WHERE pipeline = ? AND slot = ? AND worker = ?",
                       (pipeline, slot_ms, worker))
        return last

    def last_completed(self, pipeline: str) -> int | None:
        row = self.file.connection().execute("SELECT slot FROM last WHERE pipeline = ?",
                                 (pipeline,)).fetchone()
        return None if row is None else int(row[0])

    def record_error(self, pipeline: str, slot_ms: int, error: BaseException) -> None:
        with self.file.transaction() as db:
            db.execute("INSERT OR REPLACE INTO errors VALUES (?, ?, ?, ?, ?)",
                       (pipeline, slot_ms, type(error).__name__, redact(str(error))[:2000],
                        _now_ms()))

    def last_error(self, pipeline: str) -> dict[str, str] | None:
        row = self.file.connection().execute(
            "SELECT slot, kind, error, at FROM errors WHERE pipeline = ?", (pipeline,)).fetchone()
        if row is None:
            return None
        return {"slot": str(row[0]), "kind": row[1], "error": row[2], "at": str(row[3])}

    def record_skipped(self, pipeline: str, count: int) -> None:
        with self.file.transaction() as db:
            db.execute("INSERT INTO skipped VALUES (?, ?) ON CONFLICT (pipeline) DO UPDATE "
                       "SET count = count + excluded.count", (pipeline, count))

    def skipped(self, pipeline: str) -> int:
        row = self.file.connection().execute("SELECT count FROM skipped WHERE pipeline = ?",
                                 (pipeline,)).fetchone()
        return 0 if row is None else int(row[0])

    def status(self, pipeline: str) -> SlotStatus:
        db = self.file.connection()
        count = int(db.execute("SELECT count(*) FROM done WHERE pipeline = ?",
                               (pipeline,)).fetchone()[0])
        running = {int(slot): str(worker) for slot, worker in db.execute(
            "SELECT slot, worker FROM claims WHERE pipeline = ? AND expires_ms > ?",
            (pipeline, _now_ms()))}
        return SlotStatus(pipeline, self.last_completed(pipeline), count,
                          self.last_error(pipeline), self.skipped(pipeline), running)

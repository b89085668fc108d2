"""One SQLite file shared by threads and forked processes: what the SQLite store and the
embedded slot ledger both need."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


class SqliteFile:
    def __init__(self, path: str | Path, pragmas: Sequence[str] = (),
                 rows_by_name: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # WAL lets readers go on while one writer commits.
        self.pragmas = ("journal_mode=WAL", *pragmas)
        self.rows_by_name = rows_by_name
        self._local = threading.local()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection: sqlite3 connections cross neither threads nor forks."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            for pragma in self.pragmas:
                db.execute(f"PRAGMA {pragma}")
            if self.rows_by_name:
                db.row_factory = sqlite3.Row
            self._local.db, self._local.pid = db, os.getpid()
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken at once so two writers never deadlock."""
        db = self.connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection; the next use opens a new one."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

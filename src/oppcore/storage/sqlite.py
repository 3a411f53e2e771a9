"""An event store in an SQLite database: one file, many processes, fast reads.

One ``events`` table with ``UNIQUE(stream_id, version)``; WAL journal mode with
``synchronous=FULL`` so a committed append survives a power cut; a busy timeout so
concurrent writers wait rather than fail; one transaction per append.  sqlite3 errors
never escape raw: they become ``StorageError`` (or ``CorruptStoreError`` for a damaged file).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from oppcore._repr import short
from oppcore.exceptions import CorruptStoreError, StorageError, ValidationError
from oppcore.storage.records import (
    EventRecord,
    check_batches,
    check_read_args,
    conflict,
    pages,
)

SCHEMA_VERSION = 1
BUSY_TIMEOUT_SECONDS = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS oppcore_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    payload TEXT NOT NULL,
    UNIQUE (stream_id, version)
);
"""


class SqliteEventStore:
    """An event store in one SQLite file; several processes may share it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        try:
            self.path = Path(os.fspath(path))
        except TypeError:
            raise ValidationError(f"A database path must be a path, not {short(path)}.") from None
        self._lock = threading.RLock()
        try:
            if not self.path.exists():
                # Create the file ourselves so that it is private (0600) from the start;
                # SQLite gives the WAL and SHM files the same mode.
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"Cannot open database {str(self.path)!r}: {exc}.") from None
        try:
            with self._translate("open"):
                self._db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
                self._setup()
        except BaseException:
            self._db.close()
            raise

    def _setup(self) -> None:
        """WAL, full sync and the schema; retried while another connection is setting up.

        Switching a new database to WAL needs a write lock while holding a read lock, and
        SQLite does not call the busy handler then: a second process opening the same new
        file at the same moment gets "database is locked" at once.  So wait here, up to the
        busy timeout, as every other statement does.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._create_schema()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    def __repr__(self) -> str:
        return f"<SqliteEventStore {str(self.path)!r}>"

    class _Translate:
        def __init__(self, store: SqliteEventStore, doing: str) -> None:
            self.store, self.doing = store, doing

        def __enter__(self) -> None:
            return None

        def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                exc, sqlite3.IntegrityError
            ):
                message = str(exc).rstrip(".")
                where = f"database {str(self.store.path)!r}"
                if "malformed" in message or "not a database" in message:
                    raise CorruptStoreError(f"Cannot {self.doing} {where}: {message}.") from None
                raise StorageError(f"Cannot {self.doing} {where}: {message}.") from None
            if isinstance(exc, sqlite3.Error):
                reason = str(exc).rstrip(".")
                raise StorageError(
                    f"Cannot {self.doing} database {str(self.store.path)!r}: {reason}."
                ) from None

    def _translate(self, doing: str) -> SqliteEventStore._Translate:
        return SqliteEventStore._Translate(self, doing)

    def _create_schema(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            # One statement at a time: executescript() would commit the open transaction.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            row = self._db.execute(
                "SELECT value FROM oppcore_meta WHERE key = 'schema_version'"
            ).fetchone()
            if row is None:
                self._db.execute(
                    "INSERT INTO oppcore_meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif row[0] != str(SCHEMA_VERSION):
                raise CorruptStoreError(
                    f"Database {str(self.path)!r} has oppcore schema version {row[0]!r}; this "
                    f"oppcore reads version {SCHEMA_VERSION}. Upgrade oppcore to read it."
                )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    # -- the EventStore protocol ---------------------------------------------------------

    def append(
        self, stream_id: str, records: Sequence[EventRecord], *, expected_version: int
    ) -> int:
        return self.append_many([(stream_id, records, expected_version)])[0]

    def append_many(self, batches: Sequence[tuple[str, Sequence[EventRecord], int]]) -> list[int]:
        checked = check_batches(batches)
        rows = []
        for stream_id, records, _ in checked:
            for record in records:
                try:
                    payload = json.dumps(
                        record.payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False
                    )
                except (TypeError, ValueError) as exc:
                    raise ValidationError(
                        f"Record payloads must be JSON-compatible: {exc}."
                    ) from None
                rows.append(
                    (stream_id, record.version, record.type, record.at, record.recorded_at, payload)
                )
        with self._lock, self._translate("append to"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for stream_id, _, expected in checked:
                    actual = self._version(stream_id)
                    if actual != expected:
                        raise conflict(stream_id, expected, actual)
                self._db.executemany(
                    "INSERT INTO events (stream_id, version, type, at, recorded_at, payload) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return [expected + len(records) for _, records, expected in checked]

    def _version(self, stream_id: str) -> int:
        row = self._db.execute(
            "SELECT MAX(version) FROM events WHERE stream_id = ?", (stream_id,)
        ).fetchone()
        return int(row[0] or 0)

    def stream_version(self, stream_id: str) -> int:
        with self._lock, self._translate("read"):
            return self._version(stream_id)

    def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[EventRecord]:
        check_read_args(after_version, None, "after_version")
        if not isinstance(stream_id, str):
            raise ValidationError(f"Stream id must be text, not {short(stream_id)}.")
        with self._lock, self._translate("read"):
            rows = self._db.execute(
                "SELECT stream_id, version, type, at, recorded_at, payload, position FROM events "
                "WHERE stream_id = ? AND version > ? ORDER BY version",
                (stream_id, after_version),
            ).fetchall()
        return [self._record(row) for row in rows]

    def _record(self, row: tuple[str, int, str, str, str, str, int]) -> EventRecord:
        try:
            payload = json.loads(row[5])
        except ValueError:
            raise CorruptStoreError(
                f"Database {str(self.path)!r}: the payload at position {row[6]} is not JSON."
            ) from None
        return EventRecord(row[0], row[1], row[2], row[3], row[4], payload, row[6])

    def stream_ids(self) -> Iterator[str]:
        with self._lock, self._translate("read"):
            rows = self._db.execute(
                "SELECT stream_id FROM events WHERE version = 1 ORDER BY position"
            ).fetchall()
        return iter([row[0] for row in rows])

    def read_all(
        self, *, after_position: int = 0, limit: int | None = None
    ) -> Iterator[EventRecord]:
        check_read_args(after_position, limit)
        return self._read_all(after_position, limit)

    def _read_all(self, after: int, limit: int | None) -> Iterator[EventRecord]:
        for row in pages(self._page, after, limit):
            yield self._record(row)

    def _page(self, after: int, count: int) -> list[tuple[str, int, str, str, str, str, int]]:
        with self._lock, self._translate("read"):
            return self._db.execute(
                "SELECT stream_id, version, type, at, recorded_at, payload, position "
                "FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (after, count),
            ).fetchall()

    def close(self) -> None:
        """Close the connection; the store cannot be used afterwards."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteEventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""An event store in an SQLite database: one file, many processes, fast reads.

One ``events`` table with ``UNIQUE(stream_id, version)``; WAL journal mode with
``synchronous=FULL`` so a committed append survives a power cut; a busy timeout so
concurrent writers wait rather than fail; one transaction per append.  sqlite3 errors
never escape raw: they become ``StorageError`` (or ``CorruptStoreError`` for a damaged file).

SQLite keeps no checksum of its pages, so a flipped byte in a payload reads back as another
value.  Each row therefore carries ``checksum``: the CRC32, as 8 lowercase hex digits, of its
position and every column (see ``record_checksum``), as the JSON Lines journal does per line;
every read checks it.  A store that has found damage (a checksum that does not match, or
SQLite reporting "database disk image is malformed") refuses every later append.
``integrity_problems`` runs SQLite's own ``PRAGMA integrity_check`` for ``verify``.

Schema versions (``oppcore_meta.schema_version``):

1. ``events`` without checksums.
2. ``events.checksum``; ``oppcore_meta.checksums_from`` is the first position written with
   one.  A schema 1 store opens and reads as it is (its rows are "written before checksums");
   the first append upgrades it in its own transaction: the column (O(1) in SQLite), the
   ``checksums_from`` mark, a trigger that refuses rows without a checksum (so an older
   oppcore still writing to the file fails cleanly instead of writing unchecked rows), and
   the version.  Opening and reading never write to an existing store.

A newer version than ``SCHEMA_VERSION`` is refused.  Within one version, the file is made
current by ``_make_current``: a list of idempotent steps, each of which checks whether it is
done (a derived table is "CREATE TABLE IF NOT EXISTS, then build it if empty").  Adding such
a table is one more step there, not another version.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from oppcore._repr import short
from oppcore.domain.versions import COLUMNS, DealVersion
from oppcore.exceptions import CorruptStoreError, StorageError, ValidationError
from oppcore.storage import _table
from oppcore.storage.records import (
    EventRecord,
    check_batches,
    check_read_args,
    conflict,
    pages,
    payload_object,
)

SCHEMA_VERSION = 2
BUSY_TIMEOUT_SECONDS = 30.0

_META = """
CREATE TABLE IF NOT EXISTS oppcore_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
)
"""
# Schema 1's table.  A new file gets it too, then ``_make_current`` adds what schema 2 adds:
# one path for new and old files, so an upgraded file is exactly a new one.
_EVENTS = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    payload TEXT NOT NULL,
    UNIQUE (stream_id, version)
)
"""
_CHECKSUM_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS oppcore_events_checksummed BEFORE INSERT ON events
WHEN NEW.checksum IS NULL
BEGIN
    SELECT RAISE(ABORT, 'oppcore schema 2 needs a checksum on every event: upgrade oppcore');
END
"""
_COLUMNS = "stream_id, version, type, at, recorded_at, payload"
# The columns a read selects, then the checksum, then the position: ``pages`` pages by the
# last value of each row.
_Row = tuple[Any, Any, Any, Any, Any, Any, Any, int]


def record_checksum(
    position: int, stream_id: str, version: int, type: str, at: str, recorded_at: str, payload: str
) -> str:
    """The checksum a row of ``events`` carries: CRC32 of its position, columns and payload.

    As 8 lowercase hex digits, of the UTF-8 bytes of the position and version, then each
    text column prefixed with its length in characters, then the payload text as stored::

        f"{position},{version},{len(stream_id)}:{stream_id}{len(type)}:{type}"
        f"{len(at)}:{at}{len(recorded_at)}:{recorded_at}{payload}"

    The lengths keep any two different rows from running together into the same text.
    """
    text = (
        f"{position},{version},{len(stream_id)}:{stream_id}{len(type)}:{type}"
        f"{len(at)}:{at}{len(recorded_at)}:{recorded_at}{payload}"
    )
    return f"{zlib.crc32(text.encode('utf-8')):08x}"


class SqliteEventStore:
    """An event store in one SQLite file; several processes may share it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        try:
            self.path = Path(os.fspath(path))
        except TypeError:
            raise ValidationError(f"A database path must be a path, not {short(path)}.") from None
        self._lock = threading.RLock()
        self._broken: CorruptStoreError | None = None
        self._schema = 0  # the file's schema version, as last read
        self._checksums_from: int | None = None  # rows from here on must carry a checksum
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
                self._open_schema()
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
            if isinstance(exc, CorruptStoreError):
                self.store._damaged(exc)
                return
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                exc, sqlite3.IntegrityError
            ):
                message = str(exc).rstrip(".")
                where = f"database {str(self.store.path)!r}"
                if _is_corruption(exc):
                    error = CorruptStoreError(f"Cannot {self.doing} {where}: {message}.")
                    self.store._damaged(error)
                    raise error from None
                raise StorageError(f"Cannot {self.doing} {where}: {message}.") from None
            if isinstance(exc, sqlite3.Error):
                reason = str(exc).rstrip(".")
                raise StorageError(
                    f"Cannot {self.doing} database {str(self.store.path)!r}: {reason}."
                ) from None

    def _translate(self, doing: str) -> SqliteEventStore._Translate:
        return SqliteEventStore._Translate(self, doing)

    def _damaged(self, error: CorruptStoreError) -> None:
        """Remember the first damage found: from now on this store refuses to write."""
        if self._broken is None:
            self._broken = error

    # -- the schema ----------------------------------------------------------------------

    def _open_schema(self) -> None:
        """Read the schema version; make a new file current.  An existing file is not written."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            new = (
                self._db.execute(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('oppcore_meta', 'events')"
                ).fetchone()[0]
                == 0
            )
            if new:
                self._db.execute(_META)
                self._db.execute(_EVENTS)
                self._db.execute(
                    "INSERT INTO oppcore_meta (key, value) VALUES ('schema_version', '1')"
                )
            self._read_schema()
            if new:
                self._make_current()
                # A new store keeps its deal table from its first event on.
                self._create_table()
                self._set_marker(0)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _read_schema(self) -> None:
        """Read ``schema_version`` (and ``checksums_from``) into the store; refuse a newer one."""
        where = f"Database {str(self.path)!r}"
        try:
            meta = dict(self._db.execute("SELECT key, value FROM oppcore_meta").fetchall())
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            raise CorruptStoreError(
                f"{where} is not an oppcore store: it has no oppcore_meta table."
            ) from None
        version = meta.get("schema_version")
        if not (isinstance(version, str) and version.isdigit() and version.isascii()):
            raise CorruptStoreError(
                f"{where} has oppcore schema version {short(version)}, which is not a version."
            )
        if int(version) > SCHEMA_VERSION:
            raise CorruptStoreError(
                f"{where} has oppcore schema version {version!r}; this oppcore reads versions "
                f"up to {SCHEMA_VERSION}. Upgrade oppcore to read it."
            )
        if int(version) >= 2:
            start = meta.get("checksums_from")
            if not (isinstance(start, str) and start.isdigit() and start.isascii()):
                raise CorruptStoreError(
                    f"{where} has checksums_from {short(start)} in oppcore_meta, which is not "
                    f"a position."
                )
            self._checksums_from = int(start)
        else:
            self._checksums_from = None
        self._schema = int(version)

    def _make_current(self) -> None:
        """Bring the file to ``SCHEMA_VERSION``, inside the caller's write transaction.

        Every step checks whether it is done, so running this on a current file changes
        nothing, and two processes upgrading at once (one after the other, under SQLite's
        write lock) upgrade once.  A derived table is one more step of the form "CREATE
        TABLE IF NOT EXISTS ...; build it if it is empty", needing no new version.
        """
        self._read_schema()  # another process may have upgraded since we last looked
        if self._schema >= SCHEMA_VERSION:
            return
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(events)")}
        if "checksum" not in columns:
            # Existing rows keep a NULL checksum: "written before checksums".  Filling them
            # would rewrite the whole table and certify whatever damage it already holds.
            self._db.execute("ALTER TABLE events ADD COLUMN checksum TEXT")
        self._db.execute(
            "INSERT OR IGNORE INTO oppcore_meta (key, value) VALUES ('checksums_from', ?)",
            (str(self._next_position()),),
        )
        self._db.execute(_CHECKSUM_TRIGGER)
        self._db.execute(
            "UPDATE oppcore_meta SET value = ? WHERE key = 'schema_version'",
            (str(SCHEMA_VERSION),),
        )
        self._read_schema()

    def _next_position(self) -> int:
        """The position the next row gets, as AUTOINCREMENT would give it (under the write lock)."""
        row = self._db.execute(
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), "
            "COALESCE((SELECT MAX(position) FROM events), 0))"
        ).fetchone()
        return int(row[0]) + 1

    def _select(self) -> str:
        """The columns a read selects: ``checksum`` once the file has it.

        A schema 1 file is read without checksums, checking each time whether another
        process has upgraded it meanwhile (a query on the tiny meta table, only until then).
        """
        if self._schema < 2:
            self._read_schema()
        if self._schema < 2:
            return f"{_COLUMNS}, NULL, position"
        return f"{_COLUMNS}, checksum, position"

    # -- the EventStore protocol ---------------------------------------------------------

    def append(
        self, stream_id: str, records: Sequence[EventRecord], *, expected_version: int
    ) -> int:
        return self.append_many([(stream_id, records, expected_version)])[0]

    def append_many(
        self,
        batches: Sequence[tuple[str, Sequence[EventRecord], int]],
        *,
        deal_rows: _table.DealRows | None = None,
    ) -> list[int]:
        """Append each batch, all or nothing; with ``deal_rows``, keep the deal table too.

        ``deal_rows`` (what ``Repository`` passes) brings, for each deal stream written, the
        first version whose rows change and the rows from then on.  They are written in
        the events' own transaction when the table is caught up to the events before them;
        otherwise the table is left to be caught up by the next reader of it.
        """
        checked = check_batches(batches)
        rows: list[tuple[str, int, str, str, str, str]] = []
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
                row = (stream_id, record.version, record.type, record.at, record.recorded_at)
                _check_encodable(row, payload)
                rows.append((*row, payload))
        with self._lock, self._translate("append to"):
            if self._broken is not None:
                raise self._refusal()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._schema < SCHEMA_VERSION:
                    self._make_current()
                for stream_id, _, expected in checked:
                    actual = self._version(stream_id)
                    if actual != expected:
                        raise conflict(stream_id, expected, actual)
                # Positions are given here, not by AUTOINCREMENT, because the checksum
                # covers them; the write lock makes them the ones AUTOINCREMENT would give.
                first = self._next_position()
                self._db.executemany(
                    "INSERT INTO events (position, stream_id, version, type, at, recorded_at, "
                    "payload, checksum) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (position, *row, record_checksum(position, *row))
                        for position, row in enumerate(rows, first)
                    ],
                )
                if rows and _table.covers((batch[0] for batch in checked), deal_rows):
                    assert deal_rows is not None
                    self._keep_table(first - 1, first + len(rows) - 1, deal_rows)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return [expected + len(records) for _, records, expected in checked]

    @property
    def pipelines_by_reference(self) -> bool:
        """Whether deals opened here store their pipeline once, by reference: schema 2 files
        (which an oppcore before schema 2 does not write to, so it never meets a reference)."""
        return self._schema >= 2

    # -- the deal table ------------------------------------------------------------------

    def _marker(self) -> int | None:
        row = self._db.execute(
            "SELECT value FROM oppcore_meta WHERE key = ?", (_table.MARKER,)
        ).fetchone()
        return None if row is None else self._checked_marker(row[0])

    def _checked_marker(self, value: object) -> int:
        if not (isinstance(value, str) and value.isdigit() and value.isascii()):
            raise CorruptStoreError(
                f"Database {str(self.path)!r} has {_table.MARKER} {short(value)} in "
                "oppcore_meta, which is not a position."
            )
        return int(value)

    def _keep_table(self, before: int, last: int, deal_rows: _table.DealRows) -> None:
        """Inside an append's transaction: write its rows if the table is caught up."""
        if self._marker() != before:
            return  # not built, or behind: whoever reads it next catches it up
        for stream_id, (since, _) in deal_rows.items():
            if since:  # a new deal has no rows yet
                self._db.execute(
                    f"DELETE FROM {_table.TABLE} WHERE opportunity_id = ? AND version >= ?",
                    (stream_id, since),
                )
        self._insert_rows([row for _, found in deal_rows.values() for row in found])
        self._set_marker(last)

    def _insert_rows(self, found: Sequence[DealVersion]) -> None:
        marks = ", ".join("?" * len(COLUMNS))
        self._db.executemany(
            f"INSERT INTO {_table.TABLE} ({', '.join(COLUMNS)}) VALUES ({marks})",
            [_table.encode_text(row) for row in found],
        )

    def _set_marker(self, position: int) -> None:
        self._db.execute(
            "INSERT INTO oppcore_meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_table.MARKER, str(position)),
        )

    def deal_table_position(self) -> int | None:
        """The last event position the deal table reflects; None while it is not built."""
        with self._lock, self._translate("read"):
            return self._marker()

    def deal_table_lag(self) -> tuple[int | None, int]:
        """The table's position and the last event's, read together (one query)."""
        with self._lock, self._translate("read"):
            row = self._db.execute(
                "SELECT (SELECT value FROM oppcore_meta WHERE key = ?), "
                "(SELECT MAX(position) FROM events)",
                (_table.MARKER,),
            ).fetchone()
        last = int(row[1] or 0)
        return (None if row[0] is None else self._checked_marker(row[0])), last

    def last_position(self) -> int:
        """The position of the last event stored (0 for an empty store)."""
        with self._lock, self._translate("read"):
            row = self._db.execute("SELECT MAX(position) FROM events").fetchone()
            return int(row[0] or 0)

    def replace_deals(
        self,
        streams: Mapping[str, Sequence[DealVersion]],
        *,
        since: int | None,
        until: int,
        rebuild: bool = False,
    ) -> bool:
        """Replace the rows of ``streams``, projected from the events up to ``until``.

        One transaction, taken only if the table still reflects the events up to ``since``
        (None: not built yet; it is made here); ``rebuild`` replaces the whole table and
        needs ``until`` to be the last position.  False when another writer moved on first:
        read again and retry.
        """
        with self._lock, self._translate("write the deal table of"):
            if self._broken is not None:
                raise self._refusal()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._schema < SCHEMA_VERSION:
                    self._make_current()
                marker = self._marker() if self._has_table() else None
                if rebuild:
                    current = self._db.execute("SELECT MAX(position) FROM events").fetchone()
                    if int(current[0] or 0) != until:
                        self._db.execute("ROLLBACK")
                        return False
                elif marker != since:
                    self._db.execute("ROLLBACK")
                    return False
                self._create_table()
                if rebuild:
                    self._db.execute(f"DELETE FROM {_table.TABLE}")
                for stream_id, found in streams.items():
                    if not rebuild:
                        self._db.execute(
                            f"DELETE FROM {_table.TABLE} WHERE opportunity_id = ?", (stream_id,)
                        )
                    self._insert_rows(found)
                self._set_marker(until)
                self._db.execute("COMMIT")
                return True
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _create_table(self) -> None:
        for statement in _table.sqlite_ddl().split(";"):
            if statement.strip():
                self._db.execute(statement)

    def _has_table(self) -> bool:
        row = self._db.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
            (_table.TABLE,),
        ).fetchone()
        return bool(row[0])

    def find_deals(self, query: _table.Query) -> list[DealVersion]:
        """The current rows ``query`` matches, in its order, from the table."""
        where, params = _table.sql_where(query)
        order = _table.sql_order(query)
        sql = f"SELECT {', '.join(COLUMNS)} FROM {_table.TABLE} WHERE {where}"
        with self._lock, self._translate("read"):
            if order is None:  # exact decimal order: sort the matches here
                found = [_table.decode_text(row) for row in self._db.execute(sql, params)]
                return query.ordered(found)
            sql += f" ORDER BY {order}"
            if query.limit is not None or query.offset:
                sql += " LIMIT ? OFFSET ?"
                params = [*params, -1 if query.limit is None else query.limit, query.offset]
            return [_table.decode_text(row) for row in self._db.execute(sql, params)]

    def count_deals(self, query: _table.Query) -> int:
        where, params = _table.sql_where(query)
        with self._lock, self._translate("read"):
            row = self._db.execute(
                f"SELECT COUNT(*) FROM {_table.TABLE} WHERE {where}", params
            ).fetchone()
            return int(row[0])

    def deal_frame(self, *, backend: str = "polars", current: bool = False) -> Any:
        """The table as a deal frame, parsed from its text columns by polars."""
        from oppcore.frame import _as_backend, _check_backend, deal_frame

        _check_backend(backend)
        try:
            return _as_backend(self._read_frame(COLUMNS, current), backend)
        except _table.NotPlainText:
            # A value in exponent form, or with more places than a frame holds: the exact
            # path reads it, or names the deal whose value does not fit.
            rows = (row for row in self.deal_versions() if not current or row.is_current)
            return deal_frame(list(rows), backend=backend)

    def _read_frame(self, names: Sequence[str], current: bool) -> Any:
        where = " WHERE valid_to IS NULL AND recorded_to IS NULL" if current else ""
        sql = (
            f"SELECT {', '.join(names)} FROM {_table.TABLE}{where} "
            "ORDER BY opportunity_id, version, recorded_from"
        )
        with self._lock, self._translate("read"):
            rows = self._db.execute(sql).fetchall()
        try:
            return _table.text_frame(rows, names)
        except Exception as exc:  # polars' parse errors: the table holds text it cannot read
            if isinstance(exc, (ImportError, ValidationError, _table.NotPlainText)):
                raise
            raise CorruptStoreError(
                f"Database {str(self.path)!r}: the deal table holds a value that does not "
                f"read back ({short(str(exc))}); rebuild_deal_table() rebuilds it."
            ) from None

    def deal_versions(self) -> Iterator[DealVersion]:
        """Every row of the deal table, by deal, version and recorded time."""
        select = (
            f"SELECT {', '.join(COLUMNS)} FROM {_table.TABLE} "
            "WHERE (opportunity_id, version, recorded_from) > (?, ?, ?) "
            "ORDER BY opportunity_id, version, recorded_from LIMIT ?"
        )
        last: tuple[str, int, str] = ("", -1, "")
        while True:
            with self._lock, self._translate("read"):
                page = self._db.execute(select, (*last, 10_000)).fetchall()
            if not page:
                return
            for row in page:
                yield _table.decode_text(row)
            final = page[-1]
            last = (final[0], final[1], final[4])

    def _refusal(self) -> CorruptStoreError:
        found = str(self._broken).rstrip(".")
        return CorruptStoreError(
            f"Nothing was written: {found}. A damaged database refuses every write; run "
            f"'oppcore verify' on it and restore it from a backup."
        )

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
                f"SELECT {self._select()} FROM events "
                "WHERE stream_id = ? AND version > ? ORDER BY version",
                (stream_id, after_version),
            ).fetchall()
            return [self._record(row) for row in rows]

    def _record(self, row: _Row) -> EventRecord:
        """The record a row holds, after checking its checksum and the kind of each column."""
        stream_id, version, kind, at, recorded_at, text, checksum, position = row
        where = f"Database {str(self.path)!r}: the record at position {position}"
        columns = (stream_id, kind, at, recorded_at, text)
        if not (all(isinstance(value, str) for value in columns) and type(version) is int):
            raise CorruptStoreError(
                f"{where} (stream {short(stream_id)}, version {short(version)}) holds a value "
                f"of the wrong kind; it was damaged after it was written."
            )
        where = f"{where} (stream {stream_id!r}, version {version})"
        if checksum is None:
            if self._checksums_from is not None and position >= self._checksums_from:
                raise CorruptStoreError(f"{where} has lost its checksum.")
        else:
            try:
                expected = record_checksum(
                    position, stream_id, version, kind, at, recorded_at, text
                )
            except UnicodeEncodeError:
                expected = None
            if checksum != expected:
                raise CorruptStoreError(
                    f"{where} does not match its checksum; it was damaged after it was written."
                )
        payload = payload_object(text, where)
        return EventRecord(stream_id, version, kind, at, recorded_at, payload, position)

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
            with self._lock, self._translate("read"):
                record = self._record(row)
            yield record

    def _page(self, after: int, count: int) -> list[_Row]:
        with self._lock, self._translate("read"):
            return self._db.execute(
                f"SELECT {self._select()} FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (after, count),
            ).fetchall()

    # -- checking ------------------------------------------------------------------------

    def integrity_problems(self) -> list[str]:
        """What SQLite's own ``PRAGMA integrity_check`` finds damaged, one line each; [] when sound.

        It reads every page of the file and checks every index against its table (an
        index that lost an entry, which makes a deal vanish from ``read_stream`` while
        ``read_all`` still sees it), so it costs about as much as reading the whole file
        (on the order of a second per few hundred thousand events).  Checksums are not
        part of it: the reads ``verify`` makes check those.  Damage found here makes the
        store refuse to write, as damage found by a read does.
        """
        with self._lock:
            try:
                found = self._check("integrity_check")
            except sqlite3.DatabaseError as exc:
                if not _is_corruption(exc):
                    with self._translate("check"):
                        raise
                # integrity_check gives up on a page it cannot decode at all; quick_check
                # (the same walk of every page, without the index comparison) gets further.
                try:
                    found = self._check("quick_check") or [str(exc)]
                except sqlite3.DatabaseError as again:
                    if not _is_corruption(again):
                        with self._translate("check"):
                            raise
                    found = [str(exc)]
        where = f"Database {str(self.path)!r}"
        problems = [
            f"{where} is damaged: SQLite's integrity check reports {line.rstrip('.')!r}."
            for line in found
        ]
        if problems:
            self._damaged(CorruptStoreError(problems[0]))
        return problems

    def _check(self, pragma: str) -> list[str]:
        lines = []
        for (text,) in self._db.execute(f"PRAGMA {pragma}"):
            for line in str(text).splitlines():
                line = line.strip()
                if line and line != "ok" and not line.startswith("*** in database"):
                    lines.append(line)
        return lines

    def close(self) -> None:
        """Close the connection; the store cannot be used afterwards."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> SqliteEventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file is damaged (SQLITE_CORRUPT, SQLITE_NOTADB)."""
    message = str(exc)
    return "malformed" in message or "not a database" in message


def _check_encodable(row: tuple[str, int, str, str, str], payload: str) -> None:
    """Refuse text SQLite cannot store as UTF-8 (a lone surrogate), naming where it is."""
    stream_id, version, kind, at, recorded_at = row
    texts = {"stream_id": stream_id, "type": kind, "at": at, "recorded_at": recorded_at}
    for name, value in {**texts, "payload": payload}.items():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValidationError(
                f"Record {version} of stream {short(stream_id)} holds text that is not valid "
                f"Unicode in its {name} ({exc.reason} at index {exc.start}); it cannot be stored."
            ) from None

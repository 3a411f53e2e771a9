"""An event store in PostgreSQL: one database that services on several hosts share.

One ``oppcore_events`` table with ``UNIQUE(stream_id, version)`` for optimistic concurrency,
a ``position`` from an identity column for the global order, and ``oppcore_meta`` holding
the schema version.  Every append is one transaction.

``read_all`` must never skip an event.  A sequence value is taken when a row is inserted,
not when its transaction commits, so with two writers at once the row holding position 11
can commit before the one holding 10; a reader that saw 11 and remembered it would never
see 10.  Appends therefore serialise on a transaction-level advisory lock keyed by the
events table's OID, taken just before they insert: positions are handed out in commit order
(the eventsourcing library takes a table lock for the same reason; an advisory lock needs
no privilege beyond SELECT and INSERT, and never blocks readers or maintenance).  The lock
is held only for the insert and the commit; versions are checked and payloads encoded
before it, and ``UNIQUE(stream_id, version)`` catches a stream that moved on in between.

psycopg errors never escape raw: a lost connection becomes ``StoreUnavailableError`` (the
same store reconnects on its next call once the server is back), a version clash
``ConcurrencyError``, anything else ``StorageError``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from oppcore._repr import short
from oppcore.exceptions import (
    CorruptStoreError,
    StorageError,
    StoreUnavailableError,
    ValidationError,
)
from oppcore.storage.records import (
    EventRecord,
    check_batches,
    check_read_args,
    conflict,
    pages,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

SCHEMA_VERSION = 1
PAGE = 10_000
# Appends up to this many records go in one INSERT; larger ones by COPY.
_ONE_STATEMENT = 1_000
#: How long a statement of an append may wait for the lock or the server (seconds).
STATEMENT_TIMEOUT_SECONDS = 60

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS oppcore_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS oppcore_events (
        position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        stream_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        type TEXT NOT NULL,
        at TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        payload TEXT NOT NULL,
        UNIQUE (stream_id, version)
    )""",
)
# Held while the schema is made, so that services starting at once do not race on
# CREATE TABLE (which is not safe to run concurrently, IF NOT EXISTS or not).
_SCHEMA_LOCK = 0x6F7070636F7265  # "oppcore"

# Login refused, no such role or database: configuration, not an outage.
_REFUSED = frozenset({"28000", "28P01", "3D000"})

_SELECT = "SELECT stream_id, version, type, at, recorded_at, payload, position FROM oppcore_events"


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StorageError(
            "PostgreSQL stores need psycopg 3: pip install 'oppcore[postgres]'."
        ) from None
    return psycopg


def redacted(conninfo: str) -> str:
    """The connection string without its password, for messages."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(conninfo)
    except Exception:  # not parseable: show nothing of it rather than a password
        return "the PostgreSQL server"
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    name = parts.get("dbname") or parts.get("user") or ""
    return f"PostgreSQL {host}:{port}/{name}"


class PostgresEventStore:
    """An event store in a PostgreSQL database; processes on several hosts may share it.

    ``conninfo`` is a libpq connection string or URL (``postgresql://user@host/db``).
    ``pool`` is an optional ``psycopg_pool.ConnectionPool``: without one the store keeps one
    connection of its own (one per process after a fork) and serialises its threads on it.
    The schema is made on first use, or by ``create_schema()``.
    """

    def __init__(self, conninfo: str, *, pool: ConnectionPool | None = None) -> None:
        if not isinstance(conninfo, str) or not conninfo.strip():
            raise ValidationError(
                f"A PostgreSQL store needs a connection string, not {short(conninfo)}."
            )
        self._psycopg = _psycopg()
        if pool is not None:
            try:
                from psycopg_pool import ConnectionPool
            except ImportError:
                raise StorageError(
                    "Connection pools need psycopg_pool: pip install 'oppcore[postgres]'."
                ) from None
            if not isinstance(pool, ConnectionPool):
                raise ValidationError(
                    f"pool must be a psycopg_pool.ConnectionPool, not {short(pool)}."
                )
        try:
            from psycopg.conninfo import conninfo_to_dict

            parts = conninfo_to_dict(conninfo)
        except Exception:  # libpq's message may quote the password: do not pass it on
            raise ValidationError(
                "The PostgreSQL connection string cannot be read; check its form (it is not "
                "shown here, as it may hold a password)."
            ) from None
        self.conninfo = conninfo
        self._where = redacted(conninfo)
        self._pool = pool
        self._lock = threading.RLock()
        self._connection: psycopg.Connection[Any] | None = None
        # A connection string without its own connect_timeout gets one: never wait forever.
        self._connect_options = {} if "connect_timeout" in parts else {"connect_timeout": 10}
        self._inherited: list[psycopg.Connection[Any]] = []
        self._pid = os.getpid()
        self._closed = False
        try:
            self.create_schema()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<PostgresEventStore {self._where}>"

    # -- connections and errors ----------------------------------------------------------

    @contextmanager
    def _connect(self, doing: str) -> Iterator[psycopg.Connection[Any]]:
        """A connection for one unit of work, with psycopg's errors made ours."""
        if self._closed:
            raise StorageError(f"The store on {self._where} is closed.")
        psycopg = self._psycopg
        try:
            if self._pool is not None:
                with self._pool.connection() as connection:
                    yield connection
                return
            with self._lock:
                yield self._own_connection()
        except psycopg.errors.UniqueViolation:
            raise  # the caller turns it into ConcurrencyError, knowing the stream
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._drop_connection()
            if getattr(exc, "sqlstate", None) in _REFUSED:  # retrying cannot help
                raise StorageError(
                    f"{self._where} refused to {doing} it: {_reason(exc)}."
                ) from None
            raise StoreUnavailableError(
                f"Cannot {doing} {self._where}: {_reason(exc)}. The same store reconnects "
                "once the server is back; an append cut off while it committed may or may "
                "not have been saved, so reload before you retry it."
            ) from None
        except psycopg.Error as exc:
            raise StorageError(f"Cannot {doing} {self._where}: {_reason(exc)}.") from None
        except _pool_errors() as exc:
            raise StoreUnavailableError(f"Cannot {doing} {self._where}: {_reason(exc)}.") from None

    def _own_connection(self) -> psycopg.Connection[Any]:
        if self._pid != os.getpid():
            # A forked child must not use its parent's socket, nor close it: keep it
            # untouched (and unwarned about) and open one of its own.
            if self._connection is not None:
                self._inherited.append(self._connection)
            self._connection = None
            self._pid = os.getpid()
        if self._connection is None or self._connection.closed:
            self._connection = self._psycopg.connect(
                self.conninfo,
                autocommit=True,  # reads need no transaction; appends open their own
                **self._connect_options,
            )
        return self._connection

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and self._pid == os.getpid():
            with suppress(Exception):  # already broken: nothing more to release
                connection.close()

    # -- the schema ----------------------------------------------------------------------

    def create_schema(self) -> None:
        """Create the tables and record the schema version; safe to call again and from
        several processes at once.  When the tables are there already it only checks the
        version, so a role without CREATE on the schema can use the store."""
        with self._connect("create the schema on") as connection, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            made = connection.execute(
                "SELECT to_regclass('oppcore_events') IS NOT NULL "
                "AND to_regclass('oppcore_meta') IS NOT NULL"
            ).fetchone()
            if not (made and made[0]):
                for statement in _SCHEMA:
                    connection.execute(statement)
            row = connection.execute(
                "SELECT value FROM oppcore_meta WHERE key = 'schema_version'"
            ).fetchone()
            if row is None:
                connection.execute(
                    "INSERT INTO oppcore_meta (key, value) VALUES ('schema_version', %s)",
                    (str(SCHEMA_VERSION),),
                )
            elif row[0] != str(SCHEMA_VERSION):
                raise CorruptStoreError(
                    f"{self._where} has oppcore schema version {row[0]!r}; this oppcore reads "
                    f"version {SCHEMA_VERSION}. Upgrade oppcore to read it."
                )

    # -- the EventStore protocol ---------------------------------------------------------

    def append(
        self, stream_id: str, records: Sequence[EventRecord], *, expected_version: int
    ) -> int:
        return self.append_many([(stream_id, records, expected_version)])[0]

    def append_many(self, batches: Sequence[tuple[str, Sequence[EventRecord], int]]) -> list[int]:
        """Append each ``(stream_id, records, expected_version)`` batch in one transaction:
        all or nothing."""
        checked = check_batches(batches)
        rows = [
            (
                stream_id,
                record.version,
                _text(record.type, "Record type"),
                _text(record.at, "Record time"),
                _text(record.recorded_at, "Record time"),
                _payload(record),
            )
            for stream_id, records, _ in checked
            for record in records
        ]
        for stream_id, _, _ in checked:
            _text(stream_id, "Stream id")
        streams = [stream_id for stream_id, _, _ in checked]
        expected = {stream_id: version for stream_id, _, version in checked}
        psycopg = self._psycopg
        try:
            with self._connect("append to") as connection:
                # The versions are checked before the lock: a stream's versions only ever
                # grow, so one that is not the expected version now never will be, and one
                # that moves on after this check makes the insert collide with UNIQUE
                # (stream_id, version) below.  The lock is held for the insert and the
                # commit only.
                actual = self._versions(connection, streams)
                for stream_id in streams:
                    if actual[stream_id] != expected[stream_id]:
                        raise conflict(stream_id, expected[stream_id], actual[stream_id])
                if not rows:
                    return [version for _, _, version in checked]
                if not connection.autocommit:  # a pooled connection: end the read first
                    connection.rollback()
                with connection.transaction():
                    # Positions in commit order: see the module's documentation.
                    connection.execute(
                        "SELECT set_config('statement_timeout', %s, true), "
                        "pg_advisory_xact_lock('oppcore_events'::regclass::oid::bigint)",
                        (str(STATEMENT_TIMEOUT_SECONDS * 1000),),
                    )
                    self._insert(connection, rows)
        except psycopg.errors.UniqueViolation:  # someone appended since the check
            for stream_id in streams:
                now = self.stream_version(stream_id)
                if now != expected[stream_id]:
                    raise conflict(stream_id, expected[stream_id], now) from None
            raise conflict(streams[0], expected[streams[0]], expected[streams[0]] + 1) from None
        return [version + len(records) for _, records, version in checked]

    @staticmethod
    def _versions(connection: psycopg.Connection[Any], streams: list[str]) -> dict[str, int]:
        actual = dict.fromkeys(streams, 0)
        for stream_id, version in connection.execute(
            "SELECT stream_id, MAX(version) FROM oppcore_events "
            "WHERE stream_id = ANY(%s) GROUP BY stream_id",
            (streams,),
        ):
            actual[stream_id] = version
        return actual

    @staticmethod
    def _insert(connection: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
        """One statement for the usual small append; COPY for a bulk one."""
        if len(rows) <= _ONE_STATEMENT:
            columns = list(zip(*rows, strict=True))
            connection.execute(
                "INSERT INTO oppcore_events (stream_id, version, type, at, recorded_at, payload) "
                "SELECT * FROM unnest(%s::text[], %s::int[], %s::text[], %s::text[], "
                "%s::text[], %s::text[])",
                [list(column) for column in columns],
            )
            return
        with (
            connection.cursor() as cursor,
            cursor.copy(
                "COPY oppcore_events (stream_id, version, type, at, recorded_at, payload) "
                "FROM STDIN"
            ) as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def stream_version(self, stream_id: str) -> int:
        if not isinstance(stream_id, str):
            raise ValidationError(f"Stream id must be text, not {short(stream_id)}.")
        if "\x00" in stream_id:
            return 0  # PostgreSQL text cannot hold NUL: no such stream can exist
        with self._connect("read") as connection:
            row = connection.execute(
                "SELECT MAX(version) FROM oppcore_events WHERE stream_id = %s", (stream_id,)
            ).fetchone()
        return int(row[0] or 0) if row else 0

    def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[EventRecord]:
        check_read_args(after_version, None, "after_version")
        if not isinstance(stream_id, str):
            raise ValidationError(f"Stream id must be text, not {short(stream_id)}.")
        if "\x00" in stream_id:
            return []  # PostgreSQL text cannot hold NUL: no such stream can exist
        with self._connect("read") as connection:
            rows = connection.execute(
                f"{_SELECT} WHERE stream_id = %s AND version > %s ORDER BY version",
                (stream_id, after_version),
            ).fetchall()
        return [self._record(row) for row in rows]

    def stream_ids(self) -> Iterator[str]:
        with self._connect("read") as connection:
            rows = connection.execute(
                "SELECT stream_id FROM oppcore_events WHERE version = 1 ORDER BY position"
            ).fetchall()
        return iter([row[0] for row in rows])

    def read_all(
        self, *, after_position: int = 0, limit: int | None = None
    ) -> Iterator[EventRecord]:
        check_read_args(after_position, limit)
        return self._read_all(after_position, limit)

    def _read_all(self, after: int, limit: int | None) -> Iterator[EventRecord]:
        for row in pages(self._page, after, limit, size=PAGE):
            yield self._record(row)

    def _page(self, after: int, count: int) -> list[tuple[Any, ...]]:
        with self._connect("read") as connection:
            return connection.execute(
                f"{_SELECT} WHERE position > %s ORDER BY position LIMIT %s", (after, count)
            ).fetchall()

    def _record(self, row: tuple[Any, ...]) -> EventRecord:
        try:
            payload = json.loads(row[5])
        except ValueError:
            raise CorruptStoreError(
                f"{self._where}: the payload at position {row[6]} is not JSON."
            ) from None
        return EventRecord(row[0], row[1], row[2], row[3], row[4], payload, row[6])

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the store's own connection (a pool given to it is the caller's to close)."""
        with self._lock:
            self._drop_connection()
            self._closed = True

    def __enter__(self) -> PostgresEventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pool_errors() -> tuple[type[BaseException], ...]:
    try:
        from psycopg_pool import PoolTimeout
    except ImportError:
        return ()
    return (PoolTimeout,)


def _reason(exc: BaseException) -> str:
    """The server's or the driver's reason on one line (libpq's own text holds no password)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _text(value: str, what: str) -> str:
    if "\x00" in value:
        raise ValidationError(
            f"{what} {short(value)} holds a NUL character, which PostgreSQL text cannot store."
        )
    return value


def _payload(record: EventRecord) -> str:
    try:
        # NUL inside strings is escaped as \u0000 in the JSON text, which PostgreSQL keeps.
        return json.dumps(
            record.payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"Record payloads must be JSON-compatible: {exc}.") from None


__all__ = ["PostgresEventStore"]

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

psycopg errors never escape raw, nor ride along as an exception's context: a lost
connection becomes ``StoreUnavailableError`` (the same store reconnects on its next call once
the server is back), a version clash ``ConcurrencyError``, a refused login or an unknown
database or role a ``StorageError`` that says what to fix, an id too long for the index a
``ValidationError`` naming it, anything else ``StorageError``.  The SQLSTATE decides where
the server sends one; a failed connection has none (libpq keeps only the text), so its text
decides.

No call waits on the server for ever.  Keepalives and ``tcp_user_timeout`` find a peer that
is gone, but a server that is frozen (SIGSTOP, a hung VM) still has its kernel acknowledge
every packet and answer every keepalive, so they never fire while a query waits for its
answer.  So each call is also bounded on the client: a watchdog thread shuts down the socket
of a call that outlives the store's ``timeout``, which makes libpq's wait return at once.

No message, log line or repr holds a password.  libpq's text names the host, port, user and
database it understood, never the password; what must not happen is that libpq reads part of
a password as a host, a port or a database, as it does when a URL's password holds a raw
``/`` or ``@``.  Such a URL is refused before libpq connects (or psycopg logs the attempt),
and every text of libpq's is scrubbed of the password too.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote

from oppcore._repr import short
from oppcore.domain.versions import COLUMNS, DealVersion
from oppcore.exceptions import (
    CorruptStoreError,
    OppcoreError,
    StorageError,
    StoreUnavailableError,
    ValidationError,
)
from oppcore.storage import _table
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

_T = TypeVar("_T")

#: The schema this oppcore makes: 2 stores each pipeline definition once (``definition:``
#: streams), referenced from ``Opened``.  Schema 1 stores are read and written as they are.
SCHEMA_VERSION = 2
READ_VERSIONS = frozenset({1, 2})
# Before every row's recorded_from: where a walk of the deal table in key order starts.
_EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
PAGE = 10_000
# Appends up to this many records go in one INSERT; larger ones by COPY.
_ONE_STATEMENT = 1_000
#: How long a statement of an append may wait for the lock or the server (seconds), at
#: most: half the store's ``timeout`` when that is shorter, so that the server's own, clean
#: cancellation comes before the client gives up on the connection.
STATEMENT_TIMEOUT_SECONDS = 60
#: The longest one call may wait on the server before the store gives up on the connection
#: (seconds): ``PostgresEventStore(conninfo, timeout=...)``.
TIMEOUT_SECONDS = 120.0
#: The connection parameters a store adds to its own connections unless the connection
#: string (or, for ``connect_timeout``, ``PGCONNECT_TIMEOUT``) gives them; ``connect_timeout``
#: and ``tcp_user_timeout`` shrink to the store's ``timeout`` when that is shorter.
CONNECTION_DEFAULTS: dict[str, int] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # milliseconds
}
# btree's limit on one index entry (PostgreSQL's default 8 kB pages).
_INDEX_ENTRY_BYTES = 2704

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

# SQLSTATE classes of a server that is away or busy for now: connection exceptions,
# insufficient resources, objects in use or locked, operator intervention (shutdown, a
# statement timeout), system errors.  Retrying later can help.
_OUTAGE_CLASSES = frozenset({"08", "53", "55", "57", "58"})
# A refused connection, told by its SQLSTATE class (invalid authorization, invalid catalog
# name) or, at connection time, when libpq keeps only the text, by the text: configuration,
# which retrying cannot mend.  Each says what to fix.
_REFUSAL_CLASSES = frozenset({"28", "3D"})
_REFUSALS = (
    (
        re.compile(r'database "([^"]*)" does not exist'),
        "there is no database {name!r}. Create it, or correct the database name (dbname) in "
        "the connection string.",
    ),
    (
        re.compile(r'role "([^"]*)" does not exist'),
        "there is no role {name!r}. Create it (CREATE ROLE ... LOGIN), or correct the user "
        "name in the connection string.",
    ),
    (
        re.compile(r'authentication failed for user "([^"]*)"'),
        "the login of {name!r} failed. Check the user name and the password (in the "
        "connection string, ~/.pgpass or PGPASSWORD).",
    ),
    (
        re.compile(r"(no password supplied|password is required)"),
        "it asks for a password and none was given. Give it in ~/.pgpass, PGPASSWORD or the "
        "connection string.",
    ),
    (
        re.compile(r'role "([^"]*)" is not permitted to log in'),
        "role {name!r} may not log in. Give it LOGIN (ALTER ROLE ... LOGIN), or connect as "
        "another role.",
    ),
    (
        re.compile(r'permission denied for database "([^"]*)"'),
        "the role may not connect to database {name!r}. Grant it CONNECT (GRANT CONNECT ON "
        "DATABASE ...).",
    ),
    (
        re.compile(r"(pg_hba\.conf)"),
        "its pg_hba.conf lets no such connection in. Ask its administrator to allow this "
        "user, database and host.",
    ),
)
_IN_DOUBT = (
    "an append cut off while it committed may or may not have been saved, so reload before "
    "you retry it."
)

_SELECT = "SELECT stream_id, version, type, at, recorded_at, payload, position FROM oppcore_events"


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StorageError(
            "PostgreSQL stores need psycopg 3: pip install 'oppcore[postgres]'."
        ) from None
    return psycopg


# -- passwords are never shown ---------------------------------------------------------------

_URL_PREFIXES = ("postgresql://", "postgres://")
_MASK = "***"
# ``password=`` / ``sslpassword=`` and the value after it, quoted (up to the closing quote, or
# the end when there is none) or bare: in a key=value string, and in a URL's query.
_SECRET = re.compile(
    r"(?<![A-Za-z0-9_])((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)", re.IGNORECASE
)
# A password shorter than this is not scrubbed from libpq's text: it would garble every
# number and name in it, and hides nothing that is worth hiding.
_SHORTEST_SCRUBBED = 3


def masked(text: str) -> str:
    """``text`` with every password it may hold replaced by ``***``: a URL's
    ``user:password@``, and ``password=...`` as in a key=value connection string or a URL's
    query.  For messages that echo what may be a connection string (a store target that
    is not one oppcore knows, the command's ``--store``); it needs no psycopg."""
    shown = _SECRET.sub(lambda match: match.group(1) + _MASK, text)
    scheme, sep, rest = shown.partition("://")
    if sep:
        # Up to the last '@': a password holding a raw '@' or '/' is masked whole.
        userinfo, at, after = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        if at and colon:
            shown = f"{scheme}://{user}:{_MASK}@{after}"
    return shown


def _secrets(conninfo: str) -> set[str]:
    """Every text in ``conninfo`` that may be a password, as written and as libpq decodes it."""
    found: set[str] = set()
    for match in _SECRET.finditer(conninfo):
        value = match.group(2)
        found |= {value, unquote(value), _unquoted(value)}
    if conninfo.startswith(_URL_PREFIXES):
        userinfo, at, _ = conninfo.partition("://")[2].rpartition("@")
        if at and ":" in userinfo:
            value = userinfo.partition(":")[2]
            found |= {value, unquote(value)}
    with suppress(Exception):  # not readable: the texts above are all there is
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(conninfo)
        found |= {str(parts.get(key) or "") for key in ("password", "sslpassword")}
    return {value for value in found if len(value) >= _SHORTEST_SCRUBBED}


def _unquoted(value: str) -> str:
    """A key=value string's value as libpq reads it: quotes dropped, backslashes undone."""
    if not value.startswith("'"):
        return value
    inner = value[1:-1] if len(value) > 1 and value.endswith("'") else value[1:]
    return re.sub(r"\\(.)", r"\1", inner)


def _scrubbed(text: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


def _misread(conninfo: str, parts: dict[str, Any]) -> bool:
    """Whether libpq reads part of this URL's user name or password as a host, a port or a
    database: an '@' or a '/' in it that is not percent-encoded.  libpq ends the user name
    and password at the first '@' or '/', so ``postgresql://u:Hun/ter@h/db`` is host 'u',
    port 'Hun' and database 'ter@h/db'; ``postgresql://u:p@ss@h/db`` is host 'ss@h'."""
    if not conninfo.startswith(_URL_PREFIXES):
        return False
    rest = conninfo.partition("://")[2]
    at, slash = rest.find("@"), rest.find("/")
    if at != -1 and (slash == -1 or at < slash):
        rest = rest[at + 1 :]  # what libpq took for the user name and password
    if "@" in rest.partition("?")[0]:  # no host or database name holds an '@'
        return True
    ports = str(parts.get("port") or "").split(",")
    return not all(port.isdigit() or not port for port in ports)


def _parsed(conninfo: str) -> dict[str, Any]:
    """libpq's reading of ``conninfo``; a ``ValidationError`` that never quotes it (libpq's
    own message may: 'invalid percent-encoded token: "s3cret%zz"') when it cannot be read,
    or would be misread."""
    from psycopg.conninfo import conninfo_to_dict

    parts: dict[str, Any] | None = None
    with suppress(Exception):
        parts = conninfo_to_dict(conninfo)
    # Raised here, outside the handler, so that libpq's message is not even its context.
    if parts is None:
        raise ValidationError(
            "The PostgreSQL connection string cannot be read; check its form (in a URL, "
            "percent-encode spaces and '%' in the user name and password, as %20 and %25). It "
            "is not shown here, as it may hold a password."
        )
    if _misread(conninfo, parts):
        raise ValidationError(
            "The PostgreSQL URL's user name or password holds an '@' or a '/' (or its port is "
            "not a number), which would make libpq read part of it as the host, the port or "
            "the database: percent-encode them ('@' as %40, '/' as %2F, ':' as %3A), or keep "
            "the password out of the URL (~/.pgpass or PGPASSWORD). The URL is not shown "
            "here, as it may hold a password."
        )
    return parts


def redacted(conninfo: str) -> str:
    """The server a connection string names, for messages: ``PostgreSQL host:port/database``,
    never with its password (nor any part of it that libpq would misread)."""
    try:
        parts = _parsed(conninfo)
    except Exception:  # not readable, or misread: show nothing of it rather than a password
        return "the PostgreSQL server"
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    name = parts.get("dbname") or parts.get("user") or ""
    return _scrubbed(f"PostgreSQL {host}:{port}/{name}", _secrets(conninfo))


# -- every call has a bound ------------------------------------------------------------------


class _Guard:
    """The bound on one call: past its deadline the watchdog shuts the call's socket down, so
    that libpq's wait for an answer returns at once ("server closed the connection")."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = math.inf
        self.fired = False
        # A duplicate of the connection's socket: it keeps the socket itself alive while the
        # guard is armed, so a socket libpq closes (and the system hands its number to another
        # file) is never the one shut down.
        self._socket: socket.socket | None = None

    def arm(self, connection: psycopg.Connection[Any]) -> None:
        try:
            self._socket = socket.socket(fileno=os.dup(connection.pgconn.socket))
        except Exception:  # no socket (a connection already broken): it fails on its own
            return
        self.deadline = time.monotonic() + self.seconds
        _WATCHDOG.arm(self)

    def disarm(self) -> None:
        if self._socket is not None:
            _WATCHDOG.disarm(self)  # after this the guard can no longer fire
            self._socket.close()
            self._socket = None

    def fire(self) -> None:
        """Cut the connection (called by the watchdog, under its lock)."""
        self.fired = True
        if self._socket is not None:
            with suppress(OSError):  # already closed by the other side: cut all the same
                self._socket.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One thread per process that fires the guards whose deadline has passed."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._guards: set[_Guard] = set()
        self._until = math.inf  # when the thread wakes next
        self._thread: threading.Thread | None = None

    def arm(self, guard: _Guard) -> None:
        with self._condition:
            self._guards.add(guard)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="oppcore-postgres-watchdog", daemon=True
                )
                self._thread.start()
            if guard.deadline < self._until:
                self._condition.notify()

    def disarm(self, guard: _Guard) -> None:
        with self._condition:
            self._guards.discard(guard)

    def _watch(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                for guard in [guard for guard in self._guards if guard.deadline <= now]:
                    self._guards.discard(guard)
                    guard.fire()
                self._until = min((guard.deadline for guard in self._guards), default=math.inf)
                self._condition.wait(None if self._until == math.inf else self._until - now)


_WATCHDOG = _Watchdog()


def _new_watchdog() -> None:
    # A forked child has no watchdog thread, and its lock may have been held at the fork.
    global _WATCHDOG
    _WATCHDOG = _Watchdog()


os.register_at_fork(after_in_child=_new_watchdog)


def _connection_defaults(parts: dict[str, Any], timeout: float) -> dict[str, int]:
    """``CONNECTION_DEFAULTS`` less what the caller set, shrunk to ``timeout``."""
    wanted = dict(CONNECTION_DEFAULTS)
    # libpq waits at least 2 seconds, and counts connect_timeout in whole seconds.
    wanted["connect_timeout"] = max(2, min(wanted["connect_timeout"], math.ceil(timeout)))
    wanted["tcp_user_timeout"] = min(wanted["tcp_user_timeout"], math.ceil(timeout * 1000))
    given = set(parts)
    if os.environ.get("PGCONNECT_TIMEOUT"):
        given.add("connect_timeout")
    return {key: value for key, value in wanted.items() if key not in given}


class _Clash(Exception):
    """An insert hit ``UNIQUE(stream_id, version)``: someone appended since the check."""


class PostgresEventStore:
    """An event store in a PostgreSQL database; processes on several hosts may share it.

    ``conninfo`` is a libpq connection string or URL (``postgresql://user@host/db``).
    ``pool`` is an optional ``psycopg_pool.ConnectionPool``: without one the store keeps one
    connection of its own (one per process after a fork) and serialises its threads on it.
    ``timeout`` is the longest one call (a read of a page, an append) may wait on the server,
    in seconds: past it the store gives up on the connection and raises
    ``StoreUnavailableError``.  The store's own connections also get keepalives,
    ``tcp_user_timeout`` and ``connect_timeout`` (``CONNECTION_DEFAULTS``) unless the
    connection string sets them.  The schema is made on first use, or by ``create_schema()``.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        pool: ConnectionPool | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        if not isinstance(conninfo, str) or not conninfo.strip():
            # Not even a repr of it: bytes or a mapping may hold a password.
            plain = conninfo is None or isinstance(conninfo, str)
            what = repr(conninfo) if plain else f"a {type(conninfo).__name__}"
            raise ValidationError(f"A PostgreSQL store needs a connection string, not {what}.")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ValidationError(
                f"timeout must be a positive number of seconds, not {short(timeout)}."
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
        parts = _parsed(conninfo)
        self.conninfo = conninfo
        self.timeout = float(timeout)
        self._where = redacted(conninfo)
        self._secrets = _secrets(conninfo)
        self._pool = pool
        self._lock = threading.RLock()
        self._connection: psycopg.Connection[Any] | None = None
        # The caller's values win: psycopg's keywords would override the connection string's.
        self._connect_options = _connection_defaults(parts, self.timeout)
        self._inherited: list[psycopg.Connection[Any]] = []
        self._pid = os.getpid()
        self._closed = False
        self._schema_version = SCHEMA_VERSION
        try:
            self.create_schema()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<PostgresEventStore {self._where}>"

    # -- connections and errors ----------------------------------------------------------

    def _run(
        self,
        doing: str,
        work: Callable[[psycopg.Connection[Any]], _T],
        *,
        ids: Sequence[str] = (),
    ) -> _T:
        """``work(connection)`` on a connection for one unit of work, bounded by the store's
        timeout, with psycopg's errors made ours.  ``ids``: the stream ids an append writes,
        to name one that is too long for the index; an append's clash on ``UNIQUE(stream_id,
        version)`` is ``_Clash``, for the append to tell which stream moved on."""
        if self._closed:
            raise StorageError(f"The store on {self._where} is closed.")
        psycopg = self._psycopg
        guard = _Guard(self.timeout)
        try:
            return self._on_a_connection(work, guard)
        except psycopg.Error as exc:
            clash = ids and isinstance(exc, psycopg.errors.UniqueViolation) and not guard.fired
            failure: BaseException = _Clash() if clash else self._failure(exc, doing, guard, ids)
        except _pool_errors() as exc:
            failure = StoreUnavailableError(
                f"Cannot {doing} {self._where}: {self._reason(exc)}. The pool lent no "
                "connection in time; the same store works again once the server is back."
            )
        # Raised out here, so that psycopg's exception is not even its context.
        raise failure

    def _on_a_connection(self, work: Callable[[psycopg.Connection[Any]], _T], guard: _Guard) -> _T:
        if self._pool is not None:
            with self._pool.connection() as connection:
                try:
                    guard.arm(connection)
                    return work(connection)
                finally:
                    try:
                        if not guard.fired:
                            self._end_read(connection)
                    finally:
                        guard.disarm()
                        if guard.fired:  # cut: the pool throws a closed connection away
                            connection.close()
        with self._lock:
            connection = self._own_connection()
            try:
                guard.arm(connection)
                return work(connection)
            except self._psycopg.Error as exc:
                if guard.fired or connection.broken or _outage(exc):
                    self._drop_connection()
                raise
            finally:
                guard.disarm()
                if guard.fired:
                    self._drop_connection()

    def _end_read(self, connection: psycopg.Connection[Any]) -> None:
        """End a pooled connection's open transaction while the guard still bounds it (the
        pool would roll it back on its return, unbounded)."""
        status = connection.info.transaction_status
        if not connection.closed and status in (
            self._psycopg.pq.TransactionStatus.INTRANS,
            self._psycopg.pq.TransactionStatus.INERROR,
        ):
            with suppress(self._psycopg.Error):  # broken: the pool throws it away
                connection.rollback()

    def _failure(
        self, exc: psycopg.Error, doing: str, guard: _Guard, ids: Sequence[str]
    ) -> OppcoreError:
        """psycopg's error ``exc`` as ours: what went wrong, and what to do."""
        reason = self._reason(exc)
        state = getattr(exc, "sqlstate", None)
        if guard.fired:
            return StoreUnavailableError(
                f"{self._where} did not answer within {self.timeout:g} seconds (the store's "
                f"timeout), so the store gave up on its connection while trying to {doing} it. "
                f"The same store reconnects once the server answers again; {_IN_DOUBT}"
            )
        if state == "54000" and ids and "index row" in str(exc):
            return ValidationError(_too_long(ids))
        refused = _refusal(state, str(exc))
        if refused is not None:
            return StorageError(
                _scrubbed(
                    f"{self._where} refused the connection: {refused} Retrying will not help "
                    "until then.",
                    self._secrets,
                )
            )
        if _outage(exc):
            return StoreUnavailableError(
                f"Cannot {doing} {self._where}: {reason}. The same store reconnects once the "
                f"server is back; {_IN_DOUBT}"
            )
        return StorageError(f"Cannot {doing} {self._where}: {reason}.")

    def _reason(self, exc: BaseException) -> str:
        """The server's or the driver's reason on one line, scrubbed of the password."""
        text = _scrubbed(" ".join(str(exc).split()), self._secrets) or type(exc).__name__
        return text if len(text) <= 300 else text[:297] + "..."

    def _own_connection(self) -> psycopg.Connection[Any]:
        if self._pid != os.getpid():
            # A forked child must not use its parent's socket, nor close it: keep it
            # untouched (and unwarned about) and open one of its own.
            if self._connection is not None:
                self._inherited.append(self._connection)
            self._connection = None
            self._pid = os.getpid()
        if self._connection is None or self._connection.closed:
            unnamable = False
            try:
                self._connection = self._psycopg.connect(
                    self.conninfo,
                    autocommit=True,  # reads need no transaction; appends open their own
                    **self._connect_options,
                )
            except UnicodeError:  # psycopg's IDNA encoding of the host name failed
                unnamable = True
            if unnamable or self._connection is None:
                raise ValidationError(
                    f"The host of {self._where} is not a name DNS can look up (a label is "
                    "empty or longer than 63 characters): correct the host in the connection "
                    "string."
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
        self._run("create the schema on", self._create_schema)

    def _create_schema(self, connection: psycopg.Connection[Any]) -> None:
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            made = connection.execute(
                "SELECT to_regclass('oppcore_events') IS NOT NULL "
                "AND to_regclass('oppcore_meta') IS NOT NULL"
            ).fetchone()
            if not (made and made[0]):
                for statement in _SCHEMA:
                    connection.execute(statement)
                # A new store keeps its deal table from its first event on.
                for statement in _table.postgres_ddl():
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO oppcore_meta (key, value) VALUES (%s, '0')", (_table.MARKER,)
                )
            row = connection.execute(
                "SELECT value FROM oppcore_meta WHERE key = 'schema_version'"
            ).fetchone()
            if row is None:
                connection.execute(
                    "INSERT INTO oppcore_meta (key, value) VALUES ('schema_version', %s)",
                    (str(SCHEMA_VERSION),),
                )
            elif row[0] not in {str(version) for version in READ_VERSIONS}:
                raise CorruptStoreError(
                    f"{self._where} has oppcore schema version {row[0]!r}; this oppcore reads "
                    f"versions {', '.join(map(str, sorted(READ_VERSIONS)))}. Upgrade oppcore "
                    "to read it."
                )
            self._schema_version = SCHEMA_VERSION if row is None else int(row[0])

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
        """Append each ``(stream_id, records, expected_version)`` batch in one transaction:
        all or nothing.  With ``deal_rows`` (see ``SqliteEventStore.append_many``) the deal
        table is kept in the same transaction, when it is caught up to the events before."""
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
        # Half the timeout, so that the server's own cancellation comes first (see above).
        lock_wait = min(STATEMENT_TIMEOUT_SECONDS * 1000, max(1, int(self.timeout * 500)))

        def work(connection: psycopg.Connection[Any]) -> None:
            # The versions are checked before the lock: a stream's versions only ever grow,
            # so one that is not the expected version now never will be, and one that moves
            # on after this check makes the insert collide with UNIQUE (stream_id, version)
            # below.  The lock is held for the insert and the commit only.
            actual = self._versions(connection, streams)
            for stream_id in streams:
                if actual[stream_id] != expected[stream_id]:
                    raise conflict(stream_id, expected[stream_id], actual[stream_id])
            if not rows:
                return
            if not connection.autocommit:  # a pooled connection: end the read first
                connection.rollback()
            with connection.transaction():
                # Positions in commit order: see the module's documentation.
                connection.execute(
                    "SELECT set_config('statement_timeout', %s, true), "
                    "pg_advisory_xact_lock('oppcore_events'::regclass::oid::bigint)",
                    (str(lock_wait),),
                )
                keep = _table.covers(streams, deal_rows) and _caught_up(connection)
                self._insert(connection, rows)
                if keep:
                    assert deal_rows is not None
                    _keep_table(connection, deal_rows)

        try:
            self._run("append to", work, ids=streams)
        except _Clash:  # someone appended since the check
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
        row = self._run(
            "read",
            lambda connection: connection.execute(
                "SELECT MAX(version) FROM oppcore_events WHERE stream_id = %s", (stream_id,)
            ).fetchone(),
        )
        return int(row[0] or 0) if row else 0

    def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[EventRecord]:
        check_read_args(after_version, None, "after_version")
        if not isinstance(stream_id, str):
            raise ValidationError(f"Stream id must be text, not {short(stream_id)}.")
        if "\x00" in stream_id:
            return []  # PostgreSQL text cannot hold NUL: no such stream can exist
        rows = self._run(
            "read",
            lambda connection: connection.execute(
                f"{_SELECT} WHERE stream_id = %s AND version > %s ORDER BY version",
                (stream_id, after_version),
            ).fetchall(),
        )
        return [self._record(row) for row in rows]

    def stream_ids(self) -> Iterator[str]:
        rows = self._run(
            "read",
            lambda connection: connection.execute(
                "SELECT stream_id FROM oppcore_events WHERE version = 1 ORDER BY position"
            ).fetchall(),
        )
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
        return self._run(
            "read",
            lambda connection: connection.execute(
                f"{_SELECT} WHERE position > %s ORDER BY position LIMIT %s", (after, count)
            ).fetchall(),
        )

    def _record(self, row: tuple[Any, ...]) -> EventRecord:
        try:
            payload = json.loads(row[5])
        except ValueError:
            raise CorruptStoreError(
                f"{self._where}: the payload at position {row[6]} is not JSON."
            ) from None
        return EventRecord(row[0], row[1], row[2], row[3], row[4], payload, row[6])

    @property
    def pipelines_by_reference(self) -> bool:
        """Whether deals opened here store their pipeline once, by reference (schema 2)."""
        return self._schema_version >= 2

    # -- the deal table ------------------------------------------------------------------

    def deal_table_position(self) -> int | None:
        """The last event position the deal table reflects; None while it is not built."""
        return self._run("read", _marker)

    def last_position(self) -> int:
        """The position of the last event stored (0 for an empty store)."""
        return self._run("read", _last_position)

    def deal_table_lag(self) -> tuple[int | None, int]:
        """The table's position and the last event's, read in one unit of work."""
        return self._run(
            "read", lambda connection: (_marker(connection), _last_position(connection))
        )

    def replace_deals(
        self,
        streams: Mapping[str, Sequence[DealVersion]],
        *,
        since: int | None,
        until: int,
        rebuild: bool = False,
    ) -> bool:
        """As ``SqliteEventStore.replace_deals``: one transaction, under the append lock."""

        def work(connection: psycopg.Connection[Any]) -> bool:
            if not connection.autocommit:
                connection.rollback()
            with connection.transaction():
                connection.execute(
                    "SELECT pg_advisory_xact_lock('oppcore_events'::regclass::oid::bigint)"
                )
                marker = _marker(connection)
                if rebuild:
                    if _last_position(connection) != until:
                        return False
                elif marker != since:
                    return False
                for statement in _table.postgres_ddl():
                    connection.execute(statement)
                if rebuild:
                    connection.execute(f"DELETE FROM {_table.TABLE}")
                else:
                    connection.execute(
                        f"DELETE FROM {_table.TABLE} WHERE opportunity_id = ANY(%s)",
                        (list(streams),),
                    )
                _insert_deals(connection, [row for rows in streams.values() for row in rows])
                _set_marker(connection, until)
                return True

        return self._run("write the deal table of", work)

    def find_deals(self, query: _table.Query) -> list[DealVersion]:
        """The current rows ``query`` matches, in its order, from the table."""
        where, params = _table.sql_where(query, "%s", text_dates=False)
        sql = (
            f"SELECT {', '.join(COLUMNS)} FROM {_table.TABLE} WHERE {where} "
            f"ORDER BY {_table.postgres_order(query)}"
        )
        if query.limit is not None:
            sql += " LIMIT %s"
            params.append(query.limit)
        if query.offset:
            sql += " OFFSET %s"
            params.append(query.offset)
        found = self._run("read", lambda connection: connection.execute(sql, params).fetchall())
        return [_table.decode_typed(row) for row in found]

    def count_deals(self, query: _table.Query) -> int:
        where, params = _table.sql_where(query, "%s", text_dates=False)
        row = self._run(
            "read",
            lambda connection: connection.execute(
                f"SELECT COUNT(*) FROM {_table.TABLE} WHERE {where}", params
            ).fetchone(),
        )
        return int(row[0]) if row else 0

    def deal_versions(self) -> Iterator[DealVersion]:
        """Every row of the deal table, by deal, version and recorded time."""
        select = (
            f"SELECT {', '.join(COLUMNS)} FROM {_table.TABLE} "
            'WHERE (opportunity_id COLLATE "C", version, recorded_from) > (%s, %s, %s) '
            'ORDER BY opportunity_id COLLATE "C", version, recorded_from LIMIT %s'
        )
        last: tuple[Any, ...] = ("", -1, _EARLIEST)
        while True:
            page = self._run("read", functools.partial(_page_of_deals, select, last))
            if not page:
                return
            for row in page:
                yield _table.decode_typed(row)
            final = page[-1]
            last = (final[0], final[1], final[4])

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


def _outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the server is away or busy for now, so that retrying later can
    help: a lost or failed connection (no SQLSTATE), or one of ``_OUTAGE_CLASSES``."""
    import psycopg

    if isinstance(exc, psycopg.InterfaceError):  # the connection was closed under the call
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state[:2] in _OUTAGE_CLASSES


def _refusal(state: str | None, text: str) -> str | None:
    """What the server refused and what to fix, when it refused the connection (retrying
    cannot help then), or None."""
    if state is not None and state[:2] not in _REFUSAL_CLASSES:
        return None
    for pattern, template in _REFUSALS:
        found = pattern.search(text)
        if found:
            return template.format(name=found.group(1))
    if state is not None:
        return "check the user name, the password and the database name."
    return None


def _too_long(ids: Sequence[str]) -> str:
    longest = max(ids, key=_utf8_size)
    return (
        f"Stream id {short(longest)} ({_utf8_size(longest):,} bytes) is too long for "
        f"PostgreSQL's index on stream ids, which takes at most {_INDEX_ENTRY_BYTES:,} bytes "
        "(fewer for ids that do not compress): use a shorter id. Nothing was written."
    )


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "replace"))


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


def _marker(connection: psycopg.Connection[Any]) -> int | None:
    if not _has_deal_table(connection):
        return None
    row = connection.execute(
        "SELECT value FROM oppcore_meta WHERE key = %s", (_table.MARKER,)
    ).fetchone()
    if row is None:
        return None
    value = row[0]
    if not (isinstance(value, str) and value.isdigit() and value.isascii()):
        raise CorruptStoreError(
            f"oppcore_meta holds {_table.MARKER} {short(value)}, which is not a position."
        )
    return int(value)


def _has_deal_table(connection: psycopg.Connection[Any]) -> bool:
    row = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (_table.TABLE,)).fetchone()
    return bool(row and row[0])


def _last_position(connection: psycopg.Connection[Any]) -> int:
    row = connection.execute("SELECT MAX(position) FROM oppcore_events").fetchone()
    return int(row[0] or 0) if row else 0


def _set_marker(connection: psycopg.Connection[Any], position: int) -> None:
    connection.execute(
        "INSERT INTO oppcore_meta (key, value) VALUES (%s, %s) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (_table.MARKER, str(position)),
    )


def _caught_up(connection: psycopg.Connection[Any]) -> bool:
    """Under the append lock: whether the deal table reflects every event stored (one query;
    a store whose table is not built has no position in oppcore_meta)."""
    row = connection.execute(
        "SELECT (SELECT value FROM oppcore_meta WHERE key = %s), "
        "(SELECT MAX(position) FROM oppcore_events)",
        (_table.MARKER,),
    ).fetchone()
    return row is not None and row[0] is not None and row[0] == str(row[1] or 0)


# The deal table's columns as PostgreSQL arrays, for one INSERT ... SELECT FROM unnest(...).
_ARRAY_TYPES = {
    name: "timestamptz[]"
    if name in _table.DATETIMES
    else "numeric[]"
    if name in _table.DECIMALS
    else "int[]"
    if name == "version"
    else "date[]"
    if name == "expected_close"
    else "text[]"
    for name in COLUMNS
}


def _keep_table(connection: psycopg.Connection[Any], deal_rows: _table.DealRows) -> None:
    """In the append's transaction, after its events: replace the rows of each deal from
    the first version that changed, and move the table's position to the last event (two
    statements however many deals the append writes)."""
    revised = [(stream_id, since) for stream_id, (since, _) in deal_rows.items() if since]
    if revised:  # a new deal has no rows yet
        connection.execute(
            f"DELETE FROM {_table.TABLE} AS t USING unnest(%s::text[], %s::int[]) AS d(id, v) "
            "WHERE t.opportunity_id = d.id AND t.version >= d.v",
            ([stream_id for stream_id, _ in revised], [since for _, since in revised]),
        )
    found = [row for _, rows in deal_rows.values() for row in rows]
    arrays = [[getattr(row, name) for row in found] for name in COLUMNS]
    unnest = ", ".join(f"%s::{_ARRAY_TYPES[name]}" for name in COLUMNS)
    connection.execute(
        f"WITH added AS (INSERT INTO {_table.TABLE} ({', '.join(COLUMNS)}) "
        f"SELECT * FROM unnest({unnest})) "
        "UPDATE oppcore_meta SET value = (SELECT MAX(position) FROM oppcore_events)::text "
        "WHERE key = %s",
        [*arrays, _table.MARKER],
    )


def _insert_deals(connection: psycopg.Connection[Any], rows: Sequence[DealVersion]) -> None:
    """The rows into the deal table: COPY, typed by the table's columns."""
    if not rows:
        return
    with (
        connection.cursor() as cursor,
        cursor.copy(f"COPY {_table.TABLE} ({', '.join(COLUMNS)}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row([getattr(row, name) for name in COLUMNS])


def _page_of_deals(
    select: str, after: tuple[Any, ...], connection: psycopg.Connection[Any]
) -> list[tuple[Any, ...]]:
    return connection.execute(select, (*after, PAGE)).fetchall()

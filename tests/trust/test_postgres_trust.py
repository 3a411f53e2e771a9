"""The PostgreSQL store keeps passwords to itself and never hangs (issue 11: cases 13 and 15).

* 13: no message, log line or repr holds the password, whatever it holds (``/``, ``@``, ``:``,
  ``?``, ``#``, ``%``, spaces, other scripts), in a URL or a key=value string, from the
  store, ``open_repository`` or ``oppcore verify --store`` (run as a subprocess).
* 15: an unknown database or role, or a role that may not log in, is a ``StorageError`` that
  says what to fix, not an outage; an id too long for the index is a ``ValidationError``
  naming it.  A server that stops answering while the TCP connection stays up (its backend
  SIGSTOPped) makes every call fail with ``StoreUnavailableError`` within the store's
  ``timeout``, and the store works again once it answers; keepalives and
  ``tcp_user_timeout`` are set on the store's connections unless the caller sets them.

The server comes from ``postgres_support`` (skipped without one, a failure in CI); the tests
that need it get a new, empty schema each.  The ones without a server use a closed port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oppcore import (
    FixedClock,
    OppcoreError,
    Opportunity,
    Repository,
    StorageError,
    StoreUnavailableError,
    ValidationError,
    open_repository,
)
from oppcore.storage import EventRecord, PostgresEventStore
from tests.storage import postgres_support
from tests.storage.test_postgres_failures import FAST, _closed_port, _named
from tests.test_cli import assert_one_line_error, oppcore

STAMP = "2026-01-05T09:00:00+00:00"
CLOCK = FixedClock(datetime(2026, 1, 5, 9, tzinfo=timezone.utc))
# Every word of a generated password holds this letter, which no message has of its own: a
# piece of a password in any output shows up as it (or as its percent-encoding).
MARK = "Ж"
SEPARATORS = ("/", "@", ":", "?", "#", "%", " ", "&", "=", "'", "\\", "é", "ก", "€")
#: The store's timeout in the tests of a frozen server (seconds), and the bound they allow.
SHORT = 1.0
BOUND = 10.0


@pytest.fixture(scope="module")
def server() -> str:
    return postgres_support.server()


@pytest.fixture
def conninfo(server: str) -> Iterator[str]:
    with postgres_support.fresh_schema(server) as info:
        yield info


def _noted(stream: str, version: int) -> EventRecord:
    return EventRecord(stream, version, "Noted", STAMP, STAMP, {})


# -- 13: passwords --------------------------------------------------------------------------

words = st.text(
    st.characters(categories=("L", "Nd"), exclude_characters=MARK), min_size=2, max_size=6
).map(lambda text: MARK + text)
passwords = st.builds(
    lambda first, rest, edge: edge[0] + first + "".join(s + w for s, w in rest) + edge[1],
    words,
    st.lists(st.tuples(st.sampled_from(SEPARATORS), words), min_size=1, max_size=3),
    st.tuples(st.sampled_from(("", *SEPARATORS)), st.sampled_from(("", *SEPARATORS))),
)


def _pieces(password: str) -> list[str]:
    """The password, its words, and each of them as a URL carries it."""
    pieces = [password, MARK, *(MARK + word for word in password.split(MARK)[1:])]
    return [form for piece in pieces for form in {piece, quote(piece, safe="")}]


def _forms(password: str, host: str, port: int | str, dbname: str) -> dict[str, str]:
    """One password in every way a user may write it: right, and wrong."""
    from psycopg.conninfo import make_conninfo

    encoded = quote(password, safe="")
    escaped = password.replace("\\", "\\\\").replace("'", "\\'")
    return {
        "url, raw": f"postgresql://crm_app:{password}@{host}:{port}/{dbname}",
        "url, encoded": f"postgresql://crm_app:{encoded}@{host}:{port}/{dbname}",
        "url, in the query": f"postgresql://crm_app@{host}:{port}/{dbname}?password={encoded}",
        "key=value": make_conninfo(
            host=host, port=str(port), user="crm_app", password=password, dbname=dbname
        ),
        "key=value, raw": f"host={host} port={port} user=crm_app password={password} dbname={dbname}",
        "key=value, quoted": f"host={host} port={port} password='{escaped}' dbname={dbname}",
    }


def _exposed(error: BaseException) -> str:
    """Everything an error shows: its text, its repr, its traceback, and every exception it
    carries as its cause or context, shown or not."""
    shown = ["".join(traceback.format_exception(error))]
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        shown += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return "\n".join(shown)


def _assert_hidden(password: str, shown: str, where: str) -> None:
    for piece in _pieces(password):
        assert piece not in shown, f"{where} shows {piece!r} of the password {password!r}:\n{shown}"


class _Lines(logging.Handler):
    """Every log line psycopg writes, at every level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def _psycopg_log() -> Iterator[_Lines]:
    logger = logging.getLogger("psycopg")
    lines, level = _Lines(), logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)


def _failed_open(conninfo: str) -> OppcoreError:
    with pytest.raises(OppcoreError) as caught:
        PostgresEventStore(conninfo)
    return caught.value


def test_the_issues_password_with_a_slash_is_never_shown() -> None:
    """The issue's URL (password ``Hunter2/Secret``, which libpq reads as port 'Hunter2' and
    database 'Secret@...') and a key=value string: refused or failed, never shown."""
    password = "Hunter2/Secret"
    port = _closed_port()
    for conninfo in (
        f"postgresql://crm_app:{password}@127.0.0.1:{port}/sales",
        f"postgresql://crm_app:Hunter2@Secret@127.0.0.1:{port}/sales",
        f"host=127.0.0.1 port={port} user=crm_app password={password} dbname=sales",
    ):
        with _psycopg_log() as log:
            error = _failed_open(conninfo)
        for secret in ("Hunter2", "Secret"):
            assert secret not in _exposed(error), _exposed(error)
            assert not [line for line in log.lines if secret in line], log.lines
    with pytest.raises(ValidationError, match="percent-encode") as caught:
        open_repository(f"postgresql://crm_app:{password}@127.0.0.1:{port}/sales")
    assert "Hunter2" not in _exposed(caught.value)


@settings(max_examples=60)
@given(password=passwords)
def test_no_failing_open_shows_any_part_of_the_password(password: str) -> None:
    """Any password, in any form, on a closed port: the open fails with an ``OppcoreError``
    (a misread URL is refused before libpq connects) whose text, repr, traceback and chain,
    and every line psycopg logs, hold no piece of the password."""
    port = _closed_port()
    for form, conninfo in _forms(password, "127.0.0.1", port, "sales").items():
        with _psycopg_log() as log:
            error = _failed_open(conninfo)
            if form.startswith("url"):
                with pytest.raises(OppcoreError) as caught:
                    open_repository(conninfo)
                _assert_hidden(password, _exposed(caught.value), f"open_repository ({form})")
        _assert_hidden(password, _exposed(error), form)
        _assert_hidden(password, "\n".join(log.lines), f"psycopg's log ({form})")


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=passwords)
def test_a_server_that_refuses_the_login_never_sees_its_password_repeated(
    server: str, password: str
) -> None:
    """The real server, asked for a role and a database that do not exist, with any password:
    libpq's own text reaches the message (a ``StorageError`` saying what to fix), and holds no
    piece of the password."""
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(server)
    host, port = str(parts.get("host") or "localhost"), str(parts.get("port") or "5432")
    for form, conninfo in _forms(password, host, port, "oppcore_no_such_db").items():
        error = _failed_open(conninfo)
        _assert_hidden(password, _exposed(error), form)
        if form in ("url, encoded", "key=value"):  # read as written: the server answered
            assert isinstance(error, StorageError), (form, error)
            assert not isinstance(error, StoreUnavailableError), (form, error)
            assert "refused the connection: there is no role 'crm_app'" in str(error)


def test_the_store_and_the_repository_name_the_server_but_never_the_password(
    conninfo: str,
) -> None:
    """A store opened with a password (the test server trusts, so it is ignored) shows it in
    neither its repr, its repository's, nor the errors of a working store."""
    password = f"{MARK}s3/cr@t:{MARK}"
    url = postgres_support.as_url(conninfo).replace(
        "://oppcore@", f"://oppcore:{quote(password, safe='')}@"
    )
    with open_repository(url) as repo:
        store = repo.store
        assert isinstance(store, PostgresEventStore)
        shown = [repr(store), repr(repo), str(store)]
        with pytest.raises(ValidationError) as caught:
            store.append("x" * 10, [_noted("y", 1)], expected_version=0)
        shown.append(_exposed(caught.value))
    with pytest.raises(StorageError) as closed:
        store.read_stream("x")
    shown.append(_exposed(closed.value))
    assert "PostgreSQL 127.0.0.1:" in repr(store) or "PostgreSQL " in repr(store)
    _assert_hidden(password, "\n".join(shown), "the store")


def test_open_repository_never_echoes_a_password_of_a_target_it_does_not_know() -> None:
    """A key=value connection string is not a target ``open_repository`` takes: the refusal
    names the forms it takes and shows the string with its password masked."""
    for target in (
        "host=db.internal user=crm_app password=Hunter2/Secret dbname=sales",
        "host=db.internal password='Hunter2 Secret' dbname=sales",
    ):
        with pytest.raises(ValidationError, match="postgresql://") as caught:
            open_repository(target)
        assert "Hunter2" not in _exposed(caught.value), str(caught.value)
        assert "db.internal" in str(caught.value)


@settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=passwords, form=st.sampled_from(("url, raw", "url, encoded", "key=value")))
def test_oppcore_verify_never_prints_the_password(tmp_path: Path, password: str, form: str) -> None:
    """``oppcore verify --store CONNINFO`` on a closed port, run as a user runs it: one line
    on stderr, exit 1, and no piece of the password anywhere in what it prints."""
    conninfo = _forms(password, "127.0.0.1", _closed_port(), "sales")[form]
    result = oppcore("verify", "--store", conninfo, cwd=tmp_path)
    assert_one_line_error(result)
    _assert_hidden(password, result.stdout + result.stderr, f"oppcore verify ({form})")


# -- 15: refusals are not outages -----------------------------------------------------------


def test_an_unknown_database_is_a_storage_error_that_says_to_create_it_or_fix_the_name(
    server: str,
) -> None:
    """Not ``StoreUnavailableError`` ("reconnects once the server is back"): waiting cannot
    create a database."""
    from psycopg.conninfo import make_conninfo

    name = f"oppcore_no_such_db_{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    error = _failed_open(make_conninfo(server, dbname=name))
    assert time.monotonic() - started < FAST
    assert type(error) is StorageError, repr(error)
    assert f"there is no database {name!r}" in str(error)
    assert "Create it, or correct the database name" in str(error)
    assert "reconnects" not in str(error)


def test_an_unknown_role_is_a_storage_error_that_says_to_create_it_or_fix_the_name(
    server: str,
) -> None:
    from psycopg.conninfo import make_conninfo

    name = f"oppcore_no_such_role_{uuid.uuid4().hex[:8]}"
    with pytest.raises(StorageError) as caught:
        open_repository(postgres_support.as_url(make_conninfo(server, user=name)))
    assert type(caught.value) is StorageError, repr(caught.value)
    assert f"there is no role {name!r}" in str(caught.value)
    assert "correct the user name" in str(caught.value)


def test_a_role_that_may_not_log_in_is_a_storage_error_that_says_to_give_it_login(
    server: str,
) -> None:
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"oppcore_nologin_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as control:
        try:
            control.execute(f"CREATE ROLE {name} NOLOGIN")
        except psycopg.Error as exc:
            pytest.skip(f"the test role cannot create roles: {exc}")
        try:
            error = _failed_open(make_conninfo(server, user=name))
        finally:
            control.execute(f"DROP ROLE {name}")
    assert type(error) is StorageError, repr(error)
    assert f"role {name!r} may not log in" in str(error)
    assert "LOGIN" in str(error)


@pytest.mark.parametrize(
    "conninfo_value",
    ["host=a..b port=1 dbname=sales", f"postgresql://crm_app@{'é' * 80}:1/sales"],
    ids=["empty-label", "label-over-63"],
)
def test_a_host_no_name_server_can_look_up_is_refused_in_our_words(conninfo_value: str) -> None:
    """psycopg's own encoding of the host name fails (``UnicodeError``, not a psycopg error):
    a ``ValidationError`` that says to correct the host."""
    with pytest.raises(ValidationError, match="correct the host"):
        PostgresEventStore(conninfo_value)


def _unindexable(rng: random.Random, length: int) -> str:
    """An id of ``length`` random CJK characters: about 3 bytes each, which do not compress."""
    return "".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(length))


def test_an_id_too_long_for_the_index_is_a_validation_error_naming_it(conninfo: str) -> None:
    """Saving a deal whose id does not fit PostgreSQL's index is refused by name, as a
    ``ValidationError`` ("too long"), not as an outage; nothing is written, in a batch with
    other streams neither, and the store carries on."""
    rng = random.Random(15)
    long_id = _unindexable(rng, 1_500)
    with PostgresEventStore(conninfo) as store:
        repo = Repository(store)
        with pytest.raises(ValidationError) as caught:
            repo.save(Opportunity.open(name="Deal", id=long_id, clock=CLOCK))
        assert long_id[:20] in str(caught.value)
        assert "too long" in str(caught.value)
        assert "bytes" in str(caught.value)
        with pytest.raises(ValidationError, match="too long") as batch:
            store.append_many(
                [("fine", [_noted("fine", 1)], 0), (long_id, [_noted(long_id, 1)], 0)]
            )
        assert long_id[:20] in str(batch.value)
        assert list(store.read_all()) == []
        assert repo.save(Opportunity.open(name="Deal", id="short", clock=CLOCK)).version == 1


# -- 15: a server that stops answering ------------------------------------------------------


def _local(server: str) -> None:
    """Skip unless the server's processes run on this machine, where signals reach them."""
    from psycopg.conninfo import conninfo_to_dict

    host = str(conninfo_to_dict(server).get("host") or "localhost")
    if host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("/"):
        pytest.skip(f"the server {host!r} is not on this machine: cannot stop its backends")


def _backend(server: str, application_name: str) -> tuple[int, int]:
    """The pid and client port of the one session named ``application_name``."""
    import psycopg

    with psycopg.connect(server, autocommit=True) as control:
        rows = control.execute(
            "SELECT pid, client_port FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchall()
    assert len(rows) == 1, f"expected one session named {application_name!r}, got {rows}"
    return int(rows[0][0]), int(rows[0][1] or 0)


@contextlib.contextmanager
def _frozen(pid: int) -> Iterator[None]:
    """The backend ``pid`` stopped (SIGSTOP): its socket stays up, its kernel acknowledges
    every packet, and it answers nothing; always continued afterwards."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except PermissionError:
        pytest.skip("this user may not signal the server's processes")
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _within(call: Callable[[], object], seconds: float) -> tuple[BaseException | None, float]:
    """Run ``call`` in a thread; what it raised and how long it took.  A call still running
    after ``seconds`` fails the test (rather than hanging it: the caller continues the
    server, so the thread ends)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    took = time.monotonic() - started
    assert not thread.is_alive(), f"the call still waits on the frozen server after {took:.1f} s"
    return outcome[0], took


def _calls(store: PostgresEventStore) -> dict[str, Callable[[], object]]:
    repo = Repository(store)
    return {
        "stream_version": lambda: store.stream_version("before"),
        "read_stream": lambda: store.read_stream("before"),
        "read_all": lambda: list(store.read_all()),
        "append": lambda: store.append("while", [_noted("while", 1)], expected_version=0),
        "Repository.get": lambda: repo.get("before"),
    }


def test_a_frozen_server_fails_every_call_within_the_timeout_and_the_store_works_again(
    server: str, conninfo: str
) -> None:
    """The store's backend SIGSTOPped under an open connection (what a frozen server or a
    hung VM looks like: keepalives and TCP acknowledgements still come back): each call
    raises ``StoreUnavailableError`` saying the server did not answer within the store's
    timeout, not after it; nothing is written; the same store works once it answers."""
    _local(server)
    name = f"oppcore-frozen-{uuid.uuid4().hex[:8]}"
    with PostgresEventStore(_named(conninfo, name), timeout=SHORT) as store:
        store.append("before", [_noted("before", 1)], expected_version=0)
        for what, call in _calls(store).items():
            store.stream_version("before")  # connected (again): a backend to freeze
            pid, _ = _backend(server, name)
            with _frozen(pid):
                error, took = _within(call, BOUND)
            assert isinstance(error, StoreUnavailableError), f"{what}: {error!r}"
            assert "did not answer within 1 seconds" in str(error), f"{what}: {error}"
            assert took >= SHORT * 0.9, f"{what} gave up after {took:.2f} s, before its timeout"
        assert store.read_stream("while") == []
        assert store.append("after", [_noted("after", 1)], expected_version=0) == 1
        assert [r.stream_id for r in store.read_all()] == ["before", "after"]


def test_a_frozen_server_behind_a_pool_fails_the_call_and_the_pool_recovers(
    server: str, conninfo: str
) -> None:
    """The same through a caller's ``ConnectionPool`` of one connection: the call is cut
    within the timeout, the pool throws the cut connection away and lends a new one."""
    from psycopg_pool import ConnectionPool

    _local(server)
    name = f"oppcore-frozen-pool-{uuid.uuid4().hex[:8]}"
    info = _named(conninfo, name)
    with ConnectionPool(info, min_size=1, max_size=1, open=True, timeout=10) as pool:
        store = PostgresEventStore(info, pool=pool, timeout=SHORT)
        store.append("before", [_noted("before", 1)], expected_version=0)
        pid, _ = _backend(server, name)
        with _frozen(pid):
            error, _ = _within(lambda: store.read_stream("before"), BOUND)
        assert isinstance(error, StoreUnavailableError), repr(error)
        assert [r.version for r in store.read_stream("before")] == [1]
        store.close()


def test_a_server_that_accepts_but_never_answers_is_given_up_on_within_the_timeout() -> None:
    """A listener that never speaks (the connection is made, the server is hung): without a
    ``connect_timeout`` of the caller's, the store's own one, shrunk to its ``timeout``
    (libpq's least is 2 s), ends the wait."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            PostgresEventStore(f"postgresql://u@127.0.0.1:{port}/db", timeout=SHORT)
        took = time.monotonic() - started
    assert took < FAST, f"a hung server held the open for {took:.1f} s"


def _socket_options(client_port: int) -> dict[str, int]:
    """The keepalive and user-timeout options of this process's socket on ``client_port``,
    as the system reports them."""
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            with socket.socket(fileno=os.dup(int(fd))) as sock:
                if sock.family != socket.AF_INET or sock.getsockname()[1] != client_port:
                    continue
                return {
                    "keepalives": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                    "keepalives_idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                    "keepalives_interval": sock.getsockopt(
                        socket.IPPROTO_TCP, socket.TCP_KEEPINTVL
                    ),
                    "keepalives_count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                    "tcp_user_timeout": sock.getsockopt(
                        socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT
                    ),
                }
    raise AssertionError(f"no socket of this process has the port {client_port}")


@pytest.mark.parametrize(
    ("extra", "timeout", "expected"),
    [
        ({}, None, {"keepalives_idle": 30, "tcp_user_timeout": 30_000}),
        ({}, 5.0, {"keepalives_idle": 30, "tcp_user_timeout": 5_000}),
        (
            {"keepalives_idle": "7", "tcp_user_timeout": "1234"},
            None,
            {"keepalives_idle": 7, "tcp_user_timeout": 1234},
        ),
    ],
    ids=["defaults", "shrunk-to-the-timeout", "the-callers-values-win"],
)
def test_the_stores_connections_have_keepalives_and_a_user_timeout_unless_the_caller_says(
    server: str,
    conninfo: str,
    extra: dict[str, str],
    timeout: float | None,
    expected: dict[str, int],
) -> None:
    """Read back from the socket itself: keepalives on (30 s idle, 10 s apart, 3 probes) and
    ``tcp_user_timeout`` 30 s (or the store's timeout when shorter), unless the connection
    string gives its own values, which win."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    if str(conninfo_to_dict(server).get("host") or "").startswith("/"):
        pytest.skip("a Unix socket has no TCP options")
    name = f"oppcore-options-{uuid.uuid4().hex[:8]}"
    options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    with PostgresEventStore(make_conninfo(_named(conninfo, name), **extra), **options):
        _, client_port = _backend(server, name)
        found = _socket_options(client_port)
    assert found == {
        "keepalives": 1,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        **expected,
    }


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), True, "5", None])
def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_refused(timeout: object) -> None:
    with pytest.raises(ValidationError, match="timeout must be a positive number of seconds"):
        PostgresEventStore("postgresql://u@127.0.0.1:1/db", timeout=timeout)  # type: ignore[arg-type]

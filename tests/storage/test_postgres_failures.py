"""The PostgreSQL store when things go wrong, against a real server (nothing is mocked).

* Eight processes save the same twenty opportunities at once, retrying on conflict, while a
  ninth tails ``read_all``: every save lands once, every conflict is a ``ConcurrencyError``,
  and the tail sees every event exactly once, in order.
* A client SIGKILLed in the middle of big ``append_many`` batches leaves each batch whole or
  absent, and the store keeps working.
* A crash-like server restart keeps every acknowledged append; a stopped server makes calls
  fail fast with ``StoreUnavailableError``, and the same store works again when it is back.
* A connection cut after the server committed (a proxy swallows the answer) leaves the
  append whole, and saving again through the Repository writes nothing twice.
* A caller's ``psycopg_pool.ConnectionPool`` carries concurrent threads and outlives the store.
* Bad input (NUL characters, bad connection strings, a closed port) is refused in our words,
  writes nothing and never shows a password.
* Processes creating the schema at the same moment all succeed.
* An append that commits late is never skipped by a reader that remembered a position.

The server comes from ``postgres_support.server()`` (skipped without one, a failure in CI);
each test gets a new, empty schema.  The tests that stop or restart the server need
``OPPCORE_TEST_POSTGRES_CTL`` and always start it again.  The checks (and the crash test's
pipe protocol) are those of ``test_concurrency`` and ``test_crash``, imported.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from oppcore import (
    ConcurrencyError,
    CorruptStoreError,
    FixedClock,
    NotFoundError,
    OppcoreError,
    Opportunity,
    OpportunityNotFound,
    Repository,
    StorageError,
    StoreUnavailableError,
    ValidationError,
    open_repository,
)
from oppcore.storage import EventRecord, PostgresEventStore
from tests.storage import postgres_support
from tests.storage.test_concurrency import (
    BASE,
    _check_markers,
    _check_streams,
    _check_tallies,
    _check_writers_collided,
    _in_processes,
    _marker,
    _marker_order,
    _read_tallies,
    _run_threads,
    _save_one,
    _shared_clock,
    _Tally,
    _write_tally,
)
from tests.storage.test_crash import (
    Plan,
    _check,
    _drain,
    _Ledger,
    _Report,
    _seed,
    _send,
    _wait_for_ready,
)

if TYPE_CHECKING:
    import psycopg

pytestmark = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)

STAMP = "2026-01-05T09:00:00+00:00"
TIMEOUT = 120.0
#: How long a call on a stopped or unreachable server may take before it counts as a hang.
FAST = 5.0

# Eight writers, a reader, twenty shared opportunities.
WRITERS = 8
WRITER_SAVES = 250
SAVE_ATTEMPTS = 500  # a save that conflicts this often in a row is a livelock, not bad luck
OPPORTUNITIES = (*(f"opp-{n}" for n in range(1, 20)), "ดีล-20")
TAIL_PAGE = 50
TAIL_PAUSE = 0.002

# Killed clients.
KILLS = 60
EARLY_KILL_SHARE = 0.1  # kills that may land while the child is still connecting
MAX_KILL_DELAY = 0.02  # seconds after the child is ready; a big batch takes a few ms
BIG_STREAMS = (*(f"big-{n:02}" for n in range(1, 24)), "ดีล-24")
CHILD_LIFETIME = 20.0

# The restart.
RESTART_STREAMS = ("r-1", "r-2", "r-3", "r-4", "ดีล-5")
ACKS_AROUND_RESTART = 40

# Schemas made at once.
SCHEMA_ROUNDS = 8
SCHEMA_OPENERS = 8

POOL_SAVES = 100  # per thread; test_concurrency's _run_threads runs 8


@pytest.fixture(scope="module")
def server() -> str:
    return postgres_support.server()


@pytest.fixture
def conninfo(server: str) -> Iterator[str]:
    with postgres_support.fresh_schema(server) as info:
        yield info


def _noted(stream: str, version: int, payload: dict[str, Any] | None = None) -> EventRecord:
    return EventRecord(stream, version, "Noted", STAMP, STAMP, payload or {})


def _rows(store: PostgresEventStore) -> list[tuple[int, str, int]]:
    return [(r.position or 0, r.stream_id, r.version) for r in store.read_all()]


def _named(conninfo: str, application_name: str) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(conninfo, application_name=application_name)


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting until {what}")
        time.sleep(0.005)


def _no_backend_named(server: str, application_name: str) -> Callable[[], bool]:
    """Whether the server has no session left for ``application_name``."""
    import psycopg

    def check() -> bool:
        with psycopg.connect(server, autocommit=True) as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (application_name,),
            ).fetchone()
        return row is not None and row[0] == 0

    return check


def _server_running() -> bool:
    try:
        postgres_support.pg_ctl("status")
    except subprocess.CalledProcessError:
        return False
    return True


def _start_server_again() -> None:
    """Start the cluster if it is down, so the tests after this one have it."""
    if not _server_running():
        postgres_support.pg_ctl("start")


# -- 8 processes x 250 saves, and a reader tailing them --------------------------------------


def _save_until_it_lands(
    repo: Repository, opp_id: str, marker: str, clock: Callable[[], FixedClock], tally: _Tally
) -> None:
    """Load (or open) ``opp_id``, set its description to ``marker``, save; on a conflict
    reload and apply the change again, as the Repository's documentation says to."""
    for _ in range(SAVE_ATTEMPTS):
        if _save_one(repo, opp_id, marker, clock, tally):
            return
    tally.errors.append(f"{marker} on {opp_id!r} conflicted {SAVE_ATTEMPTS} times in a row")


def _tail(store: PostgresEventStore, writing: Callable[[], bool]) -> dict[str, Any]:
    """Poll ``read_all(after_position=last)`` until the writers are done, then once more."""
    seen: list[tuple[int, str, int]] = []
    polls = fruitful = 0
    last = 0
    while True:
        finished = not writing()  # read before the poll: the last poll follows every commit
        while True:
            page = [
                (r.position or 0, r.stream_id, r.version)
                for r in store.read_all(after_position=last, limit=TAIL_PAGE)
            ]
            polls += 1
            if page:
                fruitful += 1
                seen += page
                last = page[-1][0]
            if len(page) < TAIL_PAGE:
                break
        if finished:
            return {"seen": seen, "polls": polls, "fruitful": fruitful}
        time.sleep(TAIL_PAUSE)


def test_eight_processes_saving_overlapping_opportunities_lose_nothing_and_a_tail_sees_all(
    conninfo: str, tmp_path: Path
) -> None:
    """8 processes x 250 saves on 20 shared deals, retrying conflicts, and one tailing reader.

    Every save lands exactly once (the store holds one event per successful save and no
    event of a conflicted attempt); each deal's versions run 1, 2, 3, ...; conflicts are
    ``ConcurrencyError`` naming the deal.  A ninth process polls ``read_all(after_position=
    last)`` throughout and once after: it saw every record exactly once, positions
    increasing, and the same list as a full ``read_all`` at the end.
    """
    url = postgres_support.as_url(conninfo)
    PostgresEventStore(conninfo).close()  # the schema first: opening at once has its own test
    context = multiprocessing.get_context("fork")
    ticks = context.Value("q", 0)
    writing = context.Value("i", WRITERS)
    start = context.Barrier(WRITERS + 1)

    def clock() -> FixedClock:
        return _shared_clock(ticks)

    def write(worker: int) -> None:
        tally = _Tally(worker)
        try:
            with open_repository(url) as repo:
                rng = random.Random(worker)
                start.wait(TIMEOUT)
                for number in range(WRITER_SAVES):
                    opp_id = rng.choice(OPPORTUNITIES)
                    _save_until_it_lands(repo, opp_id, _marker(worker, number), clock, tally)
        except BaseException:
            tally.errors.append(traceback.format_exc())
        finally:
            with writing.get_lock():
                writing.value -= 1
            _write_tally(tmp_path, tally)

    def read() -> None:
        try:
            with PostgresEventStore(conninfo) as store:
                start.wait(TIMEOUT)
                report = _tail(store, lambda: bool(writing.value))
        except BaseException:
            report = {"error": traceback.format_exc()}
        (tmp_path / "tail.json").write_text(json.dumps(report), encoding="utf-8")

    _in_processes(WRITERS + 1, lambda worker: read() if worker == WRITERS else write(worker))

    tallies = _read_tallies(tmp_path, WRITERS)
    errors = [error for tally in tallies for error in tally.errors]
    assert not errors, "a save failed other than by conflict:\n" + "\n".join(errors[:5])
    for tally in tallies:
        assert len(tally.landed) == WRITER_SAVES, (
            f"writer {tally.worker} landed {len(tally.landed)} of {WRITER_SAVES} saves"
        )
    landed = [marker for tally in tallies for marker in tally.landed]
    with PostgresEventStore(conninfo) as store:
        everything = list(store.read_all())
        # Every writer opened deals in the same pipeline at once: its definition is stored
        # once (the writers that lost the race to store it saved without it).
        definitions = [r for r in everything if r.stream_id.startswith("definition:")]
        assert len(definitions) == 1
        records = [r for r in everything if r not in definitions]
        repo = Repository(store)
        assert len(records) == len(landed) == WRITERS * WRITER_SAVES, (
            f"{len(records)} events stored for {len(landed)} successful saves"
        )
        streams = _check_streams(records)
        assert set(streams) <= set(OPPORTUNITIES), f"unexpected streams: {sorted(streams)}"
        _check_markers([str(record.payload["description"]) for record in records], landed)
        opened = {marker for tally in tallies for marker in tally.opened}
        for opp_id, stream_records in streams.items():
            markers = [str(record.payload["description"]) for record in stream_records]
            assert stream_records[0].type == "Opened", f"{opp_id} does not begin with Opened"
            assert markers[0] in opened, f"{opp_id} was not opened by its first save"
            assert not opened & set(markers[1:]), f"{opp_id} was opened twice"
            order = [_marker_order(marker) for marker in markers]
            for worker in {worker for worker, _ in order}:
                mine = [number for who, number in order if who == worker]
                assert mine == sorted(mine), f"{opp_id}: writer {worker}'s saves are out of order"
            opp = repo.get(opp_id)
            assert (opp.version, opp.description) == (len(markers), markers[-1])
        final = [(r.position or 0, r.stream_id, r.version) for r in everything]
        assert [r.position for r in store.read_stream(OPPORTUNITIES[0])] == [
            position for position, stream, _ in final if stream == OPPORTUNITIES[0]
        ]
    _check_writers_collided(tallies)

    tail = json.loads((tmp_path / "tail.json").read_text(encoding="utf-8"))
    assert "error" not in tail, f"the tailing reader failed:\n{tail.get('error')}"
    seen = [tuple(row) for row in tail["seen"]]
    positions = [row[0] for row in seen]
    assert all(a < b for a, b in itertools.pairwise(positions)), "the tail went backwards"
    assert len(set(seen)) == len(seen), "the tail saw a record twice"
    missed = sorted(set(final) - set(seen))
    assert not missed, f"the tail skipped {len(missed)} records, first {missed[:5]}"
    assert seen == final, "the tail disagrees with a full read_all"
    assert tail["fruitful"] > 10, (
        f"the tail found new records only {tail['fruitful']} times in {tail['polls']} polls: "
        "it did not read while the writers wrote"
    )


# -- a client SIGKILLed in the middle of big batches -----------------------------------------


def _big_batch(
    rng: random.Random, batch: str, versions: dict[str, int]
) -> tuple[Plan, list[tuple[str, list[EventRecord], int]]]:
    """Mostly a big batch (many streams, many records, some kB each), now and then a small one."""
    if rng.random() < 0.2:
        plan = {stream: [versions[stream] + 1] for stream in rng.sample(BIG_STREAMS, 1)}
    else:
        plan = {
            stream: list(range(versions[stream] + 1, versions[stream] + 1 + rng.randint(1, 20)))
            for stream in rng.sample(BIG_STREAMS, rng.randint(3, 10))
        }
    batches = [
        (
            stream,
            [
                _noted(stream, version, {"batch": batch, "text": "ก" * rng.randint(20, 400)})
                for version in wanted
            ],
            wanted[0] - 1,
        )
        for stream, wanted in plan.items()
    ]
    return plan, batches


def _append_until_killed(conninfo: str, out: int, seed: int, cycle: int) -> None:
    rng = random.Random(seed)
    parent = os.getppid()
    store = PostgresEventStore(conninfo)  # never closed: the process is killed while using it
    versions = {stream: store.stream_version(stream) for stream in BIG_STREAMS}
    _send(out, {"ready": True})
    deadline = time.monotonic() + CHILD_LIFETIME
    for number in itertools.count(1):
        if time.monotonic() > deadline or os.getppid() != parent:
            break
        batch = f"c{cycle}-b{number}"
        plan, batches = _big_batch(rng, batch, versions)
        _send(out, {"attempt": batch, "plan": plan})
        store.append_many(batches)
        for stream, wanted in plan.items():
            versions[stream] = wanted[-1]
        _send(out, {"ack": batch})


def _child(conninfo: str, pipe: tuple[int, int], seed: int, cycle: int) -> NoReturn:
    status = 3  # the loop ran out of time: the parent never killed it
    try:
        os.close(pipe[0])
        _append_until_killed(conninfo, pipe[1], seed, cycle)
    except BaseException:
        status = 1
        with contextlib.suppress(BaseException):
            _send(pipe[1], {"error": traceback.format_exc()})
    finally:
        os._exit(status)  # never return into pytest, never run the parent's cleanups


def _kill_a_writer(conninfo: str, rng: random.Random, cycle: int, where: str) -> _Report:
    """Fork a writer, SIGKILL it at a random moment, and return what it reported."""
    child_seed = rng.randrange(2**32)
    early = rng.random() < EARLY_KILL_SHARE
    delay = rng.uniform(0, MAX_KILL_DELAY / 4 if early else MAX_KILL_DELAY)
    pipe = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:
            _child(conninfo, pipe, child_seed, cycle)
        os.close(pipe[1])
        buffer = bytearray()
        try:
            if not early:
                _wait_for_ready(pipe[0], buffer)
            time.sleep(delay)
        finally:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        _drain(pipe[0], buffer)
    finally:
        os.close(pipe[0])
        with contextlib.suppress(OSError):  # closed above unless fork failed
            os.close(pipe[1])
    report = _Report.parse(bytes(buffer))
    assert report.error is None, f"{where}: the writer failed before the kill:\n{report.error}"
    assert os.WIFSIGNALED(status), f"{where}: the writer ended on its own (status {status})"
    assert os.WTERMSIG(status) == signal.SIGKILL, f"{where}: the writer died of another signal"
    assert early or report.ready, f"{where}: the writer never opened the store"
    return report


def test_a_client_killed_in_the_middle_of_big_batches_leaves_no_partial_batch(
    server: str, conninfo: str
) -> None:
    """A child appending big ``append_many`` batches (up to 10 streams x 20 records) is
    SIGKILLed at random moments, 60 times.  After each kill every batch is whole or absent,
    every acknowledged batch is there, each stream runs 1, 2, 3, ..., and an append works.

    The server finishes a dead client's transaction on its own time (a COMMIT already sent
    still commits), so each check waits until the killed client's session has ended.
    Set ``OPPCORE_CRASH_SEED`` to replay a run's random choices, as for ``test_crash``.
    """
    seed = _seed()
    rng = random.Random(seed)
    ledger = _Ledger(seed)
    name = f"oppcore-killed-{uuid.uuid4().hex[:8]}"
    gone = _no_backend_named(server, name)
    for cycle in range(1, KILLS + 1):
        where = f"seed {seed} (OPPCORE_CRASH_SEED), kill {cycle}"
        report = _kill_a_writer(_named(conninfo, name), rng, cycle, where)
        ledger.plans.update(report.attempted)
        ledger.acked |= report.acked
        ledger.in_flight += bool(set(report.attempted) - report.acked)
        _wait_until(gone, f"{where}: the killed client's session ended")
        with PostgresEventStore(conninfo) as store:
            _check(store, ledger, set(report.attempted), where)
            versions = dict.fromkeys(BIG_STREAMS, 0)
            for _, stream, version, _ in ledger.seen:
                versions[stream] = version
            batch = f"c{cycle}-parent"
            plan, batches = _big_batch(rng, batch, versions)
            ledger.plans[batch] = plan
            store.append_many(batches)
            ledger.acked.add(batch)
    with PostgresEventStore(conninfo) as store:
        _check(store, ledger, set(), f"seed {seed}, at the end")
        assert set(store.stream_ids()) == {row[1] for row in ledger.seen}
    assert ledger.in_flight >= KILLS // 4, (
        f"seed {seed}: only {ledger.in_flight} of {KILLS} kills caught an append in flight"
    )


# -- the server restarts, or stops -----------------------------------------------------------


class _RestartWriter(threading.Thread):
    """Appends small batches to one store in a loop, recording what was acknowledged; on
    ``StoreUnavailableError`` it learns the stream versions again once the server answers."""

    def __init__(self, store: PostgresEventStore, seed: int) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.rng = random.Random(seed)
        self.plans: dict[str, Plan] = {}
        self.acked: list[str] = []
        self.doubtful: list[str] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            versions = dict.fromkeys(RESTART_STREAMS, 0)
            for number in itertools.count(1):
                if self.stop.is_set():
                    return
                batch = f"b{number}"
                streams = self.rng.sample(RESTART_STREAMS, self.rng.randint(1, 3))
                plan = {s: [versions[s] + 1, versions[s] + 2] for s in streams}
                self.plans[batch] = plan
                batches = [
                    (s, [_noted(s, v, {"batch": batch}) for v in plan[s]], versions[s])
                    for s in streams
                ]
                try:
                    self.store.append_many(batches)
                except StoreUnavailableError as exc:
                    self.doubtful.append(batch)
                    self.failures.append(str(exc))
                    versions = self._versions_once_back()
                else:
                    self.acked.append(batch)
                    for s in streams:
                        versions[s] = plan[s][-1]
        except BaseException:
            self.error = traceback.format_exc()

    def _versions_once_back(self) -> dict[str, int]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                return {s: self.store.stream_version(s) for s in RESTART_STREAMS}
            except StoreUnavailableError as exc:
                self.failures.append(str(exc))
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def test_a_crash_like_restart_keeps_every_acknowledged_append(conninfo: str) -> None:
    """``pg_ctl restart -m immediate`` (no clean shutdown) while a thread appends: after it
    every acknowledged batch is there, whole; a batch whose append raised is whole or absent;
    the writer's own store worked again without being reopened."""
    store = PostgresEventStore(conninfo)
    writer = _RestartWriter(store, seed=random.SystemRandom().randrange(2**32))
    writer.start()
    try:
        _wait_until(lambda: len(writer.acked) >= ACKS_AROUND_RESTART, "appends were acknowledged")
        before = len(writer.acked)
        try:
            postgres_support.pg_ctl("restart", "-m", "immediate")
        finally:
            _start_server_again()
        _wait_until(
            lambda: len(writer.acked) >= before + ACKS_AROUND_RESTART or not writer.is_alive(),
            "the same store acknowledged appends after the restart",
        )
    finally:
        writer.stop.set()
        writer.join(TIMEOUT)
        store.close()
    assert writer.error is None, f"the writer failed:\n{writer.error}"
    assert writer.failures, "the restart never reached the writer: the test proved nothing"
    assert len(writer.acked) >= before + ACKS_AROUND_RESTART, "the store did not work again"

    with PostgresEventStore(conninfo) as reopened:
        records = list(reopened.read_all())
    _check_streams(records)
    found: dict[str, Plan] = {}
    for record in records:
        found.setdefault(str(record.payload["batch"]), {}).setdefault(record.stream_id, []).append(
            record.version
        )
    lost = [batch for batch in writer.acked if batch not in found]
    assert not lost, f"acknowledged batches are gone after the restart: {lost}"
    for batch, streams in found.items():
        assert batch in writer.plans, f"batch {batch} was never written"
        assert streams == writer.plans[batch], f"batch {batch} is half there: {streams}"
    unknown = set(found) - set(writer.acked) - set(writer.doubtful)
    assert not unknown, f"batches never attempted are stored: {sorted(unknown)}"


def test_a_stopped_server_fails_calls_fast_and_the_same_store_works_once_it_is_back(
    conninfo: str,
) -> None:
    """While the server is down every operation raises ``StoreUnavailableError`` (an
    ``OppcoreError``, never a psycopg error) within seconds, not a hang, and writes nothing;
    once the server is back the very same store object appends and reads again."""
    store = PostgresEventStore(conninfo)
    repo = Repository(store)
    try:
        store.append("before", [_noted("before", 1)], expected_version=0)
        calls: dict[str, Callable[[], object]] = {
            "append": lambda: store.append("while", [_noted("while", 1)], expected_version=0),
            "append_many": lambda: store.append_many(
                [("while", [_noted("while", 1)], 0), ("before", [_noted("before", 2)], 1)]
            ),
            "read_all": lambda: list(store.read_all()),
            "read_stream": lambda: store.read_stream("before"),
            "stream_ids": lambda: list(store.stream_ids()),
            "stream_version": lambda: store.stream_version("before"),
            "create_schema": store.create_schema,
            "Repository.get": lambda: repo.get("before"),
            "a new store": lambda: PostgresEventStore(conninfo).close(),
        }
        timings: dict[str, float] = {}
        postgres_support.pg_ctl("stop", "-m", "immediate")
        try:
            for name, call in calls.items():
                started = time.monotonic()
                with pytest.raises(StoreUnavailableError) as caught:
                    call()
                timings[name] = time.monotonic() - started
                assert isinstance(caught.value, OppcoreError)
                assert caught.value.__cause__ is None, f"{name}: a psycopg error is chained"
        finally:
            _start_server_again()
        slow = {name: round(took, 2) for name, took in timings.items() if took > FAST}
        assert not slow, f"calls on a stopped server hung (seconds): {slow}"

        # The first call's connection was already dropped: the same store simply reconnects.
        assert store.append("after", [_noted("after", 1)], expected_version=0) == 1
        assert [(r.stream_id, r.version) for r in store.read_all()] == [
            ("before", 1),
            ("after", 1),
        ]
        assert store.read_stream("while") == []
    finally:
        store.close()


def test_a_store_left_idle_across_a_restart_works_again_after_at_most_one_error(
    conninfo: str,
) -> None:
    """A restart kills the store's idle connection.  As the module documents, the call that
    finds it dead raises ``StoreUnavailableError`` (having written nothing) and the next one
    reconnects: at most one failure, then the same store appends again."""
    with PostgresEventStore(conninfo) as store:
        store.append("s", [_noted("s", 1)], expected_version=0)
        failures = []
        for version, mode in enumerate(("immediate", "fast"), start=2):
            try:
                postgres_support.pg_ctl("restart", "-m", mode)
            finally:
                _start_server_again()
            for _ in range(2):
                try:
                    store.append("s", [_noted("s", version)], expected_version=version - 1)
                except StoreUnavailableError as exc:
                    failures.append(f"{mode}: {exc}")
                else:
                    break
            else:
                raise AssertionError(f"after a {mode} restart the store failed twice: {failures}")
        assert [r.version for r in store.read_stream("s")] == [1, 2, 3]


class _CutAfterCommit:
    """A TCP proxy to the server that, once armed, swallows the server's answer to a COMMIT
    and drops the client's connection: the transaction is committed, the client never hears."""

    def __init__(self, server: str) -> None:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(server)
        host = str(parts.get("host") or "")
        if not host or host.startswith("/"):
            pytest.skip("the proxy needs a TCP server address")
        self.target = (host, int(parts.get("port") or 5432))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.armed = threading.Event()
        self.cut = threading.Event()
        self.sockets: list[socket.socket] = [self.listener]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]

    def conninfo(self, conninfo: str) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(conninfo, host="127.0.0.1", port=str(self.listener.getsockname()[1]))

    def __enter__(self) -> _CutAfterCommit:
        self.threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked on it
            sock.close()
        for thread in self.threads:
            thread.join(TIMEOUT)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            for source, sink, answers in ((client, server, False), (server, client, True)):
                thread = threading.Thread(target=self._pump, args=(source, sink, answers))
                thread.daemon = True
                self.threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(1 << 16):
                if answers and self.armed.is_set() and b"COMMIT" in data:
                    self.armed.clear()
                    self.cut.set()
                    for sock in (source, sink):
                        sock.shutdown(socket.SHUT_RDWR)
                    return
                sink.sendall(data)


def test_a_connection_lost_after_the_server_committed_leaves_the_save_whole_and_safe_to_retry(
    server: str, conninfo: str
) -> None:
    """The connection drops after the server committed an append but before the client
    heard: the append raises ``StoreUnavailableError`` though it was saved (an in-doubt
    commit).  The batch is whole, the same store reconnects, and saving the same value again
    through the Repository changes nothing (it sees its own events already stored)."""
    with _CutAfterCommit(server) as proxy, PostgresEventStore(proxy.conninfo(conninfo)) as store:
        repo = Repository(store)
        clock = FixedClock(BASE)
        opened = repo.save(Opportunity.open(name="Deal", id="deal", clock=clock))
        value = opened.update(description="in doubt", clock=clock)
        proxy.armed.set()
        with pytest.raises(StoreUnavailableError):
            repo.save(value)
        assert proxy.cut.is_set(), "the proxy never cut a COMMIT: the test proved nothing"
        with PostgresEventStore(conninfo) as direct:
            assert [r.version for r in direct.read_stream("deal")] == [1, 2], (
                "the committed append is not there, or not whole"
            )
        assert repo.save(value) is value  # the retry: the same store, nothing written twice
        assert [r.version for r in store.read_stream("deal")] == [1, 2]
        assert repo.get("deal").description == "in doubt"


# -- a pool of the caller's ------------------------------------------------------------------


def _append_or_conflict(store: PostgresEventStore, worker: int, tally: _Tally) -> None:
    """Appends of one record, and two-stream batches, each with a marker; conflicts counted."""
    rng = random.Random(worker)
    for number in range(POOL_SAVES):
        marker = _marker(worker, number)
        streams = rng.sample(RESTART_STREAMS, 1 if rng.random() < 0.5 else 2)
        batches = []
        for stream in streams:
            version = store.stream_version(stream)
            batches.append(
                (stream, [_noted(stream, version + 1, {"m": marker, "of": len(streams)})], version)
            )
        try:
            store.append_many(batches)
        except ConcurrencyError:
            tally.conflicts += 1
        else:
            tally.updated.append(marker)


def test_threads_appending_through_a_pooled_store_and_closing_it_leaves_the_pool_open(
    conninfo: str,
) -> None:
    """Eight threads append through one store on a ``ConnectionPool`` (max 4 connections):
    every append lands whole or conflicts; closing the store leaves the caller's pool open."""
    from psycopg_pool import ConnectionPool

    with ConnectionPool(conninfo, min_size=1, max_size=4, open=True, timeout=30) as pool:
        store = PostgresEventStore(conninfo, pool=pool)
        tallies = _run_threads(lambda worker, tally: _append_or_conflict(store, worker, tally))
        _check_tallies(tallies, POOL_SAVES)
        records = list(store.read_all())
        _check_streams(records)
        by_marker: dict[str, list[EventRecord]] = {}
        for record in records:
            by_marker.setdefault(str(record.payload["m"]), []).append(record)
        _check_markers(list(by_marker), [m for tally in tallies for m in tally.landed])
        for marker, found in by_marker.items():
            assert len(found) == found[0].payload["of"], f"{marker} is half there"
        _check_writers_collided(tallies)

        store.close()
        assert not pool.closed, "closing the store closed the caller's pool"
        with pool.connection() as connection:
            row = connection.execute("SELECT count(*) FROM oppcore_events").fetchone()
        assert row == (len(records),)
        with pytest.raises(StorageError, match="closed"):
            store.read_stream("r-1")
        with PostgresEventStore(conninfo, pool=pool) as again:
            assert len(list(again.read_all())) == len(records)
        assert not pool.closed


def test_a_pool_that_is_not_a_connection_pool_is_refused(conninfo: str) -> None:
    with pytest.raises(ValidationError, match="ConnectionPool"):
        PostgresEventStore(conninfo, pool=object())  # type: ignore[arg-type]


# -- bad input -------------------------------------------------------------------------------


def test_a_stream_id_with_a_nul_is_refused_by_name_and_nothing_is_written(conninfo: str) -> None:
    """PostgreSQL text cannot hold NUL: the append says so, naming the id, and writes nothing,
    not even the other batches of an ``append_many``."""
    with PostgresEventStore(conninfo) as store:
        bad = "deal\x00-1"
        with pytest.raises(ValidationError) as caught:
            store.append(bad, [_noted(bad, 1)], expected_version=0)
        assert repr(bad) in str(caught.value)
        assert "NUL" in str(caught.value)
        with pytest.raises(ValidationError, match="NUL"):
            store.append_many([("fine", [_noted("fine", 1)], 0), (bad, [_noted(bad, 1)], 0)])
        with pytest.raises(ValidationError, match="NUL"):
            store.append(
                "fine", [EventRecord("fine", 1, "No\x00ted", STAMP, STAMP, {})], expected_version=0
            )
        assert list(store.read_all()) == []
        assert store.read_stream(bad) == []
        # A NUL inside the payload is JSON's \u0000: stored and read back as it was.
        store.append("fine", [_noted("fine", 1, {"k\x00": "v\x00"})], expected_version=0)
        assert [r.payload for r in store.read_all()] == [{"k\x00": "v\x00"}]


def test_a_nul_in_a_record_time_is_refused_in_our_words_and_writes_nothing(
    conninfo: str,
) -> None:
    """``at`` / ``recorded_at`` are not checked for NUL like the stream id and type are; the
    error is still ours (``StorageError``, not ``ValidationError``) and nothing is written."""
    with PostgresEventStore(conninfo) as store:
        for at, recorded_at in (("2026\x00", STAMP), (STAMP, "2026\x00")):
            record = EventRecord("t", 1, "Noted", at, recorded_at, {})
            with pytest.raises(OppcoreError, match="NUL"):
                store.append_many([("ok", [_noted("ok", 1)], 0), ("t", [record], 0)])
        assert list(store.read_all()) == []
        assert store.append("ok", [_noted("ok", 1)], expected_version=0) == 1


def test_an_id_with_a_nul_is_simply_not_found(conninfo: str) -> None:
    """No stream can hold a NUL, so looking one up finds nothing, as on every other store.

    BUG: ``read_stream`` returns [] for such an id but ``stream_version`` sends it to the
    server and raises ``StorageError`` ("Cannot read PostgreSQL ...": it blames the server);
    ``Repository.get_lead`` / ``get_campaign`` / ``get_pipeline`` use ``stream_version`` and
    so raise ``StorageError`` where the design says ``NotFoundError``.
    """
    with PostgresEventStore(conninfo) as store:
        repo = Repository(store)
        assert store.read_stream("x\x00") == []
        with pytest.raises(OpportunityNotFound):
            repo.get("x\x00")
        assert store.stream_version("x\x00") == 0
        with pytest.raises(NotFoundError):
            repo.get_lead("x\x00")


@pytest.mark.parametrize("conninfo_value", [None, "", "   ", b"postgresql://u@h/db", 5432])
def test_a_connection_string_that_is_not_text_or_is_empty_is_refused(
    conninfo_value: object,
) -> None:
    with pytest.raises(ValidationError, match="connection string"):
        PostgresEventStore(conninfo_value)  # type: ignore[arg-type]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "template",
    [
        "postgresql://u:s3cret@127.0.0.1:{port}/db",
        "postgresql://u:s3cret@127.0.0.1:{port}/db?sslmode=disable&application_name=x",
        "host=127.0.0.1 port={port} user=u password=s3cret dbname=db",
    ],
    ids=["url", "url-with-query", "key-value"],
)
def test_an_unreachable_server_is_unavailable_fast_and_the_password_is_never_shown(
    template: str,
) -> None:
    """A closed port: ``StoreUnavailableError`` at once (measured), naming host and port but
    never the password, in the message, the repr, or the exception's context."""
    conninfo = template.format(port=_closed_port())
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as caught:
        PostgresEventStore(conninfo)
    took = time.monotonic() - started
    assert took < FAST, f"opening a store on a closed port took {took:.1f} s"
    error = caught.value
    assert "127.0.0.1" in str(error)
    shown = "".join(traceback.format_exception(error)) + repr(error)
    assert "s3cret" not in shown
    assert "s3cret" not in str(error.__context__)
    with pytest.raises(StoreUnavailableError) as again:
        open_repository("postgresql://u:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in str(again.value)


def test_a_server_that_never_answers_is_given_up_on_after_the_callers_connect_timeout() -> None:
    """A port that accepts connections but never answers (a hung host): the store gives up
    with ``StoreUnavailableError`` after ``connect_timeout`` rather than hanging.  The how-to
    says ``connect_timeout`` may be set in the URL; here it is 1 second.

    BUG: the store passes ``connect_timeout=10`` to ``psycopg.connect`` as a keyword, which
    overrides the caller's value, so this takes 10 s whatever the URL says (measured 10.1 s).
    """
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        for conninfo in (
            f"postgresql://u:s3cret@127.0.0.1:{port}/db?connect_timeout=1",
            f"host=127.0.0.1 port={port} connect_timeout=1",
        ):
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError) as caught:
                PostgresEventStore(conninfo)
            took = time.monotonic() - started
            assert "s3cret" not in str(caught.value)
            assert took < FAST, f"connect_timeout=1 in {conninfo!r}, yet it took {took:.1f} s"


@pytest.mark.parametrize(
    "conninfo_value",
    [
        "postgresql://u:s3cret%zz@127.0.0.1:1/db",
        "postgresql://u:s3cret@127.0.0.1:1/db?nosuchoption=1",
        "host=127.0.0.1 port=1 password=s3cret junk",
    ],
    ids=["bad-percent-escape", "unknown-option", "not-key-value"],
)
def test_a_malformed_connection_string_never_shows_the_password(conninfo_value: str) -> None:
    """A connection string libpq cannot parse is refused with an ``OppcoreError`` that does
    not contain the password.

    BUG (bad-percent-escape): libpq's message quotes the malformed token, which is the
    password itself ('invalid percent-encoded token: "s3cret%zz"'), and the store copies it
    into its StorageError.
    """
    with pytest.raises(OppcoreError) as caught:
        PostgresEventStore(conninfo_value)
    assert "s3cret" not in str(caught.value)


def test_a_store_that_refuses_a_newer_schema_leaves_no_connection_open(conninfo: str) -> None:
    """A schema recorded as version 3 (newer than this oppcore) is refused with
    ``CorruptStoreError``.

    BUG: the constructor raises after connecting and never closes that connection; the
    caller has no store to close, and psycopg later warns "connection ... was deleted while
    still open" (a ResourceWarning, an error under ``-W error``).
    """
    import psycopg

    PostgresEventStore(conninfo).close()
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("UPDATE oppcore_meta SET value = '3' WHERE key = 'schema_version'")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CorruptStoreError, match="version '3'"):
            PostgresEventStore(conninfo)
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, f"the refused store left its connection open: {leaks}"


# -- schemas made at the same moment ---------------------------------------------------------


# The two tables as the PostgreSQL how-to shows them, as a DBA might make them by hand.
_TABLES_BY_HAND = """
CREATE TABLE oppcore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE oppcore_events (
    position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    payload TEXT NOT NULL,
    UNIQUE (stream_id, version)
);
"""


@pytest.mark.parametrize("tables", ["none", "made-by-hand"])
def test_processes_creating_the_schema_at_the_same_moment_all_succeed(
    server: str, tmp_path: Path, tables: str
) -> None:
    """8 processes open a store on one new schema at the same moment, 8 schemas over: every
    open succeeds, every append lands, and the schema version is recorded once.

    ``none``: an empty schema; ``create_schema`` is serialised by an advisory lock
    (concurrent ``CREATE TABLE IF NOT EXISTS`` alone fails now and then).
    ``made-by-hand``: the tables exist (the how-to's DDL) but no version row yet.

    BUG (made-by-hand): when the tables exist, ``create_schema`` skips the advisory lock and
    then inserts the missing version row, so openers race on it; the losers get a raw
    ``psycopg.errors.UniqueViolation`` (``_connect`` re-raises UniqueViolation for
    ``append`` to translate, but ``create_schema`` never does).
    """
    import psycopg

    with contextlib.ExitStack() as stack:
        schemas = [
            stack.enter_context(postgres_support.fresh_schema(server)) for _ in range(SCHEMA_ROUNDS)
        ]
        if tables == "made-by-hand":
            for schema in schemas:
                with psycopg.connect(schema, autocommit=True) as connection:
                    connection.execute(_TABLES_BY_HAND.encode())
        start = multiprocessing.get_context("fork").Barrier(SCHEMA_OPENERS)

        def main(worker: int) -> None:
            tally = _Tally(worker)
            for number, schema in enumerate(schemas):
                try:
                    start.wait(TIMEOUT)
                    with PostgresEventStore(schema) as store:
                        stream = f"opener-{worker}"
                        store.append(stream, [_noted(stream, 1, {"m": number})], expected_version=0)
                except Exception:
                    tally.errors.append(f"schema {number}: {traceback.format_exc()}")
                else:
                    tally.updated.append(_marker(worker, number))
            _write_tally(tmp_path, tally)

        _in_processes(SCHEMA_OPENERS, main)
        tallies = _read_tallies(tmp_path, SCHEMA_OPENERS)
        failed = [error for tally in tallies for error in tally.errors]
        assert not failed, f"{len(failed)} of {SCHEMA_OPENERS * SCHEMA_ROUNDS} opens failed:\n" + (
            "\n".join(failed[:2])
        )
        for number, schema in enumerate(schemas):
            with PostgresEventStore(schema) as store:
                assert sorted(r.stream_id for r in store.read_all()) == sorted(
                    f"opener-{worker}" for worker in range(SCHEMA_OPENERS)
                ), f"schema {number}"
            with psycopg.connect(schema) as connection:
                rows = connection.execute("SELECT key, value FROM oppcore_meta").fetchall()
            # The version recorded once; a new schema also marks its deal table (kept from
            # the first event on; these raw appends do not keep it, so it stays at 0).
            expected = [("schema_version", "2")]
            if tables == "none":
                expected.append(("deal_table_position", "0"))
            assert sorted(rows) == sorted(expected)


# -- an append that commits late -------------------------------------------------------------


_PAUSE = """
CREATE FUNCTION oppcore_test_pause() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.stream_id = 'late' THEN
        PERFORM pg_advisory_xact_lock({a}, {b});
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER oppcore_test_pause AFTER INSERT ON oppcore_events
    FOR EACH ROW EXECUTE FUNCTION oppcore_test_pause();
"""


def _waits_for_a_lock(
    control: psycopg.Connection[Any], application_name: str
) -> Callable[[], bool]:
    """Whether the session named ``application_name`` is blocked on a lock (any kind)."""

    def check() -> bool:
        row = control.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = %s AND wait_event_type = 'Lock'",
            (application_name,),
        ).fetchone()
        return row is not None and row[0] > 0

    return check


def test_a_reader_never_skips_an_append_that_commits_late(conninfo: str) -> None:
    """Positions come from a sequence when a row is inserted, not when it commits.  The race
    that would make a reader skip an event: append A inserts (drawing position p) and has not
    committed yet; append B inserts (p + 1) and commits; a reader sees p + 1, remembers it,
    and never asks for p again once A commits.

    This test opens exactly that window, deterministically: a trigger (on this test's schema
    only) makes A's insert wait on an advisory lock the test holds, *after* A's rows and
    positions exist and before A commits.  Then B appends from a second store.  Whatever
    lock the store uses to hand out positions in commit order, B must now wait for A: B
    must not commit, so a reader polling meanwhile sees nothing new and remembers nothing
    past A.  Once A is let go both commit, A first, and a reader resuming from the position
    it remembered sees A and then B.  Without that serialisation B commits at once, the
    reader remembers B's position and never sees A: the asserts below fail.
    """
    import psycopg

    name = f"oppcore-late-{uuid.uuid4().hex[:8]}"
    writer_a = PostgresEventStore(_named(conninfo, f"{name}-a"))
    writer_b = PostgresEventStore(_named(conninfo, f"{name}-b"))
    reader = PostgresEventStore(conninfo)
    a, b = 0x6F70, random.randrange(1, 2**31)
    errors: list[str] = []

    def append(store: PostgresEventStore, stream: str) -> None:
        try:
            store.append(stream, [_noted(stream, 1), _noted(stream, 2)], expected_version=0)
        except BaseException:
            errors.append(traceback.format_exc())

    try:
        writer_b.append("before", [_noted("before", 1)], expected_version=0)
        remembered = max(position for position, _, _ in _rows(reader))
        with psycopg.connect(conninfo, autocommit=True) as control:
            control.execute(_PAUSE.format(a=a, b=b).encode())
            control.execute("SELECT pg_advisory_lock(%s, %s)", (a, b))
            late = threading.Thread(target=append, args=(writer_a, "late"))
            early = threading.Thread(target=append, args=(writer_b, "early"))
            try:
                late.start()
                _wait_until(
                    _waits_for_a_lock(control, f"{name}-a"),
                    "the late append has inserted its rows and waits before committing",
                )
                early.start()
                _wait_until(
                    lambda: not early.is_alive() or _waits_for_a_lock(control, f"{name}-b")(),
                    "the early append waits for the late one (or has finished)",
                )
                assert early.is_alive(), (
                    "an append committed while an earlier one held an uncommitted position"
                )
                polled = list(reader.read_all(after_position=remembered))
                assert polled == [], f"a reader saw uncommitted or overtaking rows: {polled}"
                row = control.execute(
                    "SELECT count(*) FROM oppcore_events WHERE stream_id = 'late'"
                ).fetchone()
                assert row == (0,), "the late rows are visible before their commit"
            finally:
                control.execute("SELECT pg_advisory_unlock(%s, %s)", (a, b))
                late.join(TIMEOUT)
                early.join(TIMEOUT)
            control.execute("DROP TRIGGER oppcore_test_pause ON oppcore_events")
        assert not errors, "\n".join(errors)
        tail = [(r.stream_id, r.version) for r in reader.read_all(after_position=remembered)]
        assert tail == [("late", 1), ("late", 2), ("early", 1), ("early", 2)], tail
        rows = _rows(reader)
        assert [position for position, _, _ in rows] == sorted(p for p, _, _ in rows)
    finally:
        for store in (writer_a, writer_b, reader):
            store.close()

"""Concurrency: many writers on one store; every save lands or conflicts, nothing lost or doubled.

Four forked processes save through ``Repository`` on one shared journal (and, separately, one
shared SQLite database), all on the same few opportunities, so they keep overtaking each
other.  Each save either lands or raises ``ConcurrencyError``; afterwards the store holds
exactly the saves that landed.  Eight threads do the same on one ``MemoryEventStore``.
Then the edges: processes creating one new store at the same moment, and a journal opened
before a fork and used by the children.

Event times come from one counter shared by every writer and taken after the read, so an
event is never older than the one it follows and nothing depends on the wall clock.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import multiprocessing
import random
import sqlite3
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

from oppcore import (
    ConcurrencyError,
    CorruptStoreError,
    FixedClock,
    Opportunity,
    OpportunityNotFound,
    Repository,
    StorageError,
)
from oppcore.storage import (
    BatchEventStore,
    EventRecord,
    JsonEventStore,
    MemoryEventStore,
    SqliteEventStore,
)

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

pytestmark = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)

PROCESSES = 4
PROCESS_SAVES = 250
THREADS = 8
THREAD_SAVES = 200
OPPORTUNITIES = ("opp-1", "opp-2", "opp-3", "opp-4", "ดีล-5")
STREAMS = ("s-1", "s-2", "s-3", "s-4", "s-5")
BASE = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
STAMP = BASE.isoformat()
OPEN_ROUNDS = 40
OPENERS = 8
INHERITED_APPENDS = 200
TIMEOUT = 120.0


class _Store(BatchEventStore, Protocol):
    def close(self) -> None: ...


Opener = Callable[[Path], _Store]


@dataclass
class _Tally:
    """What one writer did: the markers it saved, and how many saves conflicted."""

    worker: int
    opened: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    conflicts: int = 0
    refused: int = 0  # StorageError (not corruption) from a store that will not be used here
    errors: list[str] = field(default_factory=list)

    @property
    def landed(self) -> list[str]:
        return self.opened + self.updated


def _marker(worker: int, number: int) -> str:
    return f"w{worker}-n{number}"


def _marker_order(marker: str) -> tuple[int, int]:
    worker, number = marker[1:].split("-n")
    return int(worker), int(number)


# -- one writer ------------------------------------------------------------------------------


def _save_one(
    repo: Repository, opp_id: str, marker: str, clock: Callable[[], FixedClock], tally: _Tally
) -> bool:
    """Load (or open) the opportunity, change its description to ``marker``, save it;
    whether the save landed (False after a conflict, which ``tally`` counts)."""
    try:
        try:
            current = repo.get(opp_id)
        except OpportunityNotFound:
            value = Opportunity.open(name=opp_id, id=opp_id, description=marker, clock=clock())
            landed = tally.opened
        else:
            value = current.update(description=marker, clock=clock())
            landed = tally.updated
        repo.save(value)
    except ConcurrencyError as exc:
        tally.conflicts += 1
        if exc.stream_id != opp_id:
            tally.errors.append(f"{marker}: the conflict on {opp_id!r} names {exc.stream_id!r}")
        return False
    landed.append(marker)
    return True


def _save_many(
    repo: Repository, worker: int, saves: int, clock: Callable[[], FixedClock], tally: _Tally
) -> None:
    rng = random.Random(worker)
    for number in range(saves):
        _save_one(repo, rng.choice(OPPORTUNITIES), _marker(worker, number), clock, tally)


# -- processes -------------------------------------------------------------------------------


def _shared_clock(ticks: Synchronized[int]) -> FixedClock:
    with ticks.get_lock():
        ticks.value += 1
        return FixedClock(BASE + timedelta(microseconds=ticks.value))


def _in_processes(count: int, main: Callable[[int], None]) -> None:
    """Run ``main(worker)`` in ``count`` forked processes and wait for them all."""
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=main, args=(worker,)) for worker in range(count)]
    for process in workers:
        process.start()
    try:
        for process in workers:
            process.join(TIMEOUT)
            assert process.exitcode == 0, f"worker {process.name} ended with {process.exitcode}"
    finally:
        for process in workers:
            if process.is_alive():
                process.kill()
                process.join()
            process.close()


def _write_tally(folder: Path, tally: _Tally) -> None:
    text = json.dumps(dataclasses.asdict(tally))
    (folder / f"tally-{tally.worker}.json").write_text(text, encoding="utf-8")


def _read_tallies(folder: Path, count: int) -> list[_Tally]:
    return [
        _Tally(**json.loads((folder / f"tally-{worker}.json").read_text(encoding="utf-8")))
        for worker in range(count)
    ]


def _save_from_processes(opener: Opener, path: Path) -> list[_Tally]:
    context = multiprocessing.get_context("fork")
    ticks = context.Value("q", 0)
    start = context.Barrier(PROCESSES)

    def clock() -> FixedClock:
        return _shared_clock(ticks)

    def main(worker: int) -> None:
        tally = _Tally(worker)
        try:
            store = opener(path)
            try:
                start.wait(TIMEOUT)
                _save_many(Repository(store), worker, PROCESS_SAVES, clock, tally)
            finally:
                store.close()
        except BaseException:
            tally.errors.append(traceback.format_exc())
        finally:
            _write_tally(path.parent, tally)

    _in_processes(PROCESSES, main)
    return _read_tallies(path.parent, PROCESSES)


# -- threads ---------------------------------------------------------------------------------


def _run_threads(work: Callable[[int, _Tally], None]) -> list[_Tally]:
    tallies = [_Tally(worker) for worker in range(THREADS)]
    start = threading.Barrier(THREADS)

    def main(tally: _Tally) -> None:
        try:
            start.wait(TIMEOUT)
            work(tally.worker, tally)
        except BaseException:
            tally.errors.append(traceback.format_exc())

    threads = [threading.Thread(target=main, args=(tally,)) for tally in tallies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a thread never finished"
    return tallies


def _thread_clock() -> Callable[[], FixedClock]:
    lock = threading.Lock()
    ticks = itertools.count(1)

    def clock() -> FixedClock:
        with lock:
            return FixedClock(BASE + timedelta(microseconds=next(ticks)))

    return clock


# -- checks ----------------------------------------------------------------------------------


def _check_tallies(tallies: Sequence[_Tally], saves: int) -> None:
    errors = [error for tally in tallies for error in tally.errors]
    assert not errors, "a save raised something other than ConcurrencyError:\n" + "\n".join(errors)
    for tally in tallies:
        done = len(tally.landed) + tally.conflicts + tally.refused
        assert done == saves, f"worker {tally.worker} finished {done} of {saves} saves"


def _check_streams(records: Sequence[EventRecord]) -> dict[str, list[EventRecord]]:
    """Positions increase; each stream's versions run 1, 2, 3, ... with no gap or repeat."""
    positions = [record.position or 0 for record in records]
    assert all(a < b for a, b in itertools.pairwise(positions)), "read_all is out of order"
    streams: dict[str, list[EventRecord]] = {}
    for record in records:
        streams.setdefault(record.stream_id, []).append(record)
    for stream, stream_records in streams.items():
        versions = [record.version for record in stream_records]
        assert versions == list(range(1, len(versions) + 1)), (
            f"stream {stream!r} versions are not contiguous: {versions}"
        )
    return streams


def _check_markers(stored: Sequence[str], landed: Sequence[str]) -> None:
    """Every landed marker is stored once; nothing else (no conflicted save) is stored."""
    doubled = sorted(marker for marker, count in Counter(stored).items() if count > 1)
    assert not doubled, f"markers stored more than once: {doubled}"
    lost = sorted(set(landed) - set(stored))
    assert not lost, f"acknowledged saves are missing: {lost}"
    phantom = sorted(set(stored) - set(landed))
    assert not phantom, f"saves that raised ConcurrencyError were stored: {phantom}"


def _check_saved(store: _Store, tallies: Sequence[_Tally], saves: int) -> None:
    _check_tallies(tallies, saves)
    landed = [marker for tally in tallies for marker in tally.landed]
    everything = list(store.read_all())
    # The deals' one pipeline is stored once, as a definition they reference (a writer that
    # lost the race to store it saved without it).
    definitions = [r for r in everything if r.stream_id.startswith("definition:")]
    assert len(definitions) == 1
    records = [r for r in everything if r not in definitions]
    assert len(records) == len(landed), (
        f"{len(records)} events stored for {len(landed)} successful saves "
        f"({sum(t.conflicts for t in tallies)} conflicts)"
    )
    streams = _check_streams(records)
    assert set(streams) <= set(OPPORTUNITIES), f"unexpected streams: {sorted(streams)}"
    _check_markers([str(record.payload["description"]) for record in records], landed)
    opened = {marker for tally in tallies for marker in tally.opened}
    repo = Repository(store)
    for opp_id, stream_records in streams.items():
        markers = [str(record.payload["description"]) for record in stream_records]
        assert stream_records[0].type == "Opened", f"{opp_id} does not begin with Opened"
        assert markers[0] in opened, f"{opp_id} was opened by {markers[0]}, not an open save"
        assert not opened & set(markers[1:]), f"{opp_id} was opened twice"
        order = [_marker_order(marker) for marker in markers]
        for worker in {worker for worker, _ in order}:
            mine = [number for who, number in order if who == worker]
            assert mine == sorted(mine), f"{opp_id}: writer {worker}'s saves are out of order"
        opp = repo.get(opp_id)
        assert opp.version == len(stream_records)
        assert opp.description == markers[-1]


def _check_writers_collided(tallies: Sequence[_Tally]) -> None:
    conflicts = sum(tally.conflicts for tally in tallies)
    assert conflicts, "the writers never got in each other's way: the test proved nothing"


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opener", "name"),
    [(JsonEventStore, "shared.jsonl"), (SqliteEventStore, "shared.db")],
    ids=["jsonl", "sqlite"],
)
def test_processes_saving_the_same_opportunities_lose_nothing_and_double_nothing(
    opener: Opener, name: str, tmp_path: Path
) -> None:
    """4 processes x 250 saves on 5 shared deals: each lands or conflicts; the store agrees."""
    path = tmp_path / name
    opener(path).close()  # created first: opening a new file at once has its own test below
    tallies = _save_from_processes(opener, path)
    store = opener(path)
    try:
        _check_saved(store, tallies, PROCESS_SAVES)
    finally:
        store.close()
    _check_writers_collided(tallies)


def test_threads_saving_through_one_memory_repository_lose_nothing_and_double_nothing() -> None:
    """8 threads x 200 saves through one Repository on a MemoryEventStore keep every landed save."""
    store = MemoryEventStore()
    repo = Repository(store)
    clock = _thread_clock()
    tallies = _run_threads(
        lambda worker, tally: _save_many(repo, worker, THREAD_SAVES, clock, tally)
    )
    _check_saved(store, tallies, THREAD_SAVES)
    _check_writers_collided(tallies)


def _append_many_times(store: MemoryEventStore, worker: int, tally: _Tally) -> None:
    """Raw appends: half to one stream, half ``append_many`` over two, each with a marker."""
    rng = random.Random(worker)
    for number in range(THREAD_SAVES):
        marker = _marker(worker, number)
        streams = rng.sample(STREAMS, 1 if rng.random() < 0.5 else 2)
        batches = []
        for stream in streams:
            version = len(store.read_stream(stream))
            payload = {"m": marker, "of": len(streams)}
            record = EventRecord(stream, version + 1, "Noted", STAMP, STAMP, payload)
            batches.append((stream, [record], version))
        time.sleep(0)  # let another writer in between the read and the append
        try:
            if len(batches) == 1:
                stream, records, expected = batches[0]
                store.append(stream, records, expected_version=expected)
            else:
                store.append_many(batches)
        except ConcurrencyError:
            tally.conflicts += 1
        else:
            tally.updated.append(marker)


def test_threads_appending_to_one_memory_store_lose_nothing_and_write_no_half_batch() -> None:
    """8 threads x 200 appends and two-stream batches: each lands whole, or conflicts and writes nothing."""
    store = MemoryEventStore()
    tallies = _run_threads(lambda worker, tally: _append_many_times(store, worker, tally))
    _check_tallies(tallies, THREAD_SAVES)
    records = list(store.read_all())
    assert [record.position for record in records] == list(range(1, len(records) + 1))
    _check_streams(records)
    by_marker: dict[str, list[EventRecord]] = {}
    for record in records:
        by_marker.setdefault(str(record.payload["m"]), []).append(record)
    landed = [marker for tally in tallies for marker in tally.landed]
    _check_markers(list(by_marker), landed)
    for marker, found in by_marker.items():
        streams = {record.stream_id for record in found}
        assert len(streams) == len(found) == found[0].payload["of"], (
            f"{marker} is half there: {len(found)} records in {sorted(streams)}"
        )
    _check_writers_collided(tallies)


def _noted(stream: str, version: int, marker: str) -> list[EventRecord]:
    return [EventRecord(stream, version, "Noted", STAMP, STAMP, {"m": marker})]


@pytest.mark.parametrize(
    ("opener", "name"),
    [(JsonEventStore, "new.jsonl"), (SqliteEventStore, "new.db")],
    ids=["jsonl", "sqlite"],
)
def test_processes_opening_a_new_store_at_the_same_moment_all_succeed(
    opener: Opener, name: str, tmp_path: Path
) -> None:
    """8 processes opening one new file at once (40 times over) all open it and append."""
    for number in range(OPEN_ROUNDS):
        (tmp_path / f"round-{number}").mkdir()
    start = multiprocessing.get_context("fork").Barrier(OPENERS)

    def main(worker: int) -> None:
        tally = _Tally(worker)
        for number in range(OPEN_ROUNDS):
            marker = _marker(worker, number)
            try:
                start.wait(TIMEOUT)
                store = opener(tmp_path / f"round-{number}" / name)
                try:
                    store.append(
                        f"opener-{worker}",
                        _noted(f"opener-{worker}", 1, marker),
                        expected_version=0,
                    )
                finally:
                    store.close()
            except Exception:
                tally.errors.append(f"round {number}: {traceback.format_exc()}")
            else:
                tally.updated.append(marker)
        _write_tally(tmp_path, tally)

    _in_processes(OPENERS, main)
    tallies = _read_tallies(tmp_path, OPENERS)
    failed = [error for tally in tallies for error in tally.errors]
    assert not failed, f"{len(failed)} of {OPENERS * OPEN_ROUNDS} opens failed:\n" + "\n".join(
        failed[:3]
    )
    for number in range(OPEN_ROUNDS):
        store = opener(tmp_path / f"round-{number}" / name)
        try:
            stored = sorted(str(record.payload["m"]) for record in store.read_all())
        finally:
            store.close()
        assert stored == sorted(_marker(worker, number) for worker in range(OPENERS))


def test_a_journal_opened_before_a_fork_is_never_damaged_by_the_children_appending_through_it(
    tmp_path: Path,
) -> None:
    """Children appending through an inherited JsonEventStore: it works or refuses; it never corrupts."""
    path = tmp_path / "inherited.jsonl"
    start = multiprocessing.get_context("fork").Barrier(OPENERS)
    store = JsonEventStore(path)
    try:
        store.append("shared", _noted("shared", 1, "parent"), expected_version=0)

        def main(worker: int) -> None:
            tally = _Tally(worker)
            start.wait(TIMEOUT)
            for number in range(INHERITED_APPENDS):
                marker = _marker(worker, number)
                try:
                    version = len(store.read_stream("shared"))
                    store.append(
                        "shared", _noted("shared", version + 1, marker), expected_version=version
                    )
                except ConcurrencyError:
                    tally.conflicts += 1
                except CorruptStoreError:
                    tally.errors.append(traceback.format_exc())
                    break
                except StorageError:
                    tally.refused += 1  # declining to use a handle from another process is fine
                except Exception:
                    tally.errors.append(traceback.format_exc())
                    break
                else:
                    tally.updated.append(marker)
            _write_tally(tmp_path, tally)

        _in_processes(OPENERS, main)
    finally:
        store.close()
    tallies = _read_tallies(tmp_path, OPENERS)
    _check_tallies(tallies, INHERITED_APPENDS)
    try:
        store = JsonEventStore(path)
    except CorruptStoreError as exc:
        raise AssertionError(f"the children damaged the journal: {exc}") from None
    try:
        records = list(store.read_all())
    finally:
        store.close()
    _check_streams(records)
    landed = ["parent", *(marker for tally in tallies for marker in tally.landed)]
    _check_markers([str(record.payload["m"]) for record in records], landed)


def test_opening_a_new_database_waits_for_another_connection_that_is_creating_it(
    tmp_path: Path,
) -> None:
    """While another connection holds the write lock on a new database, opening it waits."""
    path = tmp_path / "busy.db"
    # Another opener half-way through creating the file: a new database, a write lock held.
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.3, other.execute, args=("COMMIT",))
        release.start()
        try:
            store = SqliteEventStore(path)  # the busy timeout is 30 s: it should wait 0.3 s
        finally:
            release.join()
        try:
            store.append("after", _noted("after", 1, "opened"), expected_version=0)
            assert [record.payload["m"] for record in store.read_all()] == ["opened"]
        finally:
            store.close()
    finally:
        other.close()

"""Crash safety: a writer killed with SIGKILL at random moments loses nothing it acknowledged.

A forked child opens the store and appends in a loop (single-stream appends and
``append_many`` batches over several streams), telling the parent through a pipe what it is
about to write and, once ``append`` / ``append_many`` returned, that the write was
acknowledged.  The parent kills it after a random few milliseconds, then reopens the same
file and checks it against what the pipe said.  One file is kept across all the kills, so
later kills land in the middle of real data.

Set ``OPPCORE_CRASH_SEED`` to replay a run's random choices (kill delays, batch shapes).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import select
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol

import pytest

from oppcore.storage import BatchEventStore, EventRecord, JsonEventStore, SqliteEventStore
from oppcore.storage.jsonl import encode_line

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")

KILLS = 150
EARLY_KILL_SHARE = 0.1  # kills that may land while the child is still opening the store
MAX_KILL_DELAY = 0.012  # seconds after the child is ready
TORN_TAIL_SHARE = 0.2  # journal only: kills after which the parent also adds a torn last line
LONG_LINE_KILLS = 6  # journal only: kills in the middle of writing one long line
LONG_TEXT = 8 << 20  # characters in a long line's record: its write() takes milliseconds
CHILD_LIFETIME = 20.0  # a child never outlives a parent that forgot it by more than this
TIMEOUT = 30.0
STREAMS = ("deal-1", "deal-2", "deal-3", "deal-4", "deal-5", "ดีล-6")

Plan = dict[str, list[int]]  # stream id -> the versions a batch writes there


class _Store(BatchEventStore, Protocol):
    def close(self) -> None: ...


Opener = Callable[[Path], _Store]


def _open_journal(path: Path) -> _Store:
    return JsonEventStore(path)


def _open_sqlite(path: Path) -> _Store:
    return SqliteEventStore(path)


def _seed() -> int:
    text = os.environ.get("OPPCORE_CRASH_SEED")
    return int(text) if text else random.SystemRandom().randrange(2**32)


def _records(
    rng: random.Random, batch: str, stream: str, versions: Sequence[int], *, long: bool = False
) -> list[EventRecord]:
    if long:
        text = "x" * LONG_TEXT
    else:  # mostly small records; now and then a few pages' worth
        text = "ก" * (rng.randint(0, 20) if rng.random() < 0.95 else rng.randint(200, 1500))
    return [
        EventRecord(
            stream,
            version,
            "Noted",
            "2026-01-05T09:00:00+00:00",
            "2026-01-05T09:00:00+00:00",
            {"batch": batch, "text": text},
        )
        for version in versions
    ]


# -- the child -------------------------------------------------------------------------------


def _send(fd: int, message: dict[str, Any]) -> None:
    data = (json.dumps(message, ensure_ascii=False) + "\n").encode()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _append_until_killed(
    opener: Opener, path: Path, out: int, seed: int, cycle: int, long: bool
) -> None:
    rng = random.Random(seed)
    parent = os.getppid()
    store = opener(path)  # never closed: the process is killed while using it
    versions = {stream: len(store.read_stream(stream)) for stream in STREAMS}
    _send(out, {"ready": True})
    deadline = time.monotonic() + CHILD_LIFETIME
    number = 0
    while time.monotonic() < deadline and os.getppid() == parent:
        number += 1
        batch = f"c{cycle}-b{number}"
        count = 1 if long or rng.random() < 0.5 else rng.randint(2, 4)
        length = 1 if long else rng.randint(1, 3)
        plan = {
            stream: list(range(versions[stream] + 1, versions[stream] + 1 + length))
            for stream in rng.sample(STREAMS, count)
        }
        batches = [
            (stream, _records(rng, batch, stream, wanted, long=long), versions[stream])
            for stream, wanted in plan.items()
        ]
        _send(out, {"attempt": batch, "plan": plan})
        if len(batches) == 1:
            stream, records, expected = batches[0]
            store.append(stream, records, expected_version=expected)
        else:
            store.append_many(batches)
        for stream, wanted in plan.items():
            versions[stream] = wanted[-1]
        _send(out, {"ack": batch})


def _child(
    opener: Opener, path: Path, pipe: tuple[int, int], seed: int, cycle: int, long: bool
) -> NoReturn:
    status = 3  # the loop ran out of time: the parent never killed it
    try:
        os.close(pipe[0])
        _append_until_killed(opener, path, pipe[1], seed, cycle, long)
    except BaseException:
        status = 1
        with contextlib.suppress(BaseException):
            _send(pipe[1], {"error": traceback.format_exc()})
    finally:
        os._exit(status)  # never return into pytest, never run the parent's cleanups


# -- the parent ------------------------------------------------------------------------------


@dataclass
class _Report:
    """What the pipe said before the kill."""

    ready: bool = False
    attempted: dict[str, Plan] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    error: str | None = None

    @classmethod
    def parse(cls, data: bytes) -> _Report:
        report = cls()
        # Pipe writes this small are atomic; a line without its newline was never sent whole.
        for line in data.split(b"\n")[:-1]:
            message = json.loads(line)
            if "ready" in message:
                report.ready = True
            elif "attempt" in message:
                report.attempted[message["attempt"]] = message["plan"]
            elif "ack" in message:
                report.acked.add(message["ack"])
            else:
                report.error = message["error"]
        return report


def _wait_for_ready(fd: int, buffer: bytearray) -> None:
    deadline = time.monotonic() + TIMEOUT
    while b'{"ready": true}\n' not in buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return  # the child died: its message says why
        buffer += chunk


def _wait_for_growth(path: Path, size: int) -> None:
    """Spin until the child's write has begun to extend the file."""
    deadline = time.monotonic() + TIMEOUT
    while path.stat().st_size <= size and time.monotonic() < deadline:
        pass


def _drain(fd: int, buffer: bytearray) -> None:
    while chunk := os.read(fd, 1 << 16):
        buffer += chunk


def _kill_a_writer(
    opener: Opener, path: Path, rng: random.Random, cycle: int, where: str, long: bool
) -> _Report:
    """Fork a writer, SIGKILL it at a random moment, and return what it reported."""
    child_seed = rng.randrange(2**32)
    early = not long and rng.random() < EARLY_KILL_SHARE
    delay = rng.uniform(0, MAX_KILL_DELAY / 4 if early else MAX_KILL_DELAY)
    size = path.stat().st_size if path.exists() else 0
    pipe = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:
            _child(opener, path, pipe, child_seed, cycle, long)
        os.close(pipe[1])
        buffer = bytearray()
        try:
            if not early:
                _wait_for_ready(pipe[0], buffer)
            if long:
                _wait_for_growth(path, size)
            else:
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
    assert os.WIFSIGNALED(status), (
        f"{where}: the writer ended before the parent killed it (wait status {status})"
    )
    assert os.WTERMSIG(status) == signal.SIGKILL, f"{where}: the writer died of another signal"
    assert early or report.ready, f"{where}: the writer never opened the store"
    return report


@dataclass
class _Ledger:
    """Everything the parent knows about the store across kills."""

    seed: int
    plans: dict[str, Plan] = field(default_factory=dict)  # every batch ever attempted
    acked: set[str] = field(default_factory=set)  # every batch acknowledged
    seen: list[tuple[int, str, int, str]] = field(default_factory=list)  # last check's records
    in_flight: int = 0  # kills that caught an append between its attempt and its ack
    torn_by_kill: int = 0  # journal kills that left a line without its newline

    def versions(self) -> dict[str, int]:
        result = dict.fromkeys(STREAMS, 0)
        for _, stream, version, _ in self.seen:
            result[stream] = version
        return result


def _check(
    store: _Store, ledger: _Ledger, may_appear: set[str], where: str, *, thorough: bool = False
) -> None:
    """The store holds exactly what the ledger allows: acknowledged, whole, contiguous.

    ``thorough`` also compares ``stream_ids`` and one stream's ``read_stream`` with
    ``read_all`` (one stream per check keeps the journal's line cache from thrashing).
    """
    records = list(store.read_all())
    rows = [(r.position or 0, r.stream_id, r.version, str(r.payload["batch"])) for r in records]
    assert rows[: len(ledger.seen)] == ledger.seen, (
        f"{where}: records stored before this kill changed or vanished"
    )
    positions = [row[0] for row in rows]
    assert all(a < b for a, b in itertools.pairwise(positions)), (
        f"{where}: read_all positions do not increase: {positions}"
    )
    streams: dict[str, list[EventRecord]] = {}
    batches: dict[str, Plan] = {}
    for record in records:
        streams.setdefault(record.stream_id, []).append(record)
        found = batches.setdefault(str(record.payload["batch"]), {})
        found.setdefault(record.stream_id, []).append(record.version)
    for stream, stream_records in streams.items():
        versions = [record.version for record in stream_records]
        assert versions == list(range(1, len(versions) + 1)), (
            f"{where}: stream {stream!r} versions are not contiguous from 1: {versions}"
        )
    if thorough:
        assert set(store.stream_ids()) == set(streams), (
            f"{where}: stream_ids() disagrees with read_all"
        )
        stream = STREAMS[len(ledger.seen) % len(STREAMS)]
        assert store.read_stream(stream) == streams.get(stream, []), (
            f"{where}: read_stream({stream!r}) disagrees with read_all"
        )
    for batch, found in batches.items():
        assert batch in ledger.plans, f"{where}: batch {batch!r} was never written"
        assert found == ledger.plans[batch], (
            f"{where}: batch {batch!r} is half there: {found}, written as {ledger.plans[batch]}"
        )
    lost = sorted(ledger.acked - set(batches))
    assert not lost, f"{where}: acknowledged batches are missing: {lost}"
    before = {row[3] for row in ledger.seen}
    risen = sorted(set(batches) - before - ledger.acked - may_appear)
    assert not risen, f"{where}: batches that were absent or torn have appeared: {risen}"
    ledger.seen = rows


def _tear_journal_tail(path: Path, ledger: _Ledger, rng: random.Random, cycle: int) -> None:
    """Leave a line cut short at the end, as a crash in the middle of ``write`` would."""
    batch = f"c{cycle}-torn"
    versions = ledger.versions()
    streams = rng.sample(STREAMS, 2)
    plan = {stream: [versions[stream] + 1] for stream in streams}
    ledger.plans[batch] = plan
    line = encode_line([r for s in streams for r in _records(rng, batch, s, plan[s])])
    cut = len(line) - 1 if rng.random() < 0.3 else rng.randint(1, len(line) - 2)
    with path.open("ab") as journal:
        journal.write(line[:cut])


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as journal:
        journal.seek(-1, os.SEEK_END)
        return journal.read(1) == b"\n"


def _survive_a_kill(
    opener: Opener,
    path: Path,
    rng: random.Random,
    ledger: _Ledger,
    cycle: int,
    *,
    journal: bool,
    long: bool = False,
) -> None:
    """Kill a writer, check the reopened store against the ledger, and append to it."""
    where = f"seed {ledger.seed} (OPPCORE_CRASH_SEED), kill {cycle}"
    report = _kill_a_writer(opener, path, rng, cycle, where, long)
    ledger.plans.update(report.attempted)
    ledger.acked |= report.acked
    ledger.in_flight += bool(set(report.attempted) - report.acked)
    tear = False
    if journal and path.exists() and path.stat().st_size:
        torn = not _ends_with_newline(path)
        ledger.torn_by_kill += torn
        tear = not torn and not long and rng.random() < TORN_TAIL_SHARE
    try:
        store = opener(path)
    except Exception as exc:
        raise AssertionError(f"{where}: the store does not open after the kill") from exc
    try:
        _check(store, ledger, set(report.attempted), where, thorough=True)
        if tear:
            store.close()
            _tear_journal_tail(path, ledger, rng, cycle)
            store = opener(path)
            _check(store, ledger, set(), f"{where}, after tearing the last line")
        # A new append works (the next check finds it); with a torn tail it cuts that first.
        batch = f"c{cycle}-parent"
        versions = ledger.versions()
        streams = rng.sample(STREAMS, rng.randint(1, 3))
        plan = {stream: [versions[stream] + 1] for stream in streams}
        ledger.plans[batch] = plan
        store.append_many([(s, _records(rng, batch, s, plan[s]), versions[s]) for s in streams])
        ledger.acked.add(batch)
    finally:
        store.close()
    if journal:
        assert _ends_with_newline(path), f"{where}: the journal still ends in a torn line"


def _reopen_and_check(opener: Opener, path: Path, ledger: _Ledger) -> None:
    store = opener(path)
    with contextlib.closing(store):
        _check(store, ledger, set(), f"seed {ledger.seed}, reopened at the end", thorough=True)


def _crash_many_times(opener: Opener, path: Path, *, journal: bool) -> None:
    seed = _seed()
    rng = random.Random(seed)
    ledger = _Ledger(seed)
    for cycle in range(1, KILLS + 1):
        _survive_a_kill(opener, path, rng, ledger, cycle, journal=journal)
    _reopen_and_check(opener, path, ledger)
    assert ledger.in_flight >= KILLS // 4, (
        f"seed {seed}: only {ledger.in_flight} of {KILLS} kills caught an append in flight; "
        "the test is not exercising crashes in the middle of appends"
    )


def test_a_journal_writer_killed_at_random_moments_loses_no_acknowledged_append(
    tmp_path: Path,
) -> None:
    """SIGKILLed mid-append 150 times, the journal keeps every acknowledged batch, whole."""
    _crash_many_times(_open_journal, tmp_path / "crash.jsonl", journal=True)


def test_an_sqlite_writer_killed_at_random_moments_loses_no_acknowledged_append(
    tmp_path: Path,
) -> None:
    """SIGKILLed mid-append 150 times, the database keeps every acknowledged batch, whole."""
    _crash_many_times(_open_sqlite, tmp_path / "crash.db", journal=False)


def test_a_journal_writer_killed_while_writing_a_long_line_leaves_a_tail_that_is_cut(
    tmp_path: Path,
) -> None:
    """A kill in the middle of write() leaves a torn last line: ignored on open, cut on append."""
    path = tmp_path / "long.jsonl"
    seed = _seed()
    rng = random.Random(seed)
    ledger = _Ledger(seed)
    _survive_a_kill(_open_journal, path, rng, ledger, 0, journal=True)  # some ordinary data
    for cycle in range(1, LONG_LINE_KILLS + 1):
        _survive_a_kill(_open_journal, path, rng, ledger, cycle, journal=True, long=True)
    _reopen_and_check(_open_journal, path, ledger)
    assert ledger.torn_by_kill >= 1, (
        f"seed {seed}: none of {LONG_LINE_KILLS} kills during a long write() tore the line"
    )

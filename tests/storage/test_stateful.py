"""Each event store, driven at random, against a model that is a dict of lists of records.

The model maps each stream id to its stored records (positions included), in the order the
streams were created; the global order is the records sorted by position.  Appends at the
right and the wrong expected version, batches, reads with ``after_version``,
``after_position`` and ``limit``, and (for the file stores) closing and reopening are all
checked, and after every step the whole store must agree with the model.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from oppcore import ConcurrencyError
from oppcore.storage import (
    BatchEventStore,
    EventRecord,
    JsonEventStore,
    MemoryEventStore,
    SqliteEventStore,
)

AT = "2026-01-05T09:00:00+07:00"
STREAMS = ("a", "b", "ดีล-๑", "c d")

#: 50 runs of 40 steps each: the three machines take 10 to 20 seconds together on 2 cores (fsync).
RUN = settings(max_examples=50, stateful_step_count=40)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
payloads = st.dictionaries(st.text(max_size=5), json_values, max_size=3)
streams = st.sampled_from(STREAMS)
#: How far the expected version is from the stream's real one: mostly right, sometimes not.
offsets = st.sampled_from((0, 0, 0, -1, 1, -2, 3))
kinds = st.sampled_from(("Noted", "Opened", "บันทึก"))


class StoreMachine(RuleBasedStateMachine):
    """Drives one store; subclasses say which."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="oppcore-stateful-"))
        self.model: dict[str, list[EventRecord]] = {}
        self.positions = 0
        self.store = self.open_store()

    def open_store(self) -> BatchEventStore:
        raise NotImplementedError

    def close_store(self) -> None:
        closer = getattr(self.store, "close", None)
        if callable(closer):
            closer()

    def teardown(self) -> None:
        try:
            self.close_store()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    # -- the model --------------------------------------------------------------------

    def version(self, stream_id: str) -> int:
        return len(self.model.get(stream_id, ()))

    def everything(self) -> list[EventRecord]:
        return sorted(
            (item for stored in self.model.values() for item in stored),
            key=lambda item: item.position or 0,
        )

    def commit(self, stream_id: str, batch: list[EventRecord]) -> None:
        for item in batch:
            self.positions += 1
            stored = attrs.evolve(item, position=self.positions)
            self.model.setdefault(stream_id, []).append(stored)

    @staticmethod
    def make(
        stream_id: str, expected: int, bodies: list[dict[str, Any]], kind: str
    ) -> list[EventRecord]:
        return [
            EventRecord(stream_id, expected + number, kind, AT, AT, body)
            for number, body in enumerate(bodies, start=1)
        ]

    # -- rules ------------------------------------------------------------------------

    @rule(stream_id=streams, offset=offsets, bodies=st.lists(payloads, max_size=3), kind=kinds)
    def append(self, stream_id: str, offset: int, bodies: list[dict[str, Any]], kind: str) -> None:
        actual = self.version(stream_id)
        expected = max(0, actual + offset)
        batch = self.make(stream_id, expected, bodies, kind)
        if expected != actual:
            with pytest.raises(ConcurrencyError) as caught:
                self.store.append(stream_id, batch, expected_version=expected)
            error = caught.value
            assert (error.stream_id, error.expected, error.actual) == (stream_id, expected, actual)
        else:
            assert self.store.append(stream_id, batch, expected_version=expected) == actual + len(
                batch
            )
            self.commit(stream_id, batch)

    @rule(
        plans=st.lists(
            st.tuples(streams, offsets, st.lists(payloads, max_size=2), kinds),
            max_size=3,
            unique_by=lambda plan: plan[0],
        )
    )
    def append_many(self, plans: list[tuple[str, int, list[dict[str, Any]], str]]) -> None:
        batches = []
        conflicts = []
        for stream_id, offset, bodies, kind in plans:
            actual = self.version(stream_id)
            expected = max(0, actual + offset)
            batches.append((stream_id, self.make(stream_id, expected, bodies, kind), expected))
            if expected != actual:
                conflicts.append((stream_id, expected, actual))
        if conflicts:
            with pytest.raises(ConcurrencyError) as caught:
                self.store.append_many(batches)
            error = caught.value
            assert (error.stream_id, error.expected, error.actual) in conflicts
        else:
            versions = self.store.append_many(batches)
            assert versions == [expected + len(batch) for _, batch, expected in batches]
            for stream_id, batch, _ in batches:
                self.commit(stream_id, batch)

    @rule(stream_id=streams, after=st.integers(min_value=0, max_value=10))
    def read_stream(self, stream_id: str, after: int) -> None:
        assert (
            self.store.read_stream(stream_id, after_version=after)
            == self.model.get(stream_id, [])[after:]
        )

    @rule(
        after=st.integers(min_value=0, max_value=40),
        limit=st.none() | st.integers(min_value=0, max_value=40),
    )
    def read_all(self, after: int, limit: int | None) -> None:
        end = None if limit is None else after + limit
        got = list(self.store.read_all(after_position=after, limit=limit))
        assert got == self.everything()[after:end]

    @rule()
    def stream_ids(self) -> None:
        assert list(self.store.stream_ids()) == list(self.model)

    @invariant()
    def agrees_with_the_model(self) -> None:
        everything = list(self.store.read_all())
        assert everything == self.everything()
        assert [item.position for item in everything] == list(range(1, len(everything) + 1))
        assert list(self.store.stream_ids()) == list(self.model)
        for stream_id in STREAMS:
            assert self.store.read_stream(stream_id) == self.model.get(stream_id, [])


class FileStoreMachine(StoreMachine):
    """A store kept in a file, which can also be closed and opened again."""

    @rule()
    def reopen(self) -> None:
        self.close_store()
        self.store = self.open_store()


class MemoryMachine(StoreMachine):
    def open_store(self) -> BatchEventStore:
        return MemoryEventStore()


class JsonMachine(FileStoreMachine):
    def open_store(self) -> BatchEventStore:
        return JsonEventStore(self.folder / "s.jsonl")


class SqliteMachine(FileStoreMachine):
    def open_store(self) -> BatchEventStore:
        return SqliteEventStore(self.folder / "s.db")


def test_the_memory_store_agrees_with_the_model() -> None:
    """Random appends, batches and reads on MemoryEventStore match a dict of lists."""
    run_state_machine_as_test(MemoryMachine, settings=RUN)


def test_the_json_lines_store_agrees_with_the_model_across_reopens() -> None:
    """Random appends, batches, reads and reopens on JsonEventStore match a dict of lists."""
    run_state_machine_as_test(JsonMachine, settings=RUN)


def test_the_sqlite_store_agrees_with_the_model_across_reopens() -> None:
    """Random appends, batches, reads and reopens on SqliteEventStore match a dict of lists."""
    run_state_machine_as_test(SqliteMachine, settings=RUN)

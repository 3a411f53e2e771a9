"""The event store contract: one reusable suite that every ``EventStore`` backend must pass.

``tests/storage/test_contract.py`` runs it against the memory, JSON Lines and SQLite stores.
Someone writing their own backend runs it the same way; see ``EventStoreContract``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest

from oppcore import (
    Campaign,
    ConcurrencyError,
    FixedClock,
    Lead,
    LineItem,
    Money,
    NotFoundError,
    Opportunity,
    OpportunityNotFound,
    Outcome,
    Pipeline,
    Repository,
    Stage,
    TransitionError,
    ValidationError,
)
from oppcore.storage import BatchEventStore, EventRecord, EventStore

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone(timedelta(hours=7)))
AT = T0.isoformat()

#: A payload that exercises what JSON can hold: Thai text, escapes, nesting, every scalar.
NESTED_PAYLOAD: dict[str, Any] = {
    "name": "บริษัท สยามการค้า จำกัด (มหาชน)",
    "note": 'ราคา ๑,๒๓๔.๕๐ บาท; line\nbreak, tab\t, "quotes", \\ backslash, \u2028 separator, 🙏',
    "amount": {"amount": "1234.50", "currency": "THB"},
    "lines": [
        {"product": "ที่ปรึกษา", "quantity": 3, "discount": 0.125, "tags": ["ด่วน", None, True]},
        {"product": "ติดตั้ง", "quantity": 1, "discount": 0, "tags": [False]},
    ],
    "deep": {"a": {"b": {"c": {"d": ["ลึกมาก", {"e": []}]}}}},
    "empty_object": {},
    "empty_list": [],
    "big": 2**53 + 1,
    "negative": -7,
    "real": -1234.5e-3,
    "nothing": None,
}


def record(
    stream_id: str, version: int, payload: Mapping[str, Any] | None = None, kind: str = "Noted"
) -> EventRecord:
    """An unstored record (no position) for ``stream_id`` at ``version``."""
    body = {"n": version, "stream": stream_id} if payload is None else payload
    return EventRecord(stream_id, version, kind, AT, AT, body)


def records(stream_id: str, first: int, count: int) -> list[EventRecord]:
    """``count`` records for ``stream_id`` with versions ``first, first + 1, ...``."""
    return [record(stream_id, version) for version in range(first, first + count)]


def unstored(stored: list[EventRecord]) -> list[EventRecord]:
    """The records without the positions a store gave them."""
    return [attrs.evolve(item, position=None) for item in stored]


def thai_pipeline() -> Pipeline:
    """A custom pipeline: Thai keys and labels, explicit transitions, a required field."""
    return Pipeline(
        id="ขายส่ง-ภาคเหนือ",
        name="ขายส่ง ภาคเหนือ",
        stages=(
            Stage("ติดต่อ", "Contact", 20, labels={"th": "ติดต่อลูกค้า", "en": "Contact"}),
            Stage("เสนอราคา", "Quote", "62.5", labels={"th": "เสนอราคา"}, stale_after_days=14),
            Stage("ต่อรอง", "Negotiate", 80, labels={"th": "ต่อรองราคา"}, required=("amount",)),
            Stage("ปิดการขาย", "Won", 100, Outcome.WON, labels={"th": "ปิดการขายได้"}),
            Stage("ไม่สำเร็จ", "Lost", 0, Outcome.LOST, labels={"th": "ไม่สำเร็จ"}),
        ),
        transitions={
            "ติดต่อ": ("เสนอราคา", "ไม่สำเร็จ"),
            "เสนอราคา": ("ต่อรอง", "ไม่สำเร็จ"),
            "ต่อรอง": ("ปิดการขาย", "ไม่สำเร็จ", "เสนอราคา"),
        },
        keep_manual_probability=True,
    )


#: A lead, a campaign and a pipeline, each with the getter that reads it back.
SNAPSHOTS: dict[str, tuple[Callable[[], Any], Callable[[Repository, str], Any]]] = {
    "lead": (lambda: Lead("l1", "ลูกค้า"), Repository.get_lead),
    "campaign": (lambda: Campaign("c1", "แคมเปญ"), Repository.get_campaign),
    "pipeline": (thai_pipeline, Repository.get_pipeline),
}


def stored_values(store: EventStore) -> list[EventRecord]:
    """The records of deals, leads, campaigns and pipelines: every record but the pipeline
    definitions deals reference (store format 2)."""
    return [r for r in store.read_all() if not r.stream_id.startswith("definition:")]


class EventStoreContract(abc.ABC):
    """The behaviour every event store promises, as a pytest suite to inherit.

    To check a backend of your own, subclass this in a ``test_*.py`` file under a name pytest
    collects (it must start with ``Test``) and implement the two hooks::

        from tests.storage.contract import EventStoreContract

        class TestMyStore(EventStoreContract):
            def make_store(self, tmp_path: Path) -> EventStore:
                return MyStore(tmp_path / "events")          # a new, empty store

            def reopen(self, store: EventStore, tmp_path: Path) -> EventStore:
                store.close()                                 # close the old one ...
                return MyStore(tmp_path / "events")          # ... and open the same data

    pytest then collects every ``test_*`` method below and runs it against ``MyStore``.

    ``make_store`` gets a fresh ``tmp_path`` per test.  ``reopen`` must close ``store`` and
    return a new store on the same data; the default, for stores that keep their data in
    the object itself (such as ``MemoryEventStore``), returns ``store`` unchanged.  Whatever
    store a test ends with is closed afterwards (if it has ``close()``).  Tests of
    ``append_many`` are skipped for a store that is not a ``BatchEventStore``.  For pytest's
    detailed assertion messages, call ``pytest.register_assert_rewrite("tests.storage.contract")``
    before the import, as ``tests/storage/test_contract.py`` does.
    """

    _live: EventStore | None = None

    # -- the hooks a backend implements -------------------------------------------------

    @abc.abstractmethod
    def make_store(self, tmp_path: Path) -> EventStore:
        """A new, empty store keeping its data under ``tmp_path``."""

    def reopen(self, store: EventStore, tmp_path: Path) -> EventStore:
        """Close ``store`` and return a new store on the same data (here: the same store)."""
        return store

    # -- plumbing -----------------------------------------------------------------------

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[EventStore]:
        """A fresh store from ``make_store``; whichever store the test ends with is closed."""
        self._live = self.make_store(tmp_path)
        yield self._live
        closer = getattr(self._live, "close", None)
        if callable(closer):
            closer()

    @pytest.fixture
    def clock(self) -> FixedClock:
        """A clock at ``T0`` that moves only when told."""
        return FixedClock(T0)

    def _reopen(self, store: EventStore, tmp_path: Path) -> EventStore:
        self._live = self.reopen(store, tmp_path)
        return self._live

    @staticmethod
    def _batch(store: EventStore) -> BatchEventStore:
        if not isinstance(store, BatchEventStore):
            pytest.skip(f"{type(store).__name__} has no append_many")
        return store

    @staticmethod
    def _snapshot(store: EventStore) -> tuple[list[EventRecord], list[str]]:
        return list(store.read_all()), list(store.stream_ids())

    # -- empty appends and unknown streams ----------------------------------------------

    def test_an_empty_append_to_a_new_stream_returns_zero_and_writes_nothing(
        self, store: EventStore
    ) -> None:
        """Appending no records to an unknown stream at version 0 returns 0 and stores nothing."""
        assert store.append("nobody", [], expected_version=0) == 0
        assert self._snapshot(store) == ([], [])
        assert store.read_stream("nobody") == []

    def test_an_empty_append_to_an_existing_stream_returns_its_version_and_writes_nothing(
        self, store: EventStore
    ) -> None:
        """Appending no records at the stream's version returns that version and adds nothing."""
        store.append("a", records("a", 1, 2), expected_version=0)
        before = self._snapshot(store)
        assert store.append("a", [], expected_version=2) == 2
        assert self._snapshot(store) == before

    @pytest.mark.parametrize(("stored", "expected"), [(0, 1), (2, 1), (2, 3), (2, 0)])
    def test_an_empty_append_with_the_wrong_version_raises_concurrency_error(
        self, store: EventStore, stored: int, expected: int
    ) -> None:
        """Appending no records at the wrong version is a conflict, and nothing changes."""
        if stored:
            store.append("a", records("a", 1, stored), expected_version=0)
        before = self._snapshot(store)
        with pytest.raises(ConcurrencyError) as caught:
            store.append("a", [], expected_version=expected)
        assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == (
            "a",
            expected,
            stored,
        )
        assert self._snapshot(store) == before

    def test_an_unknown_stream_reads_as_empty_at_version_zero(self, store: EventStore) -> None:
        """An unknown stream reads as [] at any after_version, and conflicts report version 0."""
        store.append("known", records("known", 1, 3), expected_version=0)
        assert store.read_stream("unknown") == []
        assert store.read_stream("unknown", after_version=5) == []
        with pytest.raises(ConcurrencyError) as caught:
            store.append("unknown", [record("unknown", 2)], expected_version=1)
        assert caught.value.actual == 0

    # -- reading back ---------------------------------------------------------------------

    def test_records_come_back_in_order_and_exactly_equal(self, store: EventStore) -> None:
        """Records read back equal what was appended, Thai and nested JSON included, in order."""
        first = [record("ดีล-1", 1, NESTED_PAYLOAD, kind="Opened"), record("ดีล-1", 2)]
        second = [record("ดีล-1", 3, {"ข้อความ": "สวัสดีครับ", "list": [[], [{}], [[1]]]})]
        assert store.append("ดีล-1", first, expected_version=0) == 2
        assert store.append("ดีล-1", second, expected_version=2) == 3
        stored = store.read_stream("ดีล-1")
        assert unstored(stored) == first + second
        assert stored[0].payload == NESTED_PAYLOAD
        positions = [item.position or 0 for item in stored]
        assert all(isinstance(item.position, int) and item.position > 0 for item in stored)
        assert positions == sorted(set(positions))

    @pytest.mark.parametrize("after", [0, 1, 3, 4, 5, 100])
    def test_read_stream_after_version_returns_only_later_records(
        self, store: EventStore, after: int
    ) -> None:
        """``after_version`` leaves out the records at or below it, and past the end gives []."""
        appended = records("s", 1, 4)
        store.append("s", appended[:2], expected_version=0)
        store.append("other", records("other", 1, 1), expected_version=0)
        store.append("s", appended[2:], expected_version=2)
        assert unstored(store.read_stream("s", after_version=after)) == appended[after:]

    def test_read_all_positions_run_from_one_without_gaps_in_append_order(
        self, store: EventStore
    ) -> None:
        """``read_all`` gives every record once, in append order, at positions 1, 2, 3, ..."""
        appended: list[EventRecord] = []
        versions = {"a": 0, "b": 0, "c": 0}
        for stream_id, count in [("a", 2), ("b", 1), ("a", 1), ("c", 3), ("b", 2), ("a", 1)]:
            batch = records(stream_id, versions[stream_id] + 1, count)
            store.append(stream_id, batch, expected_version=versions[stream_id])
            versions[stream_id] += count
            appended += batch
        everything = list(store.read_all())
        assert [item.position for item in everything] == list(range(1, len(appended) + 1))
        assert unstored(everything) == appended
        for stream_id in versions:
            assert store.read_stream(stream_id) == [
                item for item in everything if item.stream_id == stream_id
            ]

    @pytest.mark.parametrize(
        ("after", "limit"),
        [
            (0, None),
            (0, 0),
            (0, 1),
            (0, 3),
            (2, None),
            (2, 0),
            (2, 2),
            (2, 100),
            (6, None),
            (6, 1),
            (7, None),
            (7, 0),
            (50, 5),
            (5, None),
            (5, 1),
        ],
    )
    def test_read_all_after_position_and_limit_slice_the_global_order(
        self, store: EventStore, after: int, limit: int | None
    ) -> None:
        """``after_position`` and ``limit`` (0 and past the end included) slice the global order."""
        store.append("a", records("a", 1, 3), expected_version=0)
        store.append("b", records("b", 1, 2), expected_version=0)
        store.append("a", records("a", 4, 2), expected_version=3)
        everything = list(store.read_all())
        assert len(everything) == 7
        end = None if limit is None else after + limit
        assert list(store.read_all(after_position=after, limit=limit)) == everything[after:end]

    def test_read_all_of_an_empty_store_is_empty(self, store: EventStore) -> None:
        """An empty store reads as nothing, whatever the position and limit."""
        assert list(store.read_all()) == []
        assert list(store.read_all(after_position=3, limit=2)) == []
        assert list(store.stream_ids()) == []

    def test_stream_ids_are_in_creation_order(self, store: EventStore) -> None:
        """``stream_ids`` lists each stream once, in the order the streams were created."""
        store.append("ข", records("ข", 1, 1), expected_version=0)
        store.append("a", records("a", 1, 2), expected_version=0)
        store.append("ข", records("ข", 2, 1), expected_version=1)
        store.append("c", records("c", 1, 1), expected_version=0)
        store.append("a", records("a", 3, 1), expected_version=2)
        assert list(store.stream_ids()) == ["ข", "a", "c"]

    # -- conflicts and bad input ---------------------------------------------------------

    @pytest.mark.parametrize("expected", [0, 1, 3, 4])
    def test_a_conflicting_append_raises_concurrency_error_and_writes_nothing(
        self, store: EventStore, expected: int
    ) -> None:
        """An append at the wrong version raises ConcurrencyError naming both versions; nothing is written."""
        store.append("a", records("a", 1, 2), expected_version=0)
        store.append("b", records("b", 1, 1), expected_version=0)
        before = self._snapshot(store)
        with pytest.raises(ConcurrencyError) as caught:
            store.append("a", records("a", expected + 1, 2), expected_version=expected)
        assert caught.value.stream_id == "a"
        assert caught.value.expected == expected
        assert caught.value.actual == 2
        assert self._snapshot(store) == before

    @pytest.mark.parametrize(
        "versions",
        [(2,), (1, 1), (1, 3), (0,), (-1,)],
        ids=["starts-at-2", "repeats", "skips", "zero", "negative"],
    )
    def test_records_with_wrong_versions_are_a_validation_error(
        self, store: EventStore, versions: tuple[int, ...]
    ) -> None:
        """Record versions that do not follow the expected version are refused, and nothing is written."""
        store.append("other", records("other", 1, 1), expected_version=0)
        before = self._snapshot(store)
        with pytest.raises(ValidationError):
            store.append("s", [record("s", v) for v in versions], expected_version=0)
        assert self._snapshot(store) == before

    def test_records_for_another_stream_are_a_validation_error(self, store: EventStore) -> None:
        """A record whose stream id is not the stream appended to is refused, and nothing is written."""
        with pytest.raises(ValidationError):
            store.append("a", [record("a", 1), record("b", 2)], expected_version=0)
        assert self._snapshot(store) == ([], [])

    @pytest.mark.parametrize(
        "payload",
        [{"when": date(2026, 1, 5)}, {"amount": Decimal("1.5")}, {"x": float("nan")}],
        ids=["date", "decimal", "nan"],
    )
    def test_a_payload_that_is_not_json_is_a_validation_error(
        self, store: EventStore, payload: dict[str, Any]
    ) -> None:
        """A payload JSON cannot hold is refused by every backend alike, and nothing is written."""
        with pytest.raises(ValidationError):
            store.append("a", [record("a", 1, payload)], expected_version=0)
        assert self._snapshot(store) == ([], [])

    # -- append_many ----------------------------------------------------------------------

    def test_append_many_writes_every_batch_and_returns_the_new_versions(
        self, store: EventStore
    ) -> None:
        """One ``append_many`` stores every batch, in order, and returns each stream's new version."""
        batch_store = self._batch(store)
        batch_store.append("a", records("a", 1, 1), expected_version=0)
        new = [records("b", 1, 2), records("a", 2, 2), records("c", 1, 1)]
        versions = batch_store.append_many([("b", new[0], 0), ("a", new[1], 1), ("c", new[2], 0)])
        assert versions == [2, 3, 1]
        assert unstored(list(batch_store.read_all(after_position=1))) == [
            item for batch in new for item in batch
        ]
        assert list(batch_store.stream_ids()) == ["a", "b", "c"]

    @pytest.mark.parametrize("bad", [0, 1, 2], ids=["first", "middle", "last"])
    def test_append_many_with_one_conflicting_stream_writes_none_of_the_batch(
        self, store: EventStore, bad: int
    ) -> None:
        """When one stream of a batch conflicts, ConcurrencyError names it and no stream is written."""
        batch_store = self._batch(store)
        batch_store.append("a", records("a", 1, 1), expected_version=0)
        batch_store.append("b", records("b", 1, 2), expected_version=0)
        before = self._snapshot(batch_store)
        batches: list[tuple[str, list[EventRecord], int]] = [
            ("a", records("a", 2, 1), 1),
            ("new", records("new", 1, 3), 0),
            ("b", records("b", 3, 1), 2),
        ]
        stream_id, _, expected = batches[bad]
        batches[bad] = (stream_id, records(stream_id, expected + 6, 1), expected + 5)
        with pytest.raises(ConcurrencyError) as caught:
            batch_store.append_many(batches)
        assert caught.value.stream_id == stream_id
        assert caught.value.expected == expected + 5
        assert caught.value.actual == expected
        assert self._snapshot(batch_store) == before

    def test_append_many_with_an_invalid_record_writes_nothing(self, store: EventStore) -> None:
        """A batch holding one record with a wrong version is refused whole."""
        batch_store = self._batch(store)
        with pytest.raises(ValidationError):
            batch_store.append_many([("a", records("a", 1, 2), 0), ("b", [record("b", 2)], 0)])
        assert self._snapshot(batch_store) == ([], [])

    def test_append_many_naming_a_stream_twice_is_a_validation_error(
        self, store: EventStore
    ) -> None:
        """Two batches for one stream in one write are refused, and nothing is written."""
        batch_store = self._batch(store)
        with pytest.raises(ValidationError):
            batch_store.append_many([("a", records("a", 1, 1), 0), ("a", records("a", 2, 1), 1)])
        assert self._snapshot(batch_store) == ([], [])

    # -- reopening ------------------------------------------------------------------------

    def test_close_and_reopen_give_identical_contents(
        self, store: EventStore, tmp_path: Path
    ) -> None:
        """A reopened store reads exactly what the closed one did, and appends carry on after it."""
        store.append("ดีล", [record("ดีล", 1, NESTED_PAYLOAD)], expected_version=0)
        store.append("b", records("b", 1, 3), expected_version=0)
        store.append("ดีล", records("ดีล", 2, 2), expected_version=1)
        everything, ids = self._snapshot(store)
        streams = {stream_id: store.read_stream(stream_id) for stream_id in ids}
        reopened = self._reopen(store, tmp_path)
        assert self._snapshot(reopened) == (everything, ids)
        assert {stream_id: reopened.read_stream(stream_id) for stream_id in ids} == streams
        assert list(reopened.read_all(after_position=2, limit=2)) == everything[2:4]
        assert reopened.append("b", records("b", 4, 1), expected_version=3) == 4
        with pytest.raises(ConcurrencyError):
            reopened.append("ดีล", records("ดีล", 3, 1), expected_version=2)
        last = list(reopened.read_all())[-1]
        assert (last.stream_id, last.version, last.position) == ("b", 4, len(everything) + 1)
        again = self._reopen(reopened, tmp_path)
        assert list(again.read_all()) == [*everything, last]

    # -- through the Repository ------------------------------------------------------------

    def test_a_custom_pipeline_with_thai_labels_survives_reopen(
        self, store: EventStore, tmp_path: Path, clock: FixedClock
    ) -> None:
        """A saved custom pipeline comes back equal, labels, transitions and all."""
        pipeline = thai_pipeline()
        saved = Repository(store, clock=clock).save(pipeline)
        assert (saved, saved.version, pipeline.version) == (pipeline, 1, 0)
        repo = Repository(self._reopen(store, tmp_path), clock=clock)
        loaded = repo.get_pipeline("ขายส่ง-ภาคเหนือ")
        assert (loaded, loaded.version) == (pipeline, 1)
        assert loaded.stage("ติดต่อ").label_for("th") == "ติดต่อลูกค้า"
        assert loaded.transitions == pipeline.transitions
        assert loaded.keep_manual_probability is True
        assert repo.pipelines() == [pipeline]

    def test_opportunities_leads_and_campaigns_with_thai_names_survive_reopen(
        self, store: EventStore, tmp_path: Path, clock: FixedClock
    ) -> None:
        """Opportunities, leads and campaigns saved with Thai text read back equal after reopening."""
        repo = Repository(store, clock=clock)
        campaign = Campaign(
            "สงกรานต์-2026",
            "แคมเปญสงกรานต์",
            type="อีเมล",
            start=date(2026, 4, 1),
            end=date(2026, 4, 30),
            budgeted_cost=Money("150000.00", "THB"),
            actual_cost=Money("98765.43", "THB"),
        )
        lead = Lead(
            "L-๑",
            "สมชาย ใจดี",
            company="บริษัท ตัวอย่าง จำกัด",
            source="เว็บไซต์",
            campaign_id=campaign.id,
            created_at=T0,
        )
        opp = lead.convert(
            pipeline=thai_pipeline(),
            id="ดีล-เชียงใหม่",
            amount=Money("37501.50", "THB"),
            description="ลูกค้าขอใบเสนอราคาภายในสัปดาห์นี้",
            clock=clock,
        )
        clock.advance(timedelta(days=1))
        opp = opp.move_to("เสนอราคา", clock=clock).move_to("ต่อรอง", clock=clock)
        clock.advance(timedelta(days=1))
        opp = opp.update(name="ดีลใหญ่ เชียงใหม่", probability=75, clock=clock)
        other = Opportunity.open(name="งานเล็ก", id="ดีล-2", clock=clock).lose(
            reason="ราคาสูงเกินไป", clock=clock
        )
        for value in (campaign, lead, opp, other):
            repo.save(value)
        repo = Repository(self._reopen(store, tmp_path), clock=clock)
        assert repo.get("ดีล-เชียงใหม่") == opp
        assert repo.get("ดีล-2") == other
        assert repo.get("ดีล-2").lost_reason == "ราคาสูงเกินไป"
        assert repo.get_lead("L-๑") == lead
        assert repo.get_campaign("สงกรานต์-2026") == campaign
        assert {o.id: o for o in repo.opportunities()} == {opp.id: opp, other.id: other}
        assert repo.leads() == [lead]
        assert repo.campaigns() == [campaign]

    def test_an_opportunity_with_line_items_reads_back_equal(
        self, store: EventStore, clock: FixedClock
    ) -> None:
        """An opportunity priced by line items (products and services) is read back equal."""
        repo = Repository(store, clock=clock)
        opp = Opportunity.open(
            name="ดีลสินค้า",
            id="lines",
            line_items=[LineItem("สินค้า", Money("10.00", "THB"), quantity=2, discount=5, id="l1")],
            clock=clock,
        )
        opp = opp.add_line_item(LineItem("บริการ", Money("3.50", "THB"), id="l2"), clock=clock)
        repo.save(opp)
        assert repo.get("lines") == opp
        assert repo.get("lines").amount == Money("22.50", "THB")

    def test_a_reloaded_opportunity_keeps_its_pipelines_transitions(
        self, store: EventStore, tmp_path: Path, clock: FixedClock
    ) -> None:
        """A deal read back after reopening still follows its custom pipeline's transitions."""
        opp = Opportunity.open(name="ดีลทดสอบ", pipeline=thai_pipeline(), id="o", clock=clock)
        Repository(store, clock=clock).save(opp)
        loaded = Repository(self._reopen(store, tmp_path), clock=clock).get("o")
        with pytest.raises(TransitionError):
            loaded.move_to("ปิดการขาย", clock=clock)
        assert loaded.move_to("เสนอราคา", clock=clock).stage.label_for("th") == "เสนอราคา"

    def test_save_stores_only_the_events_not_yet_stored(
        self, store: EventStore, clock: FixedClock
    ) -> None:
        """Saving again appends only the new events; saving an unchanged value appends nothing."""
        repo = Repository(store, clock=clock)
        opp = Opportunity.open(name="ดีล", id="o1", amount=Money("100.00", "THB"), clock=clock)
        assert repo.save(opp) is opp
        assert repo.save(opp) is opp
        (opened,) = store.read_stream("o1")
        clock.advance(timedelta(hours=1))
        changed = opp.move_to("in_progress", clock=clock).update(owner="นภา", clock=clock)
        repo.save(changed)
        assert store.read_stream("o1")[0] == opened
        assert [item.version for item in store.read_stream("o1")] == [1, 2, 3]
        assert [item.type for item in stored_values(store)] == [
            "Opened",
            "StageChanged",
            "FieldsChanged",
        ]
        lead = repo.save(Lead("L1", "นภา"))
        assert repo.save(Lead("L1", "นภา")) == lead
        assert len(stored_values(store)) == 4
        with_company = repo.save(attrs.evolve(repo.get_lead("L1"), company="บริษัท"))
        assert (with_company.company, with_company.version) == ("บริษัท", 2)
        assert repo.get_lead("L1") == with_company
        assert len(stored_values(store)) == 5

    def test_two_diverging_copies_conflict_and_reload_and_retry_works(
        self, store: EventStore, clock: FixedClock
    ) -> None:
        """The second of two diverging saves raises ConcurrencyError, leaves its value as it was, and a retry on a reload lands."""
        repo = Repository(store, clock=clock)
        repo.save(Opportunity.open(name="ดีล", id="o1", clock=clock))
        clock.advance(timedelta(hours=1))
        repo.save(repo.get("o1").move_to("in_progress", clock=clock))
        mine, theirs = repo.get("o1"), repo.get("o1")
        clock.advance(timedelta(hours=1))
        theirs = theirs.update(owner="them", clock=clock)
        mine = mine.update(name="ดีลของฉัน", clock=clock)
        mine_before = (mine.version, mine.events, mine.name, mine.owner)
        repo.save(theirs)
        stored = list(store.read_all())
        with pytest.raises(ConcurrencyError) as caught:
            repo.save(mine)
        assert caught.value.stream_id == "o1"
        assert caught.value.actual == 3
        assert (mine.version, mine.events, mine.name, mine.owner) == mine_before
        assert list(store.read_all()) == stored
        assert repo.get("o1") == theirs
        retried = repo.get("o1").update(name=mine.name, clock=clock)
        repo.save(retried)
        assert repo.get("o1") == retried
        assert (retried.name, retried.owner, retried.version) == ("ดีลของฉัน", "them", 4)

    def test_a_conflict_reports_the_version_the_losing_copy_was_based_on(
        self, store: EventStore, clock: FixedClock
    ) -> None:
        """A save that lost the race reports the version it expected to find (its base), not its own."""
        repo = Repository(store, clock=clock)
        repo.save(Opportunity.open(name="ดีล", id="o1", clock=clock))
        mine, theirs = repo.get("o1"), repo.get("o1")
        repo.save(theirs.update(owner="them", clock=clock))
        with pytest.raises(ConcurrencyError) as caught:
            repo.save(mine.update(owner="me", clock=clock))
        assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == ("o1", 1, 2)

    @pytest.mark.parametrize("kind", list(SNAPSHOTS))
    def test_a_stale_lead_campaign_or_pipeline_conflicts_and_writes_nothing(
        self, store: EventStore, clock: FixedClock, kind: str
    ) -> None:
        """Of two copies read at one version, the second save raises ConcurrencyError; the first stays."""
        make, get = SNAPSHOTS[kind]
        repo = Repository(store, clock=clock)
        value = repo.save(make())
        mine, theirs = get(repo, value.id), get(repo, value.id)
        assert (mine.version, theirs.version) == (1, 1)
        theirs = repo.save(attrs.evolve(theirs, name="ของเขา"))
        assert theirs.version == 2
        stored = list(store.read_all())
        for stale in (attrs.evolve(mine, name="ของฉัน"), attrs.evolve(make(), name="ใหม่")):
            with pytest.raises(ConcurrencyError) as caught:
                repo.save(stale)
            error = caught.value
            assert (error.stream_id, error.expected, error.actual) == (
                f"{kind}:{value.id}",
                stale.version,
                2,
            )
            assert list(store.read_all()) == stored
        assert (get(repo, value.id).name, get(repo, value.id).version) == ("ของเขา", 2)
        assert repo.save(attrs.evolve(mine, name="ของเขา")).version == 2  # same content: no-op
        retried = repo.save(attrs.evolve(get(repo, value.id), name="ของฉัน"))
        assert (retried.version, get(repo, value.id)) == (3, retried)
        assert len(list(store.read_all())) == len(stored) + 1

    def test_save_all_stores_every_value(self, store: EventStore, clock: FixedClock) -> None:
        """``save_all`` stores opportunities, leads, campaigns and pipelines together."""
        repo = Repository(store, clock=clock)
        values: list[object] = [
            thai_pipeline(),
            Campaign("c1", "แคมเปญ"),
            Lead("l1", "ลูกค้า"),
            Opportunity.open(name="หนึ่ง", id="o1", clock=clock),
            Opportunity.open(name="สอง", id="o2", pipeline=thai_pipeline(), clock=clock),
        ]
        assert repo.save_all(values) == values
        assert len(stored_values(store)) == 5
        # The two deals' pipelines are stored once each, as definitions they reference.
        assert len(list(store.read_all())) == 5 + 2
        assert repo.get_pipeline("ขายส่ง-ภาคเหนือ") == values[0]
        assert {o.id for o in repo.opportunities()} == {"o1", "o2"}
        assert repo.save_all(values) == values
        assert len(list(store.read_all())) == 5 + 2

    @pytest.mark.parametrize("bad", ["stale", "twice"])
    def test_save_all_with_one_bad_value_stores_nothing(
        self, store: EventStore, clock: FixedClock, bad: str
    ) -> None:
        """When one value of ``save_all`` conflicts or repeats an id, none of the values is stored."""
        repo = Repository(store, clock=clock)
        first = Opportunity.open(name="ดีล", id="o1", clock=clock)
        repo.save(first)
        repo.save(first.update(owner="them", clock=clock))
        before = self._snapshot(store)
        new = Opportunity.open(name="ใหม่", id="o2", clock=clock)
        culprit = first.update(owner="me", clock=clock) if bad == "stale" else new
        error = ConcurrencyError if bad == "stale" else ValidationError
        with pytest.raises(error):
            repo.save_all([Lead("l1", "ลูกค้า"), new, culprit])
        assert self._snapshot(store) == before
        with pytest.raises(OpportunityNotFound):
            repo.get("o2")

    @pytest.mark.parametrize("missing", ["nope", "ดีลที่ไม่มี", "lead:l1", "pipeline:default"])
    def test_get_of_an_unknown_id_raises_opportunity_not_found(
        self, store: EventStore, clock: FixedClock, missing: str
    ) -> None:
        """``get`` of an id no opportunity is stored under raises OpportunityNotFound."""
        repo = Repository(store, clock=clock)
        repo.save(Opportunity.open(name="ดีล", id="o1", clock=clock))
        repo.save(Lead("l1", "ลูกค้า"))
        repo.save(Pipeline.default())
        with pytest.raises(OpportunityNotFound):
            repo.get(missing)

    @pytest.mark.parametrize(
        "getter",
        [Repository.get_lead, Repository.get_campaign, Repository.get_pipeline],
        ids=["lead", "campaign", "pipeline"],
    )
    def test_getting_an_unknown_lead_campaign_or_pipeline_raises_not_found(
        self, store: EventStore, clock: FixedClock, getter: Callable[[Repository, str], object]
    ) -> None:
        """Asking for a lead, campaign or pipeline that is not stored raises NotFoundError."""
        repo = Repository(store, clock=clock)
        repo.save(Opportunity.open(name="ดีล", id="x", clock=clock))
        with pytest.raises(NotFoundError):
            getter(repo, "x")

    def test_opportunities_as_of_and_known_at_show_the_past(
        self, store: EventStore, tmp_path: Path, clock: FixedClock
    ) -> None:
        """``opportunities(as_of=, known_at=)`` answer by valid time and by record time, across a reopen."""
        repo = Repository(store, clock=clock)
        early = Opportunity.open(name="เก่า", id="early", clock=clock)
        repo.save(early)
        clock.advance(timedelta(days=10))
        moved = early.move_to("in_progress", at=T0 + timedelta(days=1), clock=clock)
        late = Opportunity.open(name="ใหม่", id="late", clock=clock)
        repo.save(moved)
        repo.save(late)
        repo.save(Lead("l1", "ไม่ใช่ดีล"))
        repo = Repository(self._reopen(store, tmp_path), clock=clock)

        def stages(**when: datetime) -> dict[str, str]:
            return {o.id: o.stage_key for o in repo.opportunities(**when)}

        assert stages() == {"early": "in_progress", "late": "wait"}
        assert stages(as_of=T0 - timedelta(seconds=1)) == {}
        assert stages(as_of=T0) == {"early": "wait"}
        assert stages(as_of=T0 + timedelta(days=2)) == {"early": "in_progress"}
        assert stages(known_at=T0 + timedelta(days=2)) == {"early": "wait"}
        assert stages(known_at=T0 + timedelta(days=10)) == {"early": "in_progress", "late": "wait"}
        assert stages(as_of=T0 + timedelta(days=2), known_at=T0 + timedelta(days=5)) == {
            "early": "wait"
        }
        assert repo.opportunities(as_of=T0 + timedelta(days=2))[0] == moved.as_of(
            T0 + timedelta(days=2)
        )

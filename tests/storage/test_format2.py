"""Store format 2: each pipeline definition is stored once and ``Opened`` references it.

New stores (memory, journal format 2, SQLite schema 2, PostgreSQL schema 2) keep one
``definition:<sha256>`` stream per distinct pipeline; stores format 1 wrote keep their inline
pipelines, read as before, and go on being written inline so an older oppcore still reads them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from oppcore import ConcurrencyError, CorruptStoreError, Repository, open_repository, sample
from oppcore.storage import EventRecord, MemoryEventStore
from oppcore.storage.repository import definition_digest
from tests.storage.postgres_support import as_url, fresh_schema, server

SAMPLE = sample.generate(opportunities=60)
FIXTURES = Path(__file__).parent.parent / "fixtures" / "format1"


def _records(repo: Repository) -> list[EventRecord]:
    return list(repo.store.read_all())


def test_a_new_store_keeps_each_pipeline_once_and_reads_every_deal_back(
    opener: Callable[[], Repository],
) -> None:
    with opener() as repo:
        repo.save_all(SAMPLE.opportunities)
    with opener() as again:
        records = _records(again)
        definitions = [r for r in records if r.stream_id.startswith("definition:")]
        opened = [r for r in records if r.type == "Opened"]
        distinct = {definition_digest(_inline_pipeline(o)) for o in SAMPLE.opportunities}
        assert len(definitions) == len(distinct)
        assert {r.stream_id for r in definitions} == {f"definition:{d}" for d in distinct}
        assert all("pipeline" not in r.payload for r in opened)
        assert {r.payload["pipeline_ref"] for r in opened} == distinct
        assert sorted(again.opportunities(), key=lambda o: o.id) == sorted(
            SAMPLE.opportunities, key=lambda o: o.id
        )
        assert again.get(SAMPLE.opportunities[3].id) == SAMPLE.opportunities[3]
        assert again.verify() == []
        assert again.pipelines() == []  # definitions are not saved pipelines


def _inline_pipeline(opp: Any) -> dict[str, Any]:
    from oppcore.storage import event_record

    pipeline = event_record(opp.events[0]).payload["pipeline"]
    assert isinstance(pipeline, dict)
    return pipeline


def test_a_second_save_of_the_same_pipeline_writes_no_second_definition(
    opener: Callable[[], Repository],
) -> None:
    with opener() as repo:
        repo.save(SAMPLE.opportunities[0])
        repo.save(SAMPLE.opportunities[1])
    with opener() as other:  # a repository that has not seen the definition yet
        other.save(SAMPLE.opportunities[2])
        same = [
            r
            for r in _records(other)
            if r.stream_id.startswith("definition:")
            and r.stream_id.endswith(definition_digest(_inline_pipeline(SAMPLE.opportunities[0])))
        ]
        assert len(same) == 1


def test_a_format_1_journal_stays_format_1_when_written(tmp_path: Path) -> None:
    """An older oppcore still reads it: the header stays version 1, pipelines stay inline."""
    path = tmp_path / "store.jsonl"
    shutil.copyfile(FIXTURES / "store.jsonl", path)
    new = SAMPLE.opportunities[0]
    with open_repository(path) as repo:
        before = len(repo.opportunities())
        repo.save(_renamed(new))
    lines = path.read_bytes().splitlines()
    assert json.loads(lines[0]) == {"format": "oppcore-journal", "version": 1}
    last = json.loads(lines[-1])["records"]
    assert all("pipeline_ref" not in r["payload"] for r in last)
    assert any("pipeline" in r["payload"] for r in last if r["type"] == "Opened")
    with open_repository(path) as repo:
        assert len(repo.opportunities()) == before + 1
        assert repo.verify() == []


def _renamed(opp: Any) -> Any:
    from oppcore import Opportunity

    events = list(opp.events)
    import attrs

    events = [attrs.evolve(e, opportunity_id="fresh-one") for e in events]
    return Opportunity.replay(events)


def test_a_new_journal_says_format_2(tmp_path: Path) -> None:
    path = tmp_path / "new.jsonl"
    with open_repository(path) as repo:
        repo.save(SAMPLE.opportunities[0])
    first = path.read_bytes().splitlines()[0]
    assert json.loads(first) == {"format": "oppcore-journal", "version": 2}


def test_a_changed_definition_is_found_and_named(tmp_path: Path) -> None:
    """PostgreSQL keeps no checksum of its own: the digest is what finds the change."""
    import psycopg

    with fresh_schema(server()) as conninfo:
        with open_repository(as_url(conninfo)) as repo:
            repo.save(SAMPLE.opportunities[0])
        with psycopg.connect(conninfo) as connection:
            connection.execute(
                'UPDATE oppcore_events SET payload = replace(payload, \'"name":"\', '
                '\'"name":"Changed \') '
                "WHERE stream_id LIKE 'definition:%'"
            )
        with open_repository(as_url(conninfo)) as repo:
            problems = repo.verify()
            assert any("does not match its content" in p for p in problems)
            with pytest.raises(CorruptStoreError, match="does not match its content"):
                repo.get(SAMPLE.opportunities[0].id)


def test_a_missing_definition_is_named_when_the_deal_is_read() -> None:
    store = MemoryEventStore()
    repo = Repository(store)
    repo.save(SAMPLE.opportunities[0])
    opened = next(r for r in store.read_all() if r.type == "Opened")
    bare = MemoryEventStore()
    bare.append(opened.stream_id, [opened], expected_version=0)
    with pytest.raises(CorruptStoreError, match="which is not stored"):
        Repository(bare).get(opened.stream_id)


class _Racing(MemoryEventStore):
    """A real store where another writer stores the same definition just before our append."""

    def __init__(self) -> None:
        super().__init__()
        self.raced = False

    def append_many(self, batches: Sequence[tuple[str, Sequence[EventRecord], int]]) -> list[int]:
        if not self.raced:
            self.raced = True
            for stream_id, records, expected in batches:
                if stream_id.startswith("definition:"):
                    super().append_many([(stream_id, records, expected)])
        return super().append_many(batches)


def test_a_definition_stored_by_another_writer_meanwhile_is_no_conflict() -> None:
    store = _Racing()
    repo = Repository(store)
    repo.save(SAMPLE.opportunities[0])
    assert store.raced
    assert Repository(store).get(SAMPLE.opportunities[0].id) == SAMPLE.opportunities[0]


def test_a_real_conflict_on_the_deal_still_raises() -> None:
    store = MemoryEventStore()
    first, second = Repository(store), Repository(store)
    first.save(SAMPLE.opportunities[0])
    with pytest.raises(ConcurrencyError):
        second.save(_renamed_same(SAMPLE.opportunities[0], SAMPLE.opportunities[1]))


def _renamed_same(stored: Any, other: Any) -> Any:
    """A different history under the id already stored."""
    import attrs

    from oppcore import Opportunity

    return Opportunity.replay([attrs.evolve(e, opportunity_id=stored.id) for e in other.events])

"""Stores that are changed under them, records of the wrong shape, stale snapshots (issue 11).

Case 2: a journal cut short, copied back from a backup, or replaced under an open store makes
that store raise ``CorruptStoreError`` and write nothing (it used to pad the file with NUL bytes
and acknowledge the append).  Case 3: leads, campaigns and pipelines get the optimistic
concurrency opportunities have.  Case 9: a record whose checksum is right but whose shape is
wrong is ``CorruptStoreError`` naming its line and field.  And a journal header's version is
an integer, not ``true`` or ``1.0``.  Files are changed as an operator changes them: ``cp``,
``mv`` and a second Python process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from oppcore import (
    Campaign,
    ConcurrencyError,
    CorruptStoreError,
    FixedClock,
    Lead,
    Opportunity,
    Outcome,
    Pipeline,
    Repository,
    Stage,
    open_repository,
)
from oppcore.storage import EventRecord, JsonEventStore, MemoryEventStore
from oppcore.storage.jsonl import encode_line
from oppcore.storage.records import shape_problem
from tests.conftest import T0

AT = T0.isoformat()
ROOT = Path(__file__).resolve().parents[2]


def run(*command: str | os.PathLike[str]) -> None:
    """Run a command as an operator would, from another process."""
    subprocess.run([os.fspath(part) for part in command], check=True, timeout=60)


def deal(number: int, name: str = "ดีล") -> Opportunity:
    return Opportunity.open(name=f"{name} {number}", id=f"o{number}", clock=FixedClock(T0))


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[tuple[Path, Repository]]:
    """A journal holding two deals, and a repository (a running service) open on it."""
    path = tmp_path / "deals.jsonl"
    with open_repository(path, clock=FixedClock(T0)) as repo:
        repo.save_all([deal(1)])
        repo.save(deal(2))
        assert [opp.id for opp in repo.opportunities()] == ["o1", "o2"]
        yield path, repo


def assert_refuses(repo: Repository, path: Path, data: bytes) -> CorruptStoreError:
    """Every later save and read raises CorruptStoreError, and the file stays ``data``."""
    with pytest.raises(CorruptStoreError) as caught:
        repo.save(deal(3))
    for attempt in (lambda: repo.save(deal(4)), repo.opportunities, repo.leads):
        with pytest.raises(CorruptStoreError):
            attempt()
    assert path.read_bytes() == data
    assert b"\0" not in data
    return caught.value


# -- case 2: a journal changed under an open store -----------------------------------------


def test_a_backup_copied_back_under_a_running_store_is_refused_and_not_padded(
    journal: tuple[Path, Repository], tmp_path: Path
) -> None:
    """`cp backup journal` while a store is open: the next save raises and the file stays the backup."""
    path, repo = journal
    backup = tmp_path / "backup.jsonl"
    run("cp", path, backup)
    repo.save(deal(5))
    run("cp", backup, path)
    restored = backup.read_bytes()
    error = assert_refuses(repo, path, restored)
    assert error.line == 4  # the deal saved after the backup is gone
    assert "shorter" in str(error)
    assert repr(str(path)) in str(error)
    with open_repository(path) as reopened:  # opened again, it reads what the backup holds
        assert [opp.id for opp in reopened.opportunities()] == ["o1", "o2"]


def test_a_journal_moved_over_the_open_one_is_refused_and_left_alone(
    journal: tuple[Path, Repository], tmp_path: Path
) -> None:
    """`mv other journal`: the store sees another file at its path, raises, and writes to neither."""
    path, repo = journal
    other = tmp_path / "other.jsonl"
    with open_repository(other, clock=FixedClock(T0)) as elsewhere:
        for number in range(1, 5):
            elsewhere.save(deal(number, "อื่น"))
    data = other.read_bytes()
    run("mv", other, path)
    error = assert_refuses(repo, path, data)
    assert "replaced" in str(error)


def test_a_journal_rewritten_to_the_same_length_is_refused(
    journal: tuple[Path, Repository], tmp_path: Path
) -> None:
    """Other bytes of the same length copied over it: the line read last no longer matches."""
    path, repo = journal
    twin = tmp_path / "twin.jsonl"
    with open_repository(twin, clock=FixedClock(T0)) as other:
        other.save(deal(1))
        other.save(deal(2, "ดิล"))  # same length, other text
    data = twin.read_bytes()
    assert len(data) == len(path.read_bytes())
    assert data != path.read_bytes()
    run("cp", twin, path)
    error = assert_refuses(repo, path, data)
    assert error.line == 3


def test_lines_another_process_appends_are_read_and_the_store_goes_on(
    journal: tuple[Path, Repository],
) -> None:
    """Appends by a second process are growth, not damage: the open store reads and writes on."""
    path, repo = journal
    script = (
        "import sys\n"
        "from datetime import datetime, timezone\n"
        "from oppcore import FixedClock, Opportunity, open_repository\n"
        "clock = FixedClock(datetime(2026, 1, 5, 9, tzinfo=timezone.utc))\n"
        "with open_repository(sys.argv[1], clock=clock) as repo:\n"
        "    repo.save(Opportunity.open(name='อีกเครื่อง', id='o9', clock=clock))\n"
    )
    subprocess.run([sys.executable, "-c", script, path], check=True, timeout=120, cwd=ROOT)
    repo.save(deal(3))
    assert [opp.id for opp in repo.opportunities()] == ["o1", "o2", "o9", "o3"]


@settings(max_examples=30)
@given(data=st.data())
def test_a_journal_cut_anywhere_before_the_read_position_is_never_written(
    data: st.DataObject,
) -> None:
    """Whatever length a journal is cut to below what was read, the next append raises and writes nothing."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "deals.jsonl"
        with JsonEventStore(path) as store:
            for version in range(1, 4):
                record = EventRecord("ดีล", version, "Noted", AT, AT, {"n": version})
                store.append("ดีล", [record], expected_version=version - 1)
            size = path.stat().st_size
            cut = data.draw(st.integers(min_value=0, max_value=size - 1), label="cut")
            os.truncate(path, cut)
            left = path.read_bytes()
            with pytest.raises(CorruptStoreError):
                store.append("ดีล", [EventRecord("ดีล", 4, "Noted", AT, AT, {})], expected_version=3)
            with pytest.raises(CorruptStoreError):
                store.append("อื่น", [EventRecord("อื่น", 1, "Noted", AT, AT, {})], expected_version=0)
            assert path.read_bytes() == left


# -- case 9: records whose checksum is right and whose shape is wrong ----------------------


def journal_line(records: list[Any], runs: list[list[Any]]) -> bytes:
    """A journal line as oppcore frames one (stream index, records, CRC32 of both), holding
    whatever ``records`` are given: what a buggy or foreign writer could leave."""
    streams = json.dumps(runs, ensure_ascii=False, separators=(",", ":")).encode()
    body = json.dumps(records, ensure_ascii=False, separators=(",", ":")).encode()
    content = b',"streams":' + streams + b',"records":' + body
    return b'{"crc32":"' + b"%08x" % zlib.crc32(content) + b'"' + content + b"}\n"


def without(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda record: {key: value for key, value in record.items() if key != name}


def setting(name: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda record: {**record, name: value}


SHAPES: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "no type": (without("type"), "'type'"),
    "no payload": (without("payload"), "'payload'"),
    "no at": (without("at"), "'at'"),
    "version as text": (setting("version", "1"), "'version'"),
    "version true": (setting("version", True), "'version'"),
    "type a number": (setting("type", 7), "'type'"),
    "recorded_at null": (setting("recorded_at", None), "'recorded_at'"),
    "payload a list": (setting("payload", [1, 2]), "'payload'"),
    "a list for a record": (lambda record: list(record.values()), "not a JSON object"),
}


def test_the_line_builder_frames_lines_exactly_as_the_journal_does() -> None:
    """The test's own line builder gives oppcore's bytes for a good record (so its damage is the only difference)."""
    record = EventRecord("o2", 1, "Opened", AT, AT, {"ชื่อ": "ดีล"})
    assert journal_line([record.to_json()], [["o2", 1, 1]]) == encode_line([record])


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_checksummed_record_of_the_wrong_shape_is_named_and_stops_writes(
    journal: tuple[Path, Repository], shape: str
) -> None:
    """opportunities() and verify() name the line and the field; the store then refuses to write."""
    path, repo = journal
    repo.close()
    lines = path.read_bytes().splitlines(keepends=True)
    change, field = SHAPES[shape]
    (record,) = json.loads(lines[2])["records"]
    lines[2] = journal_line([change(record)], [["o2", 1, 1]])
    data = b"".join(lines)
    path.write_bytes(data)
    with open_repository(path, clock=FixedClock(T0)) as damaged:
        with pytest.raises(CorruptStoreError) as caught:
            damaged.opportunities()
        assert caught.value.line == 3
        assert field in str(caught.value)
        assert "line 3" in str(caught.value)
        assert_refuses(damaged, path, data)
    with open_repository(path) as again:
        problems = again.verify()
        assert len(problems) == 1
        assert field in problems[0]
        assert "line 3" in problems[0]
    assert path.read_bytes() == data


def test_verify_on_the_command_line_names_a_record_without_its_type(
    journal: tuple[Path, Repository],
) -> None:
    """`oppcore verify` exits 1 naming the missing field, without a traceback, and changes nothing."""
    path, repo = journal
    repo.close()
    lines = path.read_bytes().splitlines(keepends=True)
    (record,) = json.loads(lines[2])["records"]
    lines[2] = journal_line([without("type")(record)], [["o2", 1, 1]])
    data = b"".join(lines)
    path.write_bytes(data)
    result = subprocess.run(
        [sys.executable, "-m", "oppcore", "verify", "--store", path],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "'type'" in result.stdout + result.stderr
    assert path.read_bytes() == data


FIELDS = ("stream_id", "version", "type", "at", "recorded_at", "payload")
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=4,
)


GOOD = EventRecord("o1", 1, "Opened", AT, AT, {"name": "ดีล"}).to_json()


@st.composite
def spoiled_records(draw: st.DrawFn) -> dict[str, Any]:
    """A good record object with some fields dropped or given any JSON value."""
    record = dict(GOOD)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=2, unique=True)):
        if draw(st.booleans()):
            del record[name]
        else:
            record[name] = draw(json_values)
    return record


@given(
    data=spoiled_records()
    | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=3), json_values, max_size=8)
    | json_values,
    position=st.none() | st.integers(min_value=1, max_value=10**6),
)
def test_from_json_gives_a_record_or_corrupt_store_error_for_any_json(
    data: Any, position: int | None
) -> None:
    """Whatever JSON a store decoded, EventRecord.from_json returns a record or names what is wrong."""
    problem = shape_problem(data)
    if problem is not None:
        place = "" if position is None else f"position {position} "
        with pytest.raises(CorruptStoreError, match=re.escape(f"{place}{problem},")):
            EventRecord.from_json(data, position)
        return
    record = EventRecord.from_json(data, position)
    assert isinstance(record.type, str)
    assert record.type
    assert type(record.version) is int
    assert record.version >= 1
    assert isinstance(record.payload, dict)
    assert record.position == position


def test_from_json_names_the_position_and_the_missing_field() -> None:
    """A record object without 'type' read at position 7 says both."""
    good = EventRecord("o1", 1, "Opened", AT, AT, {}).to_json()
    with pytest.raises(CorruptStoreError, match=r"position 7 lacks 'type'"):
        EventRecord.from_json(without("type")(good), 7)


# -- the header's format version is an integer ---------------------------------------------


@pytest.mark.parametrize("version", ["true", "1.0", '"1"', "null", "1e0", "false"])
def test_a_header_version_that_is_not_the_integer_1_is_refused(
    tmp_path: Path, version: str
) -> None:
    """`"version": true` or `1.0` compare equal to 1 in Python, but only the integer is a journal version."""
    path = tmp_path / "deals.jsonl"
    with open_repository(path, clock=FixedClock(T0)) as repo:
        repo.save(deal(1))
    lines = path.read_bytes().splitlines(keepends=True)
    lines[0] = b'{"format":"oppcore-journal","version":' + version.encode() + b"}\n"
    data = b"".join(lines)
    path.write_bytes(data)
    with pytest.raises(CorruptStoreError) as caught:
        open_repository(path)
    assert caught.value.line == 1
    assert f"version {json.dumps(json.loads(version))} is not" in str(caught.value)
    assert path.read_bytes() == data


# -- case 3: leads, campaigns and pipelines saved by two services --------------------------


def regional() -> Pipeline:
    return Pipeline(
        "regional",
        "ภาคเหนือ",
        (
            Stage("ติดต่อ", "Contact", 20),
            Stage("ชนะ", "Won", 100, Outcome.WON),
            Stage("แพ้", "Lost", 0, Outcome.LOST),
        ),
    )


KINDS: dict[str, tuple[Callable[[], Any], Callable[[Repository, str], Any]]] = {
    "lead": (lambda: Lead("lead-1", "สมชาย", company="สยาม"), Repository.get_lead),
    "campaign": (lambda: Campaign("cmp-1", "สงกรานต์"), Repository.get_campaign),
    "pipeline": (regional, Repository.get_pipeline),
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("name", ["deals.jsonl", "deals.db"])
def test_a_stale_copy_saved_later_by_another_service_is_a_conflict(
    tmp_path: Path, kind: str, name: str
) -> None:
    """Two services read one lead (campaign, pipeline); the later save of the stale copy raises and writes nothing."""
    make, get = KINDS[kind]
    path = tmp_path / name
    with open_repository(path, clock=FixedClock(T0)) as first:
        first.save(make())
    with (
        open_repository(path, clock=FixedClock(T0)) as north,
        open_repository(path, clock=FixedClock(T0)) as south,
    ):
        mine, theirs = get(north, make().id), get(south, make().id)
        south.save(attrs.evolve(theirs, name="ของใหม่"))
        before = list(south.store.read_all())
        with pytest.raises(ConcurrencyError) as caught:
            north.save(attrs.evolve(mine, name="ของเก่า"))
        error = caught.value
        assert (error.stream_id, error.expected, error.actual) == (f"{kind}:{mine.id}", 1, 2)
        assert repr(mine.id) in str(error)
        assert "Reload" in str(error)
        assert get(north, mine.id).name == "ของใหม่"
        assert list(south.store.read_all()) == before
    with open_repository(path) as reopened:
        assert (get(reopened, mine.id).name, get(reopened, mine.id).version) == ("ของใหม่", 2)


def test_a_new_lead_on_a_stored_id_conflicts_unless_equal_or_replacing() -> None:
    """A lead built anew (version 0) with other content conflicts; equal content is a no-op; replace=True replaces."""
    repo = open_repository(None, clock=FixedClock(T0))
    stored = repo.save(Lead("lead-1", "สมชาย"))
    assert stored.version == 1
    assert repo.save(Lead("lead-1", "สมชาย")).version == 1
    count = len(list(repo.store.read_all()))
    with pytest.raises(ConcurrencyError) as caught:
        repo.save(Lead("lead-1", "สมหญิง"))
    assert (caught.value.expected, caught.value.actual) == (0, 1)
    assert "new value" in str(caught.value)
    assert len(list(repo.store.read_all())) == count
    values: list[Lead | Campaign] = [Lead("lead-1", "สมหญิง"), Campaign("cmp-1", "ใหม่")]
    replaced = repo.save_all(values, replace=True)
    assert [value.version for value in replaced] == [2, 1]
    assert repo.get_lead("lead-1") == Lead("lead-1", "สมหญิง")


def test_snapshots_stored_before_versions_existed_load_and_take_the_record_version() -> None:
    """A LeadSaved record as older oppcore wrote it (no version in its payload) reads at its record's version."""
    store = MemoryEventStore()
    old = {"id": "lead-1", "name": "สมชาย", "company": None, "source": "web",
           "campaign_id": None, "created_at": None}  # fmt: skip
    store.append(
        "lead:lead-1",
        [
            EventRecord("lead:lead-1", 1, "LeadSaved", AT, AT, old),
            EventRecord("lead:lead-1", 2, "LeadSaved", AT, AT, {**old, "name": "สมหญิง"}),
        ],
        expected_version=0,
    )
    repo = Repository(store, clock=FixedClock(T0))
    lead = repo.get_lead("lead-1")
    assert (lead.name, lead.version) == ("สมหญิง", 2)
    assert [(item.id, item.version) for item in repo.leads()] == [("lead-1", 2)]
    saved = repo.save(attrs.evolve(lead, company="สยาม"))
    assert saved.version == 3
    # What is stored is the content only, as before: older oppcore reads it too.
    assert "version" not in store.read_stream("lead:lead-1")[-1].payload


def test_two_deals_on_one_saved_pipeline_save_whatever_copy_of_it_they_carry() -> None:
    """Deals carry their pipeline in their events: saving two of one pipeline, stored or not, never conflicts."""
    repo = open_repository(None, clock=FixedClock(T0))
    pipeline = repo.save(regional())
    clock = FixedClock(T0)
    first = Opportunity.open(name="หนึ่ง", id="d1", pipeline=pipeline, clock=clock)
    second = Opportunity.open(name="สอง", id="d2", pipeline=regional(), clock=clock)
    repo.save(first)
    repo.save_all([second, pipeline])
    clock.advance(timedelta(hours=1))
    repo.save(repo.get("d1").win(clock=clock))
    assert repo.get("d2").pipeline == repo.get_pipeline("regional") == regional()
    assert [p.version for p in repo.pipelines()] == [1]


class SnapshotMachine(RuleBasedStateMachine):
    """Copies of one lead read, changed and saved in any order, against a model of the stored lead."""

    copies = Bundle("copies")

    def __init__(self) -> None:
        super().__init__()
        self.repo = Repository(MemoryEventStore(), clock=FixedClock(T0))
        self.content: Lead | None = None  # what the store holds, by content
        self.version = 0

    @rule(target=copies)
    def read(self) -> Lead:
        if self.content is None:
            return Lead("lead-1", "สมชาย")
        return self.repo.get_lead("lead-1")

    @rule(target=copies, copy=consumes(copies), name=st.sampled_from(["ก", "ข", "ค"]))
    def change(self, copy: Lead, name: str) -> Lead:
        return attrs.evolve(copy, name=name)

    @rule(target=copies, copy=copies)
    def save(self, copy: Lead) -> Lead:
        stored = len(list(self.repo.store.read_all()))
        if self.content is not None and copy != self.content and copy.version != self.version:
            with pytest.raises(ConcurrencyError):
                self.repo.save(copy)
            assert len(list(self.repo.store.read_all())) == stored
            return copy
        saved = self.repo.save(copy)
        if self.content != copy:
            self.content, self.version = copy, self.version + 1
        assert (saved, saved.version) == (copy, self.version)
        return saved

    @invariant()
    def the_store_holds_the_model(self) -> None:
        assert len(list(self.repo.store.read_all())) == self.version
        if self.content is not None:
            lead = self.repo.get_lead("lead-1")
            assert (lead, lead.version) == (self.content, self.version)


def test_saves_of_lead_copies_in_any_order_land_only_on_the_version_they_read() -> None:
    """Random reads, changes and saves of copies of a lead: a save lands only when based on the stored version or equal to it."""
    run_state_machine_as_test(
        SnapshotMachine, settings=settings(max_examples=40, stateful_step_count=20)
    )


def test_shutil_copy_of_a_store_under_itself_leaves_no_nul_bytes(tmp_path: Path) -> None:
    """The reported case end to end: restore a backup over a journal in use, then save: refused, file intact."""
    path = tmp_path / "deals.jsonl"
    backup = tmp_path / "deals.jsonl.bak"
    with open_repository(path, clock=FixedClock(T0)) as service:
        service.save(deal(1))
        shutil.copyfile(path, backup)
        for number in range(2, 6):
            service.save(deal(number))
        shutil.copyfile(backup, path)
        with pytest.raises(CorruptStoreError):
            service.save(deal(6))
    assert path.read_bytes() == backup.read_bytes()
    with open_repository(path) as reopened:
        assert reopened.verify() == []
        assert [opp.id for opp in reopened.opportunities()] == ["o1"]

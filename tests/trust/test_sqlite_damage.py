"""SQLite damage is reported, never read as other data (issue 11, case 4).

SQLite keeps no checksum of its pages: a flipped byte reads back as another value.  Every row
carries a checksum that every read checks; ``verify`` also runs SQLite's own integrity check;
a store that has found damage refuses to write.  The damage here is done to real files, byte
by byte, as a failing disk or a careless copy does it.  A schema 1 file (before checksums) is
built with plain sqlite3 and the old table definition, and keeps opening and reading.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oppcore import (
    CorruptStoreError,
    FixedClock,
    Money,
    Opportunity,
    OpportunityNotFound,
    StorageError,
    ValidationError,
    open_repository,
)
from oppcore.storage import EventRecord, MemoryEventStore, Repository, SqliteEventStore
from oppcore.storage.sqlite import SCHEMA_VERSION, record_checksum
from tests.conftest import T0
from tests.test_cli import digest, oppcore

AT = "2026-01-05T09:00:00+07:00"
INDEX = "sqlite_autoindex_events_1"  # the UNIQUE (stream_id, version) index read_stream uses

# The schema 1 table, as oppcore wrote it before checksums.
SCHEMA_1 = """
CREATE TABLE oppcore_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    payload TEXT NOT NULL,
    UNIQUE (stream_id, version)
);
INSERT INTO oppcore_meta (key, value) VALUES ('schema_version', '1');
"""


def deal(number: int, amount: str = "1000.00") -> Opportunity:
    """Opportunity ``opp-<number>``, opened at T0 for ``amount`` baht."""
    return Opportunity.open(
        id=f"opp-{number}", name=f"ดีล {number}", amount=Money(amount, "THB"), clock=FixedClock(T0)
    )


def won(number: int) -> Opportunity:
    """A deal with three events: opened, moved, won."""
    clock = FixedClock(T0)
    opp = Opportunity.open(
        id=f"opp-{number}", name=f"Fleet {number}", amount=Money("250.00", "THB"), clock=clock
    )
    clock.advance(timedelta(days=1))
    return opp.move_to("in_progress", clock=clock).win(clock=clock)


def store_with(path: Path, *opps: Opportunity) -> None:
    """Save ``opps`` into a new database at ``path`` and close it (the WAL folded in)."""
    with open_repository(path, clock=FixedClock(T0)) as repo:
        repo.save_all(list(opps))
    assert not path.with_name(path.name + "-wal").exists()


def replace_once(path: Path, old: bytes, new: bytes) -> bytes:
    """Change the one place ``old`` is in the file to ``new`` (same length); the new bytes."""
    data = path.read_bytes()
    assert data.count(old) == 1, data.count(old)
    assert len(old) == len(new)
    damaged = data.replace(old, new)
    path.write_bytes(damaged)
    return damaged


def query(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    """``sql`` run on the file with plain sqlite3, committed."""
    with closing(sqlite3.connect(path)) as db, db:
        return db.execute(sql, args).fetchall()


def index_page(path: Path) -> tuple[int, int]:
    """The page number of the events index's root, and the page size."""
    [(root,)] = query(path, "SELECT rootpage FROM sqlite_master WHERE name = ?", INDEX)
    [(size,)] = query(path, "PRAGMA page_size")
    assert isinstance(root, int)
    assert isinstance(size, int)
    return root, size


def overwrite_page(path: Path, page: int, size: int, content: bytes) -> bytes:
    """Write ``content`` (padded with zeros to a page) over page ``page``; the new bytes."""
    with path.open("r+b") as file:
        file.seek((page - 1) * size)
        file.write(content.ljust(size, b"\0"))
    return path.read_bytes()


# -- a flipped digit in a payload --------------------------------------------------------


def test_a_flipped_digit_in_an_amount_is_reported_not_read_as_another_amount(
    tmp_path: Path,
) -> None:
    """1,000.00 changed to 9,000.00 on disk: get() and opportunities() raise, naming the record."""
    path = tmp_path / "deals.db"
    store_with(path, deal(1), deal(2, "5.00"))
    data = replace_once(path, b'"1000.00"', b'"9000.00"')

    with open_repository(path) as repo:
        with pytest.raises(CorruptStoreError) as caught:
            repo.get("opp-1")
        assert "position 2" in str(caught.value)  # after its pipeline's definition
        assert "'opp-1'" in str(caught.value)
        assert "checksum" in str(caught.value)
        with pytest.raises(CorruptStoreError):
            repo.opportunities()
        assert repo.get("opp-2").amount == Money("5.00", "THB")
    assert path.read_bytes() == data


def test_verify_names_the_record_whose_digit_flipped(tmp_path: Path) -> None:
    """``Repository.verify`` names the damaged record's stream and position, and changes nothing."""
    path = tmp_path / "deals.db"
    store_with(path, deal(1), deal(2, "5.00"))
    data = replace_once(path, b'"1000.00"', b'"9000.00"')

    with open_repository(path) as repo:
        problems = repo.verify()

    assert len(problems) == 1, problems
    assert "'opp-1'" in problems[0]
    assert "position 2" in problems[0]  # after its pipeline's definition
    assert path.read_bytes() == data


def test_the_verify_command_names_the_record_whose_digit_flipped(tmp_path: Path) -> None:
    """``oppcore verify`` exits 1 naming the damaged deal, and leaves the file as it was."""
    path = tmp_path / "deals.db"
    store_with(path, deal(1), deal(2, "5.00"))
    replace_once(path, b'"1000.00"', b'"9000.00"')
    before = digest(path)

    result = oppcore("verify", "--store", "deals.db", cwd=tmp_path)

    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert "opp-1" in result.stdout
    assert "checksum" in result.stdout
    assert "opp-2" not in result.stdout
    assert digest(path) == before


def test_a_store_that_read_a_bad_checksum_refuses_to_write(tmp_path: Path) -> None:
    """After a read found a bad checksum, every save raises CorruptStoreError and writes nothing."""
    path = tmp_path / "deals.db"
    store_with(path, deal(1), deal(2, "5.00"))
    data = replace_once(path, b'"1000.00"', b'"9000.00"')

    with open_repository(path) as repo:
        with pytest.raises(CorruptStoreError):
            repo.get("opp-1")
        for opp in (deal(3), repo.get("opp-2").update(name="Changed", clock=FixedClock(T0))):
            with pytest.raises(CorruptStoreError) as caught:
                repo.save(opp)
            assert "Nothing was written" in str(caught.value)
            assert "'opp-1'" in str(caught.value)
    assert path.read_bytes() == data


# -- a damaged index --------------------------------------------------------------------


def test_a_zeroed_index_page_is_damage_not_a_missing_deal(tmp_path: Path) -> None:
    """The index's page zeroed on disk: get() raises CorruptStoreError, verify names the index."""
    path = tmp_path / "deals.db"
    store_with(path, deal(1), deal(2), won(3))
    root, size = index_page(path)
    data = overwrite_page(path, root, size, b"")

    with open_repository(path) as repo:
        with pytest.raises(CorruptStoreError) as caught:
            repo.get("opp-1")
        assert "malformed" in str(caught.value)
        # The rows themselves are sound: reading in order does not need the index.
        assert sorted(opp.id for opp in repo.opportunities()) == ["opp-1", "opp-2", "opp-3"]
        problems = repo.verify()
        assert any("integrity check" in problem for problem in problems), problems
        with pytest.raises(CorruptStoreError):
            repo.save(deal(4))
    assert path.read_bytes() == data


def test_an_index_that_lost_its_entries_is_found_by_verify_and_stops_writes(
    tmp_path: Path,
) -> None:
    """The index's page emptied (still a valid page): get() misses the deal; verify names the
    index, and from then on the store refuses to write (a save would duplicate the deal)."""
    path = tmp_path / "deals.db"
    store_with(path, deal(1), deal(2), won(3))
    root, size = index_page(path)
    empty_leaf = bytes([0x0A, 0, 0, 0, 0]) + size.to_bytes(2, "big")
    data = overwrite_page(path, root, size, empty_leaf)

    with open_repository(path) as repo:
        with pytest.raises(OpportunityNotFound):
            repo.get("opp-1")  # what the damage looks like to a reader
        assert len(repo.opportunities()) == 3
        problems = repo.verify()
        assert any(f"missing from index {INDEX}" in problem for problem in problems), problems
        assert any("global order holds 6 records" in problem for problem in problems), problems
        for opp in (deal(1), deal(4)):  # deal(1) would be stored a second time
            with pytest.raises(CorruptStoreError):
                repo.save(opp)
    assert path.read_bytes() == data


def test_integrity_problems_of_a_sound_store_is_empty(tmp_path: Path) -> None:
    """SQLite's integrity check of a healthy store finds nothing, and the store still writes."""
    path = tmp_path / "deals.db"
    store_with(path, deal(1), won(2))
    with SqliteEventStore(path) as store:
        assert store.integrity_problems() == []
        store.append("s", [EventRecord("s", 1, "Noted", AT, AT, {})], expected_version=0)


def test_integrity_problems_names_each_damage_in_one_line(tmp_path: Path) -> None:
    """Each line names the database and what SQLite found; the store then refuses to write."""
    path = tmp_path / "deals.db"
    store_with(path, deal(1), deal(2))
    root, size = index_page(path)
    empty_leaf = bytes([0x0A, 0, 0, 0, 0]) + size.to_bytes(2, "big")
    data = overwrite_page(path, root, size, empty_leaf)

    with SqliteEventStore(path) as store:
        problems = store.integrity_problems()
        assert problems
        assert all("\n" not in problem and str(path) in problem for problem in problems)
        assert f"'row 1 missing from index {INDEX}'" in problems[0]
        with pytest.raises(CorruptStoreError):
            store.append("s", [EventRecord("s", 1, "Noted", AT, AT, {})], expected_version=0)
    assert path.read_bytes() == data


def test_integrity_problems_reports_a_page_sqlite_cannot_decode(tmp_path: Path) -> None:
    """A zeroed page makes SQLite's integrity check itself fail; that is reported, not raised."""
    path = tmp_path / "deals.db"
    store_with(path, deal(1))
    root, size = index_page(path)
    overwrite_page(path, root, size, b"")
    with SqliteEventStore(path) as store:
        problems = store.integrity_problems()
    assert problems
    assert all(str(path) in problem for problem in problems)


# -- every column is covered ------------------------------------------------------------

COLUMNS = ("position", "stream_id", "version", "type", "at", "recorded_at", "payload")


def changed(value: object, seed: int) -> object:
    """``value`` with one character (or its number) changed."""
    if isinstance(value, int):
        return value + 1000 + seed
    assert isinstance(value, str)
    index = seed % len(value)
    other = "9" if value[index] != "9" else "8"
    return value[:index] + other + value[index + 1 :]


texts = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)  # no lone surrogates


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    stream_id=texts,
    note=texts,
    column=st.sampled_from(COLUMNS),
    seed=st.integers(0, 1000),
)
def test_a_change_to_any_column_of_a_stored_record_is_caught(
    tmp_path_factory: pytest.TempPathFactory, stream_id: str, note: str, column: str, seed: int
) -> None:
    """Whatever column of a stored row changes, reading it raises CorruptStoreError, by stream and by order."""
    path = tmp_path_factory.mktemp("any") / "s.db"
    records = [EventRecord(stream_id, v, "Noted", AT, AT, {"n": note, "v": v}) for v in (1, 2)]
    with SqliteEventStore(path) as store:
        store.append(stream_id, records, expected_version=0)
    [(value,)] = query(path, f"SELECT {column} FROM events WHERE version = 2")
    new: object
    if column == "payload":  # still a valid payload, of the same shape
        new = json.dumps(
            {"n": changed(note, seed), "v": 2}, ensure_ascii=False, separators=(",", ":")
        )
    else:
        new = changed(value, seed)
    query(path, f"UPDATE events SET {column} = ? WHERE version = 2", new)

    with SqliteEventStore(path) as store:
        with pytest.raises(CorruptStoreError):
            list(store.read_all())
        with pytest.raises(CorruptStoreError):
            store.read_stream(str(new) if column == "stream_id" else stream_id)


def test_a_row_that_lost_its_checksum_is_damage(tmp_path: Path) -> None:
    """A row written with a checksum whose checksum is gone reads as damage, not as an old row."""
    path = tmp_path / "deals.db"
    store_with(path, deal(1))
    query(path, "UPDATE events SET checksum = NULL")
    with SqliteEventStore(path) as store, pytest.raises(CorruptStoreError) as caught:
        store.read_stream("opp-1")
    assert "lost its checksum" in str(caught.value)


def test_the_checksum_is_the_documented_crc32_of_the_row(tmp_path: Path) -> None:
    """Anyone can check a row by hand: CRC32 of its position, columns and payload text."""
    path = tmp_path / "deals.db"
    store_with(path, deal(1), won(2))
    rows = query(
        path,
        "SELECT position, stream_id, version, type, at, recorded_at, payload, checksum FROM events",
    )
    assert len(rows) == 5  # four events and their pipeline's definition
    for *columns, checksum in rows:
        assert record_checksum(*columns) == checksum  # type: ignore[arg-type]
        assert isinstance(checksum, str)
        assert len(checksum) == 8


def test_text_sqlite_cannot_store_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """A lone surrogate in a payload raises ValidationError naming the record; the store is unchanged."""
    path = tmp_path / "deals.db"
    with SqliteEventStore(path) as store:
        with pytest.raises(ValidationError) as caught:
            store.append(
                "s",
                [EventRecord("s", 1, "Noted", AT, AT, {"n": "Deal \ud83d"})],
                expected_version=0,
            )
        assert "payload" in str(caught.value)
        assert list(store.read_all()) == []
        store.append("s", [EventRecord("s", 1, "Noted", AT, AT, {"n": "Deal"})], expected_version=0)


# -- schema versions --------------------------------------------------------------------


@pytest.fixture
def schema_1(tmp_path: Path) -> tuple[Path, list[Opportunity]]:
    """A schema 1 database, as an older oppcore wrote it (WAL), holding three deals."""
    deals = [deal(1), deal(2, "5.00"), won(3)]
    older = MemoryEventStore()
    older.pipelines_by_reference = False  # as oppcore 0.1: pipelines inline
    memory = Repository(older, clock=FixedClock(T0))
    memory.save_all(deals)
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA_1)
        with db:
            db.executemany(
                "INSERT INTO events (stream_id, version, type, at, recorded_at, payload) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (r.stream_id, r.version, r.type, r.at, r.recorded_at, json.dumps(r.payload))
                    for r in memory.store.read_all()
                ],
            )
    return path, deals


def meta(path: Path) -> dict[str, str]:
    """What ``oppcore_meta`` holds."""
    return {
        str(key): str(value) for key, value in query(path, "SELECT key, value FROM oppcore_meta")
    }


def columns_of(path: Path) -> list[str]:
    """The columns of ``events``."""
    return [str(row[1]) for row in query(path, "PRAGMA table_info(events)")]


def test_a_schema_1_store_opens_reads_and_verifies_without_being_written(
    schema_1: tuple[Path, list[Opportunity]],
) -> None:
    """Opening, reading and verifying a store from before checksums leaves it byte for byte."""
    path, deals = schema_1
    before = path.read_bytes()
    with open_repository(path) as repo:
        assert [repo.get(opp.id) for opp in deals] == deals
        assert sorted(repo.opportunities(), key=lambda opp: opp.id) == deals
        assert repo.verify() == []
    assert path.read_bytes() == before
    assert "checksum" not in columns_of(path)


def test_the_first_save_upgrades_a_schema_1_store_in_its_transaction(
    schema_1: tuple[Path, list[Opportunity]],
) -> None:
    """The first save adds the checksum column and sets schema 2; old rows read as before, new rows are checked."""
    path, deals = schema_1
    with open_repository(path) as repo:
        repo.save(deal(4, "1234.00"))
        assert sorted(repo.opportunities(), key=lambda opp: opp.id) == [*deals, deal(4, "1234.00")]
    assert meta(path) == {
        "schema_version": str(SCHEMA_VERSION),
        "checksums_from": "6",
    }
    checksums = query(path, "SELECT position, checksum IS NOT NULL FROM events ORDER BY position")
    assert checksums == [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 1)]
    with open_repository(path) as repo:
        assert repo.verify() == []
    replace_once(path, b'"1234.00"', b'"9234.00"')
    with open_repository(path) as repo, pytest.raises(CorruptStoreError):
        repo.get("opp-4")


def test_an_older_oppcore_cannot_write_unchecked_rows_into_an_upgraded_store(
    schema_1: tuple[Path, list[Opportunity]],
) -> None:
    """After the upgrade, a row inserted the schema 1 way (no checksum) is refused by SQLite itself."""
    path, _ = schema_1
    old_writer = sqlite3.connect(path)  # open before the upgrade, as a running older oppcore is
    try:
        with open_repository(path) as repo:
            repo.save(deal(4))
        with pytest.raises(sqlite3.IntegrityError, match="upgrade oppcore"), old_writer:
            old_writer.execute(
                "INSERT INTO events (stream_id, version, type, at, recorded_at, payload) "
                "VALUES ('x', 1, 'Noted', ?, ?, '{}')",
                (AT, AT),
            )
    finally:
        old_writer.close()
    assert query(path, "SELECT COUNT(*) FROM events") == [(6,)]


def test_a_store_opened_before_another_upgraded_it_checks_the_new_rows(
    schema_1: tuple[Path, list[Opportunity]],
) -> None:
    """A reader that opened the schema 1 file sees the upgrade and checks rows written after it."""
    path, _ = schema_1
    with open_repository(path) as reader:
        assert len(reader.opportunities()) == 3
        with open_repository(path) as writer:
            writer.save(deal(4, "1234.00"))
        query(
            path,
            "UPDATE events SET payload = replace(payload, '1234.00', '9234.00') WHERE position = 6",
        )
        with pytest.raises(CorruptStoreError):
            reader.get("opp-4")


def test_two_schema_1_stores_upgrade_once(schema_1: tuple[Path, list[Opportunity]]) -> None:
    """Two stores open on a schema 1 file both save: the file is upgraded once, all six deals read back."""
    path, _ = schema_1
    with open_repository(path) as first, open_repository(path) as second:
        first.save(deal(4))
        second.save(deal(5))
        first.save(deal(6))
    assert query(path, "SELECT value FROM oppcore_meta WHERE key = 'checksums_from'") == [("6",)]
    with open_repository(path) as repo:
        assert len(repo.opportunities()) == 6
        assert repo.verify() == []


def test_a_new_store_is_schema_2_with_a_checksum_on_every_row(tmp_path: Path) -> None:
    """A store created now is at the current schema, every row checksummed from position 1,
    and its deal table kept from the first event (it reflects all five: the four events and
    their pipeline's definition)."""
    path = tmp_path / "deals.db"
    store_with(path, deal(1), won(2))
    assert meta(path) == {
        "schema_version": "2",
        "checksums_from": "1",
        "deal_table_position": "5",
    }
    assert query(path, "SELECT COUNT(*) FROM events WHERE checksum IS NULL") == [(0,)]
    with SqliteEventStore(path) as store:
        assert [record.position for record in store.read_all()] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("version", ["3", "17"])
def test_a_newer_schema_is_refused_with_an_upgrade_message_and_left_alone(
    tmp_path: Path, version: str
) -> None:
    """A database of a schema newer than this oppcore knows raises StorageError saying to upgrade."""
    path = tmp_path / "deals.db"
    store_with(path, deal(1))
    query(path, "UPDATE oppcore_meta SET value = ? WHERE key = 'schema_version'", version)
    before = path.read_bytes()
    with pytest.raises(StorageError) as caught:
        SqliteEventStore(path)
    assert not isinstance(caught.value, sqlite3.Error)
    assert "upgrade oppcore" in str(caught.value).lower()
    assert repr(version) in str(caught.value)
    assert path.read_bytes() == before


@pytest.mark.parametrize("version", ["", "two", "2.0", "-1"])
def test_a_schema_version_that_is_not_a_version_is_damage(tmp_path: Path, version: str) -> None:
    """A schema version that is not a whole number raises CorruptStoreError naming it."""
    path = tmp_path / "deals.db"
    store_with(path, deal(1))
    query(path, "UPDATE oppcore_meta SET value = ? WHERE key = 'schema_version'", version)
    with pytest.raises(CorruptStoreError) as caught:
        SqliteEventStore(path)
    assert repr(version) in str(caught.value)


def test_reading_in_order_goes_past_the_first_page_of_rows(tmp_path: Path) -> None:
    """``read_all`` reads a page of rows at a time: every checked row of a large store comes back, in order."""
    path = tmp_path / "big.db"
    count = 10_050  # more than one page of 10,000
    with SqliteEventStore(path) as store:
        store.append_many(
            [
                (
                    f"s{n}",
                    [EventRecord(f"s{n}", v, "Noted", AT, AT, {"v": v}) for v in (1, 2, 3)],
                    0,
                )
                for n in range(count // 3)
            ]
        )
        positions = [record.position for record in store.read_all()]
        assert positions == list(range(1, count + 1))
        assert [r.position for r in store.read_all(after_position=9_999, limit=3)] == [
            10_000,
            10_001,
            10_002,
        ]

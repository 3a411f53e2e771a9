"""Damaged stores: each damage is reported as ``CorruptStoreError`` (or opens cleanly when the
design says so), never as a raw exception, and the damaged file is left byte for byte as it was.

The journal used here has a header (line 1) and five data lines (lines 2 to 6), one record
each, with Thai text and nested JSON in the payloads.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from oppcore import ConcurrencyError, CorruptStoreError, StorageError, open_repository
from oppcore.storage import EventRecord, JsonEventStore, SqliteEventStore

AT = "2026-01-05T09:00:00+07:00"
HEADER = {"format": "oppcore-journal", "version": 2}


def note(version: int) -> EventRecord:
    """Record ``version`` of stream ``ดีล``."""
    payload = {"ข้อความ": f"บันทึกที่ {version}", "nested": {"n": version, "list": [1, None]}}
    return EventRecord("ดีล", version, "Noted", AT, AT, payload)


def good_journal(path: Path) -> list[EventRecord]:
    """Write a healthy journal of five one-record lines at ``path``; return what it holds."""
    with JsonEventStore(path) as store:
        for version in range(1, 6):
            store.append("ดีล", [note(version)], expected_version=version - 1)
        return list(store.read_all())


def lines_of(data: bytes) -> list[bytes]:
    """The physical lines of ``data``, each with its newline."""
    return data.splitlines(keepends=True)


# -- the damages: each takes a healthy journal's bytes and gives (damaged bytes, bad line) ----


def flipped_byte(data: bytes) -> tuple[bytes, int]:
    """One byte of line 3 changed so that the line is still valid JSON: only the CRC can tell."""
    lines = lines_of(data)
    damaged = lines[2].replace(b'"n":2', b'"n":8', 1)
    assert damaged != lines[2]
    assert len(damaged) == len(lines[2])
    json.loads(damaged)
    lines[2] = damaged
    return b"".join(lines), 3


def flipped_byte_in_thai_text(data: bytes) -> tuple[bytes, int]:
    """One byte of a Thai character on line 4 changed to another Thai character, still valid JSON."""
    lines = lines_of(data)
    old, new = "ที่".encode(), "ทิ่".encode()
    damaged = lines[3].replace(old, new, 1)
    assert damaged != lines[3]
    assert len(damaged) == len(lines[3])
    json.loads(damaged)
    lines[3] = damaged
    return b"".join(lines), 4


def truncated_middle_line(data: bytes) -> tuple[bytes, int]:
    """Line 3 cut short, keeping its newline, with complete lines after it."""
    lines = lines_of(data)
    lines[2] = lines[2][: len(lines[2]) // 2] + b"\n"
    return b"".join(lines), 3


def missing_line_end(data: bytes) -> tuple[bytes, int]:
    """The newline between lines 4 and 5 lost, so two entries run together on line 4."""
    lines = lines_of(data)
    lines[3] = lines[3][:-1]
    return b"".join(lines), 4


def missing_header(data: bytes) -> tuple[bytes, int]:
    """The header line removed: the file starts with a data line."""
    return b"".join(lines_of(data)[1:]), 1


def future_header(data: bytes) -> tuple[bytes, int]:
    """A header naming journal format 3, which this oppcore does not know."""
    lines = lines_of(data)
    lines[0] = b'{"format":"oppcore-journal","version":3}\n'
    return b"".join(lines), 1


def boolean_header_version(data: bytes) -> tuple[bytes, int]:
    """A header whose version is ``true``, which Python compares equal to 1."""
    lines = lines_of(data)
    lines[0] = b'{"format":"oppcore-journal","version":true}\n'
    return b"".join(lines), 1


def float_header_version(data: bytes) -> tuple[bytes, int]:
    """A header whose version is ``1.0``: equal to 1, but not the integer oppcore writes."""
    lines = lines_of(data)
    lines[0] = b'{"format":"oppcore-journal","version":1.0}\n'
    return b"".join(lines), 1


def foreign_header(data: bytes) -> tuple[bytes, int]:
    """A JSON header of some other format."""
    lines = lines_of(data)
    lines[0] = b'{"format":"other-journal","version":1}\n'
    return b"".join(lines), 1


def csv_file(data: bytes) -> tuple[bytes, int]:
    """A CSV file, not JSON at all."""
    return "name,amount\nดีลใหญ่,1000\nดีลเล็ก,10\n".encode(), 1


def text_without_newline(data: bytes) -> tuple[bytes, int]:
    """A line of text that is not JSON and has no newline at all."""
    return b"these are my notes, not an event journal", 1


def binary_garbage(data: bytes) -> tuple[bytes, int]:
    """Random binary bytes, newlines among them."""
    noise = random.Random(20260105).randbytes(4096)
    return noise + b"\n", 1


DAMAGES: list[Callable[[bytes], tuple[bytes, int]]] = [
    flipped_byte,
    flipped_byte_in_thai_text,
    truncated_middle_line,
    missing_line_end,
    missing_header,
    future_header,
    boolean_header_version,
    float_header_version,
    foreign_header,
    csv_file,
    text_without_newline,
    binary_garbage,
]


@pytest.fixture(params=DAMAGES, ids=[damage.__name__ for damage in DAMAGES])
def damaged(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, bytes, int]:
    """A damaged journal: its path, its bytes, and the physical line of the damage."""
    path = tmp_path / "s.jsonl"
    good_journal(path)
    damage: Callable[[bytes], tuple[bytes, int]] = request.param
    data, line = damage(path.read_bytes())
    path.write_bytes(data)
    return path, data, line


# -- JSON Lines: damage -----------------------------------------------------------------


def test_opening_a_damaged_journal_raises_corrupt_store_error_at_the_damaged_line(
    damaged: tuple[Path, bytes, int],
) -> None:
    """Opening a damaged journal raises CorruptStoreError naming the physical line, and leaves the file untouched."""
    path, data, line = damaged
    with pytest.raises(CorruptStoreError) as caught:
        JsonEventStore(path)
    assert caught.value.line == line
    assert path.read_bytes() == data


def test_open_repository_on_a_damaged_journal_raises_corrupt_store_error(
    damaged: tuple[Path, bytes, int],
) -> None:
    """``open_repository`` on a damaged journal raises CorruptStoreError and leaves the file untouched."""
    path, data, line = damaged
    with pytest.raises(CorruptStoreError) as caught:
        open_repository(path)
    assert caught.value.line == line
    assert path.read_bytes() == data


def test_a_store_that_finds_damage_refuses_to_write(damaged: tuple[Path, bytes, int]) -> None:
    """A store open when the damage appears refuses every later append and read, and never touches the file."""
    path, data, line = damaged
    path.write_bytes(b"")
    with JsonEventStore(path) as store:
        path.write_bytes(data)
        for _ in range(2):
            with pytest.raises(CorruptStoreError) as caught:
                store.append(
                    "new", [EventRecord("new", 1, "Noted", AT, AT, {})], expected_version=0
                )
            assert caught.value.line == line
            assert path.read_bytes() == data
        with pytest.raises(CorruptStoreError):
            list(store.read_all())
        with pytest.raises(CorruptStoreError):
            store.append("new", [], expected_version=0)
    assert path.read_bytes() == data


def test_a_future_journal_format_asks_for_an_upgrade(tmp_path: Path) -> None:
    """A journal written in a newer format is refused with a message saying to upgrade oppcore."""
    path = tmp_path / "s.jsonl"
    good_journal(path)
    data, _ = future_header(path.read_bytes())
    path.write_bytes(data)
    with pytest.raises(CorruptStoreError) as caught:
        JsonEventStore(path)
    assert "upgrade" in str(caught.value).lower()
    assert path.read_bytes() == data


def test_damage_in_an_evicted_line_is_caught_when_it_is_read_again(tmp_path: Path) -> None:
    """A line damaged after the store indexed it raises CorruptStoreError (with its line) when read from disk again."""
    path = tmp_path / "s.jsonl"
    with JsonEventStore(path) as store:
        for version in range(1, 101):
            store.append("ดีล", [note(version)], expected_version=version - 1)
        data, line = flipped_byte(path.read_bytes())
        path.write_bytes(data)
        with pytest.raises(CorruptStoreError) as caught:
            list(store.read_all())
        assert caught.value.line == line
        with pytest.raises(CorruptStoreError):
            store.append("ดีล", [note(101)], expected_version=100)
    assert path.read_bytes() == data


# -- JSON Lines: what opens cleanly ------------------------------------------------------


def test_an_empty_journal_opens_cleanly_and_the_first_append_writes_the_header(
    tmp_path: Path,
) -> None:
    """An empty file opens as an empty store; its first append writes the header line, then the entry."""
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"")
    with JsonEventStore(path) as store:
        assert list(store.read_all()) == []
        assert list(store.stream_ids()) == []
        assert store.append("ดีล", [], expected_version=0) == 0
        assert path.read_bytes() == b""
        assert store.append("ดีล", [note(1)], expected_version=0) == 1
    first, *rest = lines_of(path.read_bytes())
    assert json.loads(first) == HEADER
    assert len(rest) == 1
    with JsonEventStore(path) as store:
        assert [item.payload for item in store.read_all()] == [note(1).payload]


TORN_CUTS: dict[str, Callable[[int], int]] = {
    "1-byte": lambda size: 1,
    "10-bytes": lambda size: 10,
    "half": lambda size: size // 2,
    "all-but-the-newline": lambda size: size - 1,
}


@pytest.mark.parametrize("cut", list(TORN_CUTS))
def test_a_torn_last_line_is_dropped_and_cut_by_the_next_append(tmp_path: Path, cut: str) -> None:
    """A last line without its newline opens cleanly without it, and the next append replaces it."""
    path = tmp_path / "s.jsonl"
    stored = good_journal(path)
    healthy = path.read_bytes()
    with JsonEventStore(path) as spare:
        spare.append("อื่น", [EventRecord("อื่น", 1, "Noted", AT, AT, {"x": 1})], expected_version=0)
    tail = lines_of(path.read_bytes())[-1]
    torn = healthy + tail[: TORN_CUTS[cut](len(tail))]
    assert not torn.endswith(b"\n")
    path.write_bytes(torn)
    with JsonEventStore(path) as store:
        assert list(store.read_all()) == stored
        assert list(store.stream_ids()) == ["ดีล"]
        assert path.read_bytes() == torn
        with pytest.raises(ConcurrencyError):
            store.append("ดีล", [note(5)], expected_version=4)
        assert path.read_bytes() == torn
        assert store.append("ดีล", [note(6)], expected_version=5) == 6
        assert list(store.read_all())[-1].position == 6
    data = path.read_bytes()
    assert data.startswith(healthy)
    assert data.endswith(b"\n")
    assert len(lines_of(data)) == len(lines_of(healthy)) + 1
    with JsonEventStore(path) as store:
        everything = list(store.read_all())
    assert everything[:5] == stored
    assert [(item.version, item.position) for item in everything] == [(v, v) for v in range(1, 7)]


def test_a_torn_header_alone_opens_as_an_empty_journal(tmp_path: Path) -> None:
    """A file holding only part of the header (a crash while creating it) opens empty and is rewritten on append."""
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"format":"oppcore-jou')
    with JsonEventStore(path) as store:
        assert list(store.read_all()) == []
        store.append("ดีล", [note(1)], expected_version=0)
    first, _ = lines_of(path.read_bytes())
    assert json.loads(first) == HEADER


# -- SQLite -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"these are my notes, not a database\n" * 20,
        b"hi",
        random.Random(7).randbytes(8192),
        b'{"format":"oppcore-journal","version":1}\n',
    ],
    ids=["text", "tiny", "binary", "journal"],
)
def test_a_file_that_is_not_a_database_is_refused_and_untouched(
    tmp_path: Path, content: bytes
) -> None:
    """Opening a file that is not an SQLite database raises StorageError (not a raw sqlite3 error) and changes nothing."""
    path = tmp_path / "s.db"
    path.write_bytes(content)
    with pytest.raises(StorageError) as caught:
        SqliteEventStore(path)
    assert not isinstance(caught.value, sqlite3.Error)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == content
    with pytest.raises(StorageError):
        open_repository(path)
    assert path.read_bytes() == content


@pytest.mark.parametrize("version", ["3", "17"])
def test_a_database_from_a_future_schema_is_refused_with_an_upgrade_message(
    tmp_path: Path, version: str
) -> None:
    """A database whose oppcore schema version is newer is refused, with a message saying to upgrade; its events stay."""
    path = tmp_path / "s.db"
    with SqliteEventStore(path) as store:
        store.append("ดีล", [note(1), note(2)], expected_version=0)
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.execute(
                "UPDATE oppcore_meta SET value = ? WHERE key = 'schema_version'", (version,)
            )
    finally:
        connection.close()
    with pytest.raises(StorageError) as caught:
        SqliteEventStore(path)
    assert not isinstance(caught.value, sqlite3.Error)
    assert "upgrade" in str(caught.value).lower()
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("SELECT COUNT(*) FROM events").fetchone() == (2,)
        assert connection.execute(
            "SELECT value FROM oppcore_meta WHERE key = 'schema_version'"
        ).fetchall() == [(version,)]
    finally:
        connection.close()

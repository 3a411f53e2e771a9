"""The event store contract against every backend, file modes, and ``open_repository``."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from oppcore import Repository, ValidationError, open_repository
from oppcore.storage import EventStore, JsonEventStore, MemoryEventStore, SqliteEventStore

# The contract is not a test module, so ask pytest to rewrite its asserts for clear failures.
pytest.register_assert_rewrite("tests.storage.contract")

from tests.storage.contract import EventStoreContract, record, records  # noqa: E402


class TestMemoryEventStore(EventStoreContract):
    """The contract for the in-memory store."""

    def make_store(self, tmp_path: Path) -> MemoryEventStore:
        return MemoryEventStore()


class TestJsonEventStore(EventStoreContract):
    """The contract for the JSON Lines journal."""

    def make_store(self, tmp_path: Path) -> JsonEventStore:
        return JsonEventStore(tmp_path / "s.jsonl")

    def reopen(self, store: EventStore, tmp_path: Path) -> JsonEventStore:
        assert isinstance(store, JsonEventStore)
        store.close()
        return JsonEventStore(tmp_path / "s.jsonl")


class TestSqliteEventStore(EventStoreContract):
    """The contract for the SQLite store."""

    def make_store(self, tmp_path: Path) -> SqliteEventStore:
        return SqliteEventStore(tmp_path / "s.db")

    def reopen(self, store: EventStore, tmp_path: Path) -> SqliteEventStore:
        assert isinstance(store, SqliteEventStore)
        store.close()
        return SqliteEventStore(tmp_path / "s.db")


# -- file modes -------------------------------------------------------------------------


def modes(folder: Path) -> dict[str, int]:
    """The permission bits of every file in ``folder``, by name."""
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()}


def test_the_journal_and_its_lock_file_are_private(tmp_path: Path) -> None:
    """The JSON Lines store creates its journal and lock file with mode 0600."""
    with JsonEventStore(tmp_path / "s.jsonl") as store:
        store.append("a", records("a", 1, 2), expected_version=0)
        found = modes(tmp_path)
    assert set(found) >= {"s.jsonl", "s.jsonl.lock"}
    assert set(found.values()) == {0o600}


def test_the_database_and_its_wal_and_shm_files_are_private(tmp_path: Path) -> None:
    """The SQLite store creates its database, and the WAL and SHM files while open, with mode 0600."""
    with SqliteEventStore(tmp_path / "s.db") as store:
        store.append("a", records("a", 1, 2), expected_version=0)
        assert list(store.read_all())
        found = modes(tmp_path)
    assert set(found) >= {"s.db", "s.db-wal", "s.db-shm"}
    assert set(found.values()) == {0o600}
    assert set(modes(tmp_path).values()) == {0o600}


def test_files_stay_private_under_a_permissive_umask(tmp_path: Path) -> None:
    """With umask 0, every file either file store creates is still mode 0600."""
    old = os.umask(0)
    try:
        with (
            JsonEventStore(tmp_path / "s.jsonl") as journal,
            SqliteEventStore(tmp_path / "s.db") as database,
        ):
            journal.append("a", [record("a", 1)], expected_version=0)
            database.append("a", [record("a", 1)], expected_version=0)
            found = modes(tmp_path)
    finally:
        os.umask(old)
    assert set(found) >= {"s.jsonl", "s.jsonl.lock", "s.db", "s.db-wal", "s.db-shm"}
    assert set(found.values()) == {0o600}


# -- open_repository ----------------------------------------------------------------------


def test_open_repository_with_none_is_in_memory() -> None:
    """``open_repository()`` and ``open_repository(None)`` give a repository on a memory store."""
    assert isinstance(open_repository().store, MemoryEventStore)
    assert isinstance(open_repository(None).store, MemoryEventStore)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("x.jsonl", JsonEventStore),
        ("x.db", SqliteEventStore),
        ("x.sqlite", SqliteEventStore),
        ("x.sqlite3", SqliteEventStore),
    ],
)
@pytest.mark.parametrize("as_path", [False, True], ids=["str", "Path"])
def test_open_repository_picks_the_backend_from_the_file_name(
    tmp_path: Path, name: str, kind: type[EventStore], as_path: bool
) -> None:
    """A ``.jsonl`` name opens a journal and ``.db``, ``.sqlite``, ``.sqlite3`` an SQLite database, privately."""
    target = tmp_path / name
    with open_repository(target if as_path else str(target)) as repo:
        assert isinstance(repo, Repository)
        assert isinstance(repo.store, kind)
        repo.store.append("a", [record("a", 1)], expected_version=0)
    with open_repository(target) as again:
        assert [item.stream_id for item in again.store.read_all()] == ["a"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize("target", ["x.csv", "x.json", "x", "x.db.bak", 42, b"x.db", 1.5])
def test_open_repository_refuses_anything_else_naming_the_accepted_forms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: object
) -> None:
    """Any other target is a ValidationError whose message lists None, .jsonl, .db, .sqlite and .sqlite3."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError) as caught:
        open_repository(target)  # type: ignore[arg-type]
    message = str(caught.value)
    for form in ("None", ".jsonl", ".db", ".sqlite", ".sqlite3"):
        assert form in message
    assert list(tmp_path.iterdir()) == []

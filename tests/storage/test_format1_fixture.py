"""Stores written by oppcore 0.1 (journal format 1, SQLite schema 1) open and read the same.

``tests/fixtures/format1`` was written by the code at commit 43f2bab: the same seeded sample
saved into a SQLite file and a JSON Lines journal, and that SQLite store's whole-repository
JSON document (``expected.json``), which says what both stores must read back as.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import attrs
import pytest

from oppcore import Repository, open_repository
from oppcore.io import load_json

FIXTURES = Path(__file__).parent.parent / "fixtures" / "format1"


def _expected() -> Repository:
    return load_json(FIXTURES / "expected.json")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _content(repo: Repository) -> tuple[object, ...]:
    """What a repository holds, leads, campaigns and pipelines compared by content."""
    return (
        sorted(repo.opportunities(), key=lambda o: o.id),
        sorted((attrs.evolve(v, version=0) for v in repo.leads()), key=lambda v: v.id),
        sorted((attrs.evolve(v, version=0) for v in repo.campaigns()), key=lambda v: v.id),
        sorted((attrs.evolve(v, version=0) for v in repo.pipelines()), key=lambda v: v.id),
    )


@pytest.mark.parametrize("name", ["store.db", "store.jsonl"])
def test_a_format_1_store_reads_exactly_what_it_was_given(tmp_path: Path, name: str) -> None:
    """Every deal, lead, campaign and pipeline reads back as oppcore 0.1 stored it, and
    verify finds it sound."""
    path = tmp_path / name
    shutil.copyfile(FIXTURES / name, path)
    with open_repository(path) as repo:
        assert _content(repo) == _content(_expected())
        assert repo.verify() == []


@pytest.mark.parametrize("name", ["store.db", "store.jsonl"])
def test_reading_a_format_1_store_writes_nothing(tmp_path: Path, name: str) -> None:
    """Opening, reading and verifying leave the file byte for byte as it was."""
    path = tmp_path / name
    shutil.copyfile(FIXTURES / name, path)
    before = _digest(path)
    with open_repository(path) as repo:
        repo.opportunities()
        repo.verify()
    assert _digest(path) == before


@pytest.mark.parametrize("name", ["store.db", "store.jsonl"])
def test_a_format_1_store_takes_new_saves_and_keeps_the_old(tmp_path: Path, name: str) -> None:
    """A save into an old store lands, and everything stored before still reads the same."""
    path = tmp_path / name
    shutil.copyfile(FIXTURES / name, path)
    with open_repository(path) as repo:
        first = sorted(repo.opportunities(), key=lambda o: o.id)[0]
        changed = repo.save(first.update(description="Checked after the upgrade"))
    with open_repository(path) as repo:
        assert repo.get(first.id) == changed
        others = [o for o in repo.opportunities() if o.id != first.id]
        expected = [o for o in _expected().opportunities() if o.id != first.id]
        assert sorted(others, key=lambda o: o.id) == sorted(expected, key=lambda o: o.id)
        assert repo.verify() == []

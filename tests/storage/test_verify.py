"""``Repository.verify``: reads a store end to end, names what is damaged, changes nothing."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from oppcore import FixedClock, Lead, Money, Opportunity, Pipeline, open_repository
from oppcore.storage.sqlite import record_checksum
from tests.conftest import T0


def _fill(path: Path) -> None:
    clock = FixedClock(T0)
    opp = Opportunity.open(id="opp-1", name="Fleet", amount=Money("100", "USD"), clock=clock)
    clock.advance(timedelta(days=1))
    opp = opp.move_to("in_progress", clock=clock).win(clock=clock)
    lead = Lead(id="lead-1", name="Somchai", company="Siam Co.", source="web")
    with open_repository(path, clock=clock) as repo:
        repo.save_all([Pipeline.default(), lead, opp])


@pytest.mark.parametrize("name", ["store.db", "store.jsonl"])
def test_a_sound_store_has_no_problems(tmp_path: Path, name: str) -> None:
    _fill(tmp_path / name)
    with open_repository(tmp_path / name) as repo:
        assert repo.verify() == []


def test_an_in_memory_store_verifies() -> None:
    repo = open_repository()
    repo.save(Opportunity.open(id="opp-1", name="Fleet", clock=FixedClock(T0)))
    assert repo.verify() == []


def test_a_damaged_record_is_named_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    _fill(path)
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE events SET payload = '{\"oops\": 1}' WHERE stream_id = 'opp-1' AND version = 2"
        )
    before = path.read_bytes()

    with open_repository(path) as repo:
        problems = repo.verify()

    assert len(problems) == 1
    assert "'opp-1'" in problems[0]
    assert "version 2" in problems[0]
    assert path.read_bytes() == before


def test_a_gap_in_versions_is_named(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    _fill(path)
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM events WHERE stream_id = 'opp-1' AND version = 2")

    with open_repository(path) as repo:
        problems = repo.verify()

    assert problems == ["Stream 'opp-1' holds version 3 where version 2 belongs."]


def test_a_history_that_does_not_replay_is_named(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    _fill(path)
    with sqlite3.connect(path) as db:  # the win now claims to come from a stage it was not in
        db.execute(
            'UPDATE events SET payload = replace(payload, \'"from_stage":"in_progress"\', '
            "'\"from_stage\":\"wait\"') WHERE stream_id = 'opp-1' AND version = 3"
        )
        changed = db.execute("SELECT changes()").fetchone()[0]
        # Seal the edited row again, so what verify meets is a history, not a bad checksum.
        row = db.execute(
            "SELECT position, stream_id, version, type, at, recorded_at, payload "
            "FROM events WHERE stream_id = 'opp-1' AND version = 3"
        ).fetchone()
        db.execute(
            "UPDATE events SET checksum = ? WHERE position = ?", (record_checksum(*row), row[0])
        )
    assert changed == 1

    with open_repository(path) as repo:
        problems = repo.verify()

    assert len(problems) == 1
    assert "does not replay" in problems[0]

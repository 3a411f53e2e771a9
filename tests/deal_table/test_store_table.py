"""Every store keeps the deal table: ``find`` and ``count`` answer from it, it always equals the
projection of the events, and SQL tools read it.

The reference is the projector itself: for every deal, ``opp.versions()``; the current row of
each deal is the one open-ended in both times.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from oppcore import (
    DealVersion,
    Opportunity,
    Outcome,
    Repository,
    ValidationError,
    open_repository,
    sample,
)
from oppcore.storage import EventStore, MemoryEventStore, SqliteEventStore, event_record
from tests.storage.postgres_support import as_url, fresh_schema, server
from tests.strategies import built_opportunities

SAMPLE = sample.generate(opportunities=120)
FIXTURES = Path(__file__).parent.parent / "fixtures" / "format1"


def _key(row: DealVersion) -> tuple[str, int, datetime]:
    return row.opportunity_id, row.version, row.recorded_from


def _projection(opps: Iterable[Opportunity]) -> list[DealVersion]:
    return sorted((row for opp in opps for row in opp.versions()), key=_key)


def _current(opps: Iterable[Opportunity]) -> list[DealVersion]:
    return [row for row in _projection(opps) if row.is_current]


def _by_close(rows: list[DealVersion]) -> list[DealVersion]:
    """The default order: expected close, None last, ties by opportunity id."""
    return sorted(
        rows,
        key=lambda r: (r.expected_close is None, r.expected_close or date.min, r.opportunity_id),
    )


def _stored(repo: Repository) -> list[DealVersion]:
    rows = repo.deal_versions()
    assert rows == sorted(rows, key=_key)
    return rows


def test_the_stored_deal_frame_is_the_frame_of_the_rows(opener: Callable[[], Repository]) -> None:
    with opener() as repo:
        repo.save_all(SAMPLE.opportunities)
        frame = repo.deal_frame()
        assert sorted((_row(item) for item in frame.iter_rows(named=True)), key=_key) == (
            _projection(SAMPLE.opportunities)
        )
        now = repo.deal_frame(current=True)
        assert sorted(now["opportunity_id"].to_list()) == sorted(o.id for o in SAMPLE.opportunities)


def _row(item: dict[str, Any]) -> DealVersion:
    fields = dict(item)
    for name in ("amount", "probability", "expected_revenue"):
        if fields[name] is not None:
            fields[name] = Decimal(fields[name])
    return DealVersion(**fields)


# -- find and count ----------------------------------------------------------------------


def test_find_gives_every_current_row_in_expected_close_order(
    opener: Callable[[], Repository],
) -> None:
    with opener() as repo:
        repo.save_all([*SAMPLE.pipelines, *SAMPLE.campaigns, *SAMPLE.opportunities])
        assert repo.find() == _by_close(_current(SAMPLE.opportunities))
        assert repo.count() == len(SAMPLE.opportunities)
    with opener() as again:  # and from a store opened afresh
        assert again.find() == _by_close(_current(SAMPLE.opportunities))


def test_each_filter_and_order_matches_the_rows_it_names(
    opener: Callable[[], Repository],
) -> None:
    current = _current(SAMPLE.opportunities)
    owner = current[0].owner
    campaign = next(row.campaign_id for row in current if row.campaign_id)
    with opener() as repo:
        repo.save_all(SAMPLE.opportunities)
        cases: list[tuple[dict[str, Any], Callable[[DealVersion], bool]]] = [
            (
                {"owner": owner, "outcome": "open"},
                lambda r: r.owner == owner and r.outcome == "open",
            ),
            ({"outcome": Outcome.WON}, lambda r: r.outcome == "won"),
            ({"outcome": ["won", Outcome.LOST]}, lambda r: r.outcome in ("won", "lost")),
            ({"campaign_id": campaign}, lambda r: r.campaign_id == campaign),
            (
                {"stage": {"proposal", "negotiation"}},
                lambda r: r.stage in ("proposal", "negotiation"),
            ),
            (
                {"closing_from": date(2026, 4, 1), "closing_to": date(2026, 6, 30)},
                lambda r: (
                    r.expected_close is not None
                    and date(2026, 4, 1) <= r.expected_close <= date(2026, 6, 30)
                ),
            ),
            ({"lead_source": "nobody"}, lambda r: False),
        ]
        for filters, wanted in cases:
            want = _by_close([row for row in current if wanted(row)])
            assert repo.find(**filters) == want, filters
            assert repo.count(**filters) == len(want), filters
        by_amount = repo.find(order_by="-amount")
        present = [row for row in current if row.amount is not None]
        absent = [row for row in current if row.amount is None]
        want = sorted(
            sorted(present, key=lambda r: r.opportunity_id),
            key=lambda r: r.amount or 0,
            reverse=True,
        )
        assert by_amount == want + sorted(absent, key=lambda r: r.opportunity_id)
        by_name = repo.find(order_by="name", limit=7, offset=3)
        assert by_name == sorted(current, key=lambda r: (r.name, r.opportunity_id))[3:10]


def test_bad_find_arguments_are_refused_naming_them(opener: Callable[[], Repository]) -> None:
    with opener() as repo:
        repo.save_all(SAMPLE.opportunities[:3])
        cases: list[tuple[dict[str, Any], str]] = [
            ({"colour": "red"}, "no argument 'colour'"),
            ({"outcome": "maybe"}, "'maybe'"),
            ({"owner": 7}, "7"),
            ({"owner": []}, "empty collection"),
            ({"closing_from": "2026-01-01"}, "2026-01-01"),
            ({"order_by": "height"}, "'height'"),
            ({"limit": -1}, "-1"),
            ({"offset": 1.5}, "1.5"),
        ]
        for arguments, needle in cases:
            with pytest.raises(ValidationError, match=needle):
                repo.find(**arguments)
        with pytest.raises(ValidationError, match="filters only"):
            repo.count(order_by="name")


# -- the table follows every save ---------------------------------------------------------


def test_the_table_follows_every_save_and_back_dated_change(
    opener: Callable[[], Repository],
) -> None:
    """Saved a few events at a time, the table is always the projection of the events."""
    deals = SAMPLE.opportunities[:40]
    with opener() as repo:
        longest = max(opp.version for opp in deals)
        for count in range(1, longest + 1):
            step = [Opportunity.replay(o.events[:count]) for o in deals if o.version >= count]
            repo.save_all(step)
            assert _stored(repo) == _projection(
                [Opportunity.replay(o.events[: min(count, o.version)]) for o in deals]
            )
        assert repo.find() == _by_close(_current(deals))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(built=st.lists(built_opportunities(max_commands=8), min_size=1, max_size=4), data=st.data())
def test_any_histories_saved_in_any_pieces_leave_the_projection_in_sqlite(
    tmp_path_factory: pytest.TempPathFactory, built: list[Any], data: st.DataObject
) -> None:
    """Generated histories (back-dated changes, events at one instant, every event kind),
    saved in random pieces, leave exactly the projection in SQLite's table."""
    opps = {b.opp.id: b.opp for b in built}
    assume(not any(i.startswith(("lead:", "campaign:", "pipeline:")) for i in opps))
    path = tmp_path_factory.mktemp("prop") / "deals.db"
    with open_repository(path) as repo:
        saved = dict.fromkeys(opps, 0)
        while any(saved[i] < opps[i].version for i in opps):
            pending = [i for i in opps if saved[i] < opps[i].version]
            chosen = data.draw(st.sampled_from(pending))
            upto = data.draw(st.integers(saved[chosen] + 1, opps[chosen].version))
            repo.save(Opportunity.replay(opps[chosen].events[:upto]))
            saved[chosen] = upto
        assert _stored(repo) == _projection(list(opps.values()))
        assert repo.verify() == []


# -- what SQL tools see -------------------------------------------------------------------


def test_sqlite_tools_read_the_table_as_typed_text(tmp_path: Path) -> None:
    """Exact decimal text, ISO dates and fixed-width UTC times: CAST, date() and ORDER BY work."""
    path = tmp_path / "deals.db"
    with open_repository(path) as repo:
        repo.save_all(SAMPLE.opportunities)
    current = {row.opportunity_id: row for row in _current(SAMPLE.opportunities)}
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT opportunity_id, amount, CAST(amount AS REAL), date(expected_close), "
            "created_at FROM oppcore_deal_versions "
            "WHERE valid_to IS NULL AND recorded_to IS NULL ORDER BY created_at"
        ).fetchall()
        plan = " ".join(
            str(step)
            for step in db.execute(
                "EXPLAIN QUERY PLAN SELECT * FROM oppcore_deal_versions WHERE owner = 'x' "
                "AND valid_to IS NULL AND recorded_to IS NULL"
            )
        )
    assert {row[0] for row in rows} == set(current)
    for opp_id, text, real, close, created in rows:
        want = current[opp_id]
        assert (Decimal(text) if text is not None else None) == want.amount
        if want.amount is not None:
            assert real == float(want.amount)
        assert close == (want.expected_close.isoformat() if want.expected_close else None)
        assert datetime.fromisoformat(created) == want.created_at
        assert len(created) == len("2026-01-05T02:00:00.000000+00:00")
    assert [row[4] for row in rows] == sorted(row[4] for row in rows)
    assert "oppcore_deal_versions_owner" in plan


def test_postgres_keeps_typed_columns() -> None:
    import psycopg

    with fresh_schema(server()) as conninfo:
        with open_repository(as_url(conninfo)) as repo:
            repo.save_all(SAMPLE.opportunities[:20])
        with psycopg.connect(conninfo) as connection:
            kinds: dict[str, str] = dict(
                connection.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = 'oppcore_deal_versions' "
                    "AND table_schema = current_schema()"
                ).fetchall()
            )
            total = connection.execute(
                "SELECT SUM(amount) FROM oppcore_deal_versions "
                "WHERE valid_to IS NULL AND recorded_to IS NULL"
            ).fetchone()
    assert kinds["amount"] == "numeric"
    assert kinds["expected_close"] == "date"
    assert kinds["valid_from"] == "timestamp with time zone"
    want = sum((r.amount for r in _current(SAMPLE.opportunities[:20]) if r.amount), Decimal(0))
    assert total is not None
    assert total[0] == want


# -- stores that do not have it yet, writers that do not keep it, damage ------------------


def _raw_append(store: EventStore, opp: Opportunity, since: int) -> None:
    """What an older oppcore (or any EventStore user) writes: events, no table rows."""
    store.append(opp.id, [event_record(e) for e in opp.events[since:]], expected_version=since)


def test_a_writer_that_leaves_the_table_behind_is_caught_up_by_the_next_query(
    opener: Callable[[], Repository],
) -> None:
    deals = SAMPLE.opportunities[:10]
    with opener() as repo:
        repo.save_all([Opportunity.replay(o.events[:1]) for o in deals])
        for opp in deals:
            _raw_append(repo.store, opp, 1)
        with opener() as other:
            assert other.find() == _by_close(_current(deals))
            assert other.deal_table_status() in (
                "the deal table reflects every event",
                "the deal table is kept in memory, built when first read",
            )
        assert repo.find() == _by_close(_current(deals))
        assert repo.verify() == []


def test_a_format_1_store_gets_its_table_on_first_query_and_verify_writes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    shutil.copyfile(FIXTURES / "store.db", path)
    before = path.read_bytes()
    with open_repository(path) as repo:
        assert repo.deal_table_status().startswith("the deal table is not built yet")
        assert repo.verify() == []
        opps = repo.opportunities()
    assert path.read_bytes() == before
    with open_repository(path) as repo:
        assert repo.find() == _by_close(_current(opps))
        assert repo.deal_table_status() == "the deal table reflects every event"
        assert repo.verify() == []


def test_verify_names_a_damaged_row_and_rebuild_restores_it(tmp_path: Path) -> None:
    path = tmp_path / "deals.db"
    with open_repository(path) as repo:
        repo.save_all(SAMPLE.opportunities[:10])
    victim = SAMPLE.opportunities[3].id
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE oppcore_deal_versions SET amount = '9' WHERE opportunity_id = ?", (victim,)
        )
        db.execute(
            "DELETE FROM oppcore_deal_versions WHERE opportunity_id = ? AND version = 1",
            (SAMPLE.opportunities[5].id,),
        )
    with open_repository(path) as repo:
        problems = repo.verify()
        assert len(problems) == 2
        assert victim in problems[0]
        assert "rebuild_deal_table()" in problems[0]
        assert SAMPLE.opportunities[5].id in problems[1]
        repo.rebuild_deal_table()
        assert repo.verify() == []
        assert _stored(repo) == _projection(SAMPLE.opportunities[:10])


def test_two_repositories_writing_one_sqlite_file_never_leave_the_table_behind(
    tmp_path: Path,
) -> None:
    path = tmp_path / "deals.db"
    deals = SAMPLE.opportunities[:30]
    with open_repository(path) as first, open_repository(path) as second:
        for index, opp in enumerate(deals):
            (first if index % 2 else second).save(opp)
            store = first.store
            assert isinstance(store, SqliteEventStore)
            assert store.deal_table_position() == store.last_position()
        assert _stored(second) == _projection(deals)


# -- reads that read only what changed ----------------------------------------------------


class _CountingStore(MemoryEventStore):
    """A real in-memory store that counts the records its global reads hand out."""

    def __init__(self) -> None:
        super().__init__()
        self.handed = 0

    def read_all(self, *, after_position: int = 0, limit: int | None = None) -> Iterator[Any]:
        for record in super().read_all(after_position=after_position, limit=limit):
            self.handed += 1
            yield record


def test_opportunities_and_snapshots_read_only_what_changed_since_the_last_call() -> None:
    store = _CountingStore()
    repo = Repository(store)
    repo.save_all([*SAMPLE.pipelines, *SAMPLE.campaigns, *SAMPLE.opportunities])
    assert sorted(repo.opportunities(), key=lambda o: o.id) == sorted(
        SAMPLE.opportunities, key=lambda o: o.id
    )
    assert len(repo.campaigns()) == len(SAMPLE.campaigns)
    changed = SAMPLE.opportunities[7].update(owner="someone new")
    repo.save(changed)
    store.handed = 0
    again = repo.opportunities()
    assert store.handed == 1  # the one new event
    assert next(o for o in again if o.id == changed.id) == changed
    assert len(again) == len(SAMPLE.opportunities)
    store.handed = 0
    assert len(repo.campaigns()) == len(SAMPLE.campaigns)
    assert store.handed == 1


def test_a_stored_value_beyond_a_frame_is_refused_naming_the_deal_never_rounded(
    tmp_path: Path,
) -> None:
    """SQLite's fast frame parses plain decimal text only; anything else takes the exact path:
    an exponent form reads exactly, more than 18 places is the ValidationError deal_frame gives."""
    from oppcore import FixedClock, LineItem, Money

    clock = FixedClock(datetime(2026, 1, 5, 9, tzinfo=timezone.utc))
    big = Opportunity.open(
        name="Exponent", id="e-1", amount=Money(Decimal("1E+3"), "THB"), clock=clock
    )
    tiny = Opportunity.open(
        name="Tiny",
        id="t-1",
        currency="THB",
        line_items=[
            LineItem(
                product="Screw",
                unit_price=Money("0.000001", "THB"),
                quantity=Decimal("0.000001"),
                discount=Decimal("0.000001"),
            )
        ],
        clock=clock,
    )
    assert tiny.versions()[0].amount == Decimal("9.9999999E-13")  # 20 places
    with open_repository(tmp_path / "a.db") as repo:
        repo.save(big)
        frame = repo.deal_frame()
        assert frame["amount"].to_list() == [Decimal(1000)]
        repo.save(tiny)
        with pytest.raises(ValidationError, match="'t-1'"):
            repo.deal_frame()
        assert repo.find(order_by="name")[1].amount == Decimal("9.9999999E-13")

"""Reading a deal is linear in its events, however many there are (issue 11, case 12).

Growth is judged by a ratio within one process (n events against 4n, a generous 8x where
linear is 4x and quadratic 16x), never by an absolute time.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from oppcore import FixedClock, LineItem, Money, Opportunity, Repository
from oppcore.storage import SqliteEventStore

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
GROWTH = 8.0  # 4x the events: linear is 4x, quadratic 16x


def _busy_deal(events: int) -> Opportunity:
    """A deal of ``events`` events: moves, field changes and a few lines added, changed, removed."""
    clock = FixedClock(START)
    opp = Opportunity.open(name="Big", id="big", currency="USD", clock=clock)
    for n in range(1, events):
        clock.advance(timedelta(seconds=1))
        step = n % 10
        if step in (0, 5):
            opp = opp.move_to("in_progress" if opp.stage_key == "wait" else "wait", clock=clock)
        elif step == 3:
            opp = opp.add_line_item(LineItem("p", Money("1.25", "USD"), id=f"l{n}"), clock=clock)
        elif step == 7 and len(opp.line_items) > 5:
            opp = opp.remove_line_item(opp.line_items[0].id, clock=clock)
        elif step == 8 and opp.line_items:
            opp = opp.update_line_item(opp.line_items[-1].id, quantity=n % 7 + 1, clock=clock)
        else:
            opp = opp.update(description=f"call {n}", clock=clock)
    return opp


def _lines_deal(lines: int) -> Opportunity:
    """A deal with ``lines`` line items, added one by one."""
    clock = FixedClock(START)
    opp = Opportunity.open(name="Lines", id="lines", currency="USD", clock=clock)
    for n in range(lines):
        opp = opp.add_line_item(LineItem("p", Money("0.10", "USD"), id=f"l{n}"), clock=clock)
    return opp


def _median_time(work: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _growth(small: Callable[[], object], large: Callable[[], object]) -> float:
    small()  # warm up
    return _median_time(large) / max(_median_time(small), 1e-6)


def test_replay_and_history_of_12000_events_grow_linearly() -> None:
    """Replaying (and reading the history of) 4x the events takes well under 16x the time."""
    small, large = _busy_deal(3_000), _busy_deal(12_000)
    assert Opportunity.replay(large.events) == large
    assert (
        _growth(lambda: Opportunity.replay(small.events), lambda: Opportunity.replay(large.events))
        < GROWTH
    )
    assert _growth(small.history, large.history) < GROWTH


def test_adding_line_items_one_by_one_grows_linearly() -> None:
    """Adding 8,000 lines one by one takes well under 16x the time of adding 2,000."""
    assert _growth(lambda: _lines_deal(2_000), lambda: _lines_deal(8_000)) < GROWTH
    opp = _lines_deal(8_000)
    assert opp.amount == Money("800.00", "USD")
    assert Opportunity.replay(opp.events) == opp


def test_get_of_a_deal_from_sqlite_grows_linearly() -> None:
    """Reading a deal of 4,000 line items from SQLite takes well under 16x reading one of 1,000."""
    small, large = _lines_deal(1_000), _lines_deal(4_000)
    with tempfile.TemporaryDirectory() as folder:  # noqa: SIM117
        with (
            Repository(SqliteEventStore(os.path.join(folder, "small.db"))) as repo_small,
            Repository(SqliteEventStore(os.path.join(folder, "large.db"))) as repo_large,
        ):
            repo_small.save(small)
            repo_large.save(large)
            assert repo_large.get("lines") == large
            ratio = _growth(lambda: repo_small.get("lines"), lambda: repo_large.get("lines"))
    assert ratio < GROWTH


def test_commands_on_one_value_branch_without_seeing_each_other() -> None:
    """Two commands on the same value give two deals; neither, nor the value, sees the other's event."""
    clock = FixedClock(START)
    base = Opportunity.open(name="Base", id="b", currency="USD", clock=clock)
    base = base.add_line_item(LineItem("p", Money("1", "USD"), id="a"), clock=clock)
    first = base.update(owner="alice", clock=clock).add_line_item(
        LineItem("q", Money("2", "USD"), id="x"), clock=clock
    )
    second = base.add_line_item(LineItem("r", Money("3", "USD"), id="x"), clock=clock)
    third = base.update(owner="bob", clock=clock)
    assert base.version == 2
    assert len(base.events) == 2
    assert len(base.line_items) == 1
    assert [item.product for item in first.line_items] == ["p", "q"]
    assert [item.product for item in second.line_items] == ["p", "r"]
    assert (first.owner, second.owner, third.owner) == ("alice", None, "bob")
    assert first.amount == Money("3", "USD")
    assert second.amount == Money("4", "USD")
    for value in (base, first, second, third):
        assert Opportunity.replay(value.events) == value
    assert base.line_item("a").product == "p"
    assert first.line_item("x").product == "q"
    assert second.line_item("x").product == "r"


line_commands = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "remove", "change"]),
        st.decimals(min_value=0, max_value=1000, places=3),
        st.sampled_from([Decimal(1), Decimal("0.5"), Decimal(3), Decimal("2.250")]),
        st.integers(min_value=0, max_value=100),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(line_commands)
def test_the_line_total_is_the_sum_of_the_lines_digit_for_digit(commands: list) -> None:  # type: ignore[type-arg]
    """Kept as lines come and go, the total is what adding the lines up gives, digit for digit."""
    clock = FixedClock(START)
    opp = Opportunity.open(name="Sum", id="s", currency="THB", clock=clock)
    for n, (kind, price, quantity, pick) in enumerate(commands):
        lines = opp.line_items
        if kind == "add" or not lines:
            item = LineItem("p", Money(price, "THB"), quantity=quantity, id=f"l{n}")
            opp = opp.add_line_item(item, clock=clock)
        elif kind == "remove":
            opp = opp.remove_line_item(lines[pick % len(lines)].id, clock=clock)
        else:
            target = lines[pick % len(lines)]
            if target.unit_price != Money(price, "THB") or target.quantity != quantity:
                opp = opp.update_line_item(
                    target.id, unit_price=Money(price, "THB"), quantity=quantity, clock=clock
                )
        assert opp.history()[-1].amount == opp.amount
        if opp.line_items:
            expected = opp.line_items[0].total
            for item in opp.line_items[1:]:
                expected = expected + item.total
            assert opp.amount is not None
            assert str(opp.amount.amount) == str(expected.amount)
        else:
            assert opp.amount is None
    assert Opportunity.replay(opp.events) == opp

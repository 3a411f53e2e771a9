"""Properties every opportunity has, whatever valid commands made it."""

from __future__ import annotations

import copy
import itertools
import pickle
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Context, Decimal, localcontext
from functools import partial
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from oppcore import (
    CurrencyMismatchError,
    FixedClock,
    LineItem,
    Money,
    OppcoreError,
    Opportunity,
    Outcome,
    Pipeline,
    Stage,
    TransitionError,
    ValidationError,
)
from tests.strategies import (
    CURRENCIES,
    Built,
    built_opportunities,
    graph_allows,
    missing_for,
    offsets,
)

ONE_MICROSECOND = timedelta(microseconds=1)
EXACT = Context(prec=500)

#: A command to try, what it is, and the error it must raise (None: it must change nothing).
Attempt = tuple[str, Callable[[], Opportunity], type[OppcoreError] | None]


def _other_currency(currency: str) -> str:
    return next(code for code in CURRENCIES if code != currency)


def _unknown_stage(pipeline: Pipeline) -> str:
    key = "ไม่มีขั้นนี้"
    while key in pipeline:
        key += "?"
    return key


def _refused_commands(opp: Opportunity, clock: FixedClock) -> list[Attempt]:
    """Commands that must fail on ``opp``, each for one reason, with the error they must raise."""
    now = clock.now()
    pipeline = opp.pipeline
    unknown = _unknown_stage(pipeline)
    retold = opp.description + "!"  # a real change, so only the time can be wrong
    attempts: list[Attempt] = [
        ("move to an unknown stage", lambda: opp.move_to(unknown, clock=clock), ValidationError),
        ("win into an unknown stage", lambda: opp.win(stage=unknown, clock=clock), ValidationError),
        ("probability 1000", lambda: opp.update(probability=1000, clock=clock), ValidationError),
        ("probability -1", lambda: opp.update(probability="-1", clock=clock), ValidationError),
        ("probability NaN", lambda: opp.update(probability="NaN", clock=clock), ValidationError),
        (
            "probability as float",
            lambda: opp.update(probability=50.0, clock=clock),
            ValidationError,
        ),
        (
            "stage through update",
            lambda: opp.update(stage=opp.stage_key, clock=clock),
            ValidationError,
        ),
        ("unknown field", lambda: opp.update(colour="แดง", clock=clock), ValidationError),
        ("blank name", lambda: opp.update(name="   ", clock=clock), ValidationError),
        ("amount as float", lambda: opp.update(amount=1.5, clock=clock), ValidationError),
        ("amount as text", lambda: opp.update(amount="100", clock=clock), ValidationError),
        ("unknown currency", lambda: opp.update(currency="ZZZ", clock=clock), ValidationError),
        (
            "naive event time",
            lambda: opp.update(description=retold, at=now.replace(tzinfo=None), clock=clock),
            ValidationError,
        ),
        (
            "event time after the clock",
            lambda: opp.update(description=retold, at=now + ONE_MICROSECOND, clock=clock),
            ValidationError,
        ),
        (
            "event time before the previous event",
            lambda: opp.update(
                description=retold, at=opp.events[-1].at - ONE_MICROSECOND, clock=clock
            ),
            ValidationError,
        ),
        (
            "remove an unknown line",
            lambda: opp.remove_line_item("no-such-line", clock=clock),
            ValidationError,
        ),
        (
            "change an unknown line",
            lambda: opp.update_line_item("no-such-line", quantity=2, clock=clock),
            ValidationError,
        ),
        (
            "win into an open stage",
            lambda: opp.win(stage=pipeline.first_stage.key, clock=clock),
            ValidationError,
        ),
        (
            "lose into a won stage",
            lambda: opp.lose(stage=pipeline.won_stages[0].key, clock=clock),
            ValidationError,
        ),
        ("blank lost reason", lambda: opp.lose(reason=" ", clock=clock), ValidationError),
    ]
    if opp.currency is not None:
        other = _other_currency(opp.currency)
        attempts += [
            (
                "amount in another currency",
                lambda: opp.update(amount=Money("1", other), clock=clock),
                CurrencyMismatchError,
            ),
            (
                "line in another currency",
                lambda: opp.add_line_item(LineItem("อื่น", Money("1", other)), clock=clock),
                CurrencyMismatchError,
            ),
        ]
        if opp.line_items or opp.amount_is_manual:
            attempts.append(
                (
                    "currency other than the deal's money",
                    lambda: opp.update(currency=other, clock=clock),
                    CurrencyMismatchError,
                )
            )
        if opp.line_items:
            attempts.append(
                (
                    "line price in another currency",
                    lambda: opp.update_line_item(
                        opp.line_items[0].id, unit_price=Money("1", other), clock=clock
                    ),
                    CurrencyMismatchError,
                )
            )
    if opp.line_items:
        first = opp.line_items[0]
        attempts += [
            (
                "add a line twice",
                lambda: opp.add_line_item(first, clock=clock),
                ValidationError,
            ),
            (
                "quantity 0",
                lambda: opp.update_line_item(first.id, quantity=0, clock=clock),
                ValidationError,
            ),
            (
                "discount 101",
                lambda: opp.update_line_item(first.id, discount=101, clock=clock),
                ValidationError,
            ),
            (
                "a line its own parent",
                lambda: opp.update_line_item(first.id, parent_id=first.id, clock=clock),
                ValidationError,
            ),
            (
                "a parent the deal lacks",
                lambda: opp.update_line_item(first.id, parent_id="no-such-line", clock=clock),
                ValidationError,
            ),
        ]
        parents = {line.parent_id for line in opp.line_items} - {None}
        for line in opp.line_items:
            if line.id in parents:
                attempts.append(
                    (
                        f"remove line {line.id!r}, which has add-ons",
                        partial(opp.remove_line_item, line.id, clock=clock),
                        ValidationError,
                    )
                )
        addons = [line for line in opp.line_items if line.parent_id is not None]
        leaves = [line for line in opp.line_items if line.id not in parents]
        for addon in addons[:1]:
            for leaf in leaves:
                if leaf.id != addon.id:
                    attempts.append(
                        (
                            f"hang {leaf.id!r} on add-on {addon.id!r}",
                            partial(opp.update_line_item, leaf.id, parent_id=addon.id, clock=clock),
                            ValidationError,
                        )
                    )
    if opp.is_open:
        attempts.append(("reopen an open deal", lambda: opp.reopen(clock=clock), TransitionError))
        for stage in pipeline.stages:
            if stage.key == opp.stage_key:
                continue
            if not graph_allows(pipeline, opp.stage, stage):
                attempts.append(
                    (
                        f"move to {stage.key!r}, which the transitions forbid",
                        partial(opp.move_to, stage.key, clock=clock),
                        TransitionError,
                    )
                )
            elif missing_for(opp, stage):
                attempts.append(
                    (
                        f"move to {stage.key!r} without {missing_for(opp, stage)}",
                        partial(opp.move_to, stage.key, clock=clock),
                        TransitionError,
                    )
                )
            elif not stage.is_open:
                attempts.append(
                    (
                        f"move to closed {stage.key!r} at probability 50",
                        partial(opp.move_to, stage.key, probability=50, clock=clock),
                        ValidationError,
                    )
                )
    else:
        for stage in pipeline.stages:
            if stage.outcome is not opp.stage.outcome:
                attempts.append(
                    (
                        f"move a closed deal to {stage.key!r}",
                        partial(opp.move_to, stage.key, clock=clock),
                        TransitionError,
                    )
                )
        attempts += [
            (
                "reopen into a closed stage",
                lambda: opp.reopen(stage=opp.stage_key, clock=clock),
                TransitionError,
            ),
            (
                "another probability on a closed deal",
                lambda: opp.update(probability=50, clock=clock),
                ValidationError,
            ),
        ]
        if opp.is_lost:
            attempts += [
                ("win a lost deal", lambda: opp.win(clock=clock), TransitionError),
                (
                    "lose a lost deal for another reason",
                    lambda: opp.lose(reason=f"{opp.lost_reason}, อีกเหตุผล", clock=clock),
                    TransitionError,
                ),
            ]
        else:
            attempts.append(("lose a won deal", lambda: opp.lose(clock=clock), TransitionError))
    return attempts


def _idle_commands(opp: Opportunity, clock: FixedClock) -> list[Attempt]:
    """Commands that change nothing on ``opp``."""
    same_fields: dict[str, Any] = {
        "name": opp.name,
        "type": opp.type,
        "expected_close": opp.expected_close,
        "campaign_id": opp.campaign_id,
        "lead_id": opp.lead_id,
        "lead_source": opp.lead_source,
        "owner": opp.owner,
        "account": opp.account,
        "description": opp.description,
    }
    attempts: list[Attempt] = [
        ("move to the current stage", lambda: opp.move_to(opp.stage_key, clock=clock), None),
        (
            "move to the current stage at the current probability",
            lambda: opp.move_to(opp.stage_key, probability=opp.probability, clock=clock),
            None,
        ),
        ("update nothing", lambda: opp.update(clock=clock), None),
        ("update every field to itself", lambda: opp.update(**same_fields, clock=clock), None),
        (
            "update the probability to itself",
            lambda: opp.update(probability=opp.probability, clock=clock),
            None,
        ),
        (
            "update the probability to itself, as text",
            lambda: opp.update(probability=str(opp.probability), clock=clock),
            None,
        ),
        (
            "update the manual amount to itself",
            lambda: opp.update(amount=opp.amount if opp.amount_is_manual else None, clock=clock),
            None,
        ),
    ]
    if opp.currency is not None:
        code = opp.currency.lower()
        attempts.append(
            ("update the currency to itself", lambda: opp.update(currency=code, clock=clock), None)
        )
    if opp.is_closed:
        attempts.append(
            (
                "reset a closed deal's probability",
                lambda: opp.update(probability=None, clock=clock),
                None,
            )
        )
    if opp.is_won:
        attempts += [
            ("win a won deal", lambda: opp.win(clock=clock), None),
            ("win into the current stage", lambda: opp.win(stage=opp.stage_key, clock=clock), None),
        ]
    if opp.is_lost:
        attempts += [
            ("lose a lost deal", lambda: opp.lose(clock=clock), None),
            (
                "lose into the current stage",
                lambda: opp.lose(stage=opp.stage_key, clock=clock),
                None,
            ),
            (
                "lose a lost deal for the same reason",
                lambda: opp.lose(reason=opp.lost_reason, clock=clock),
                None,
            ),
        ]
    for line in opp.line_items:
        attempts.append(
            (
                f"set line {line.id!r} to what it is",
                partial(
                    opp.update_line_item,
                    line.id,
                    quantity=line.quantity,
                    discount=str(line.discount),
                    unit_price=line.unit_price,
                    parent_id=line.parent_id,
                    clock=clock,
                ),
                None,
            )
        )
    return attempts


# -- replay and versions ------------------------------------------------------------------


@given(built_opportunities())
def test_replay_rebuilds_the_same_value(built: Built) -> None:
    """Replaying an opportunity's events gives back an equal value."""
    assert Opportunity.replay(built.opp.events) == built.opp


@given(built_opportunities())
def test_version_counts_the_events(built: Built) -> None:
    """The version is the number of events."""
    assert built.opp.version == len(built.opp.events)


@given(built_opportunities())
def test_event_versions_run_from_one_without_gaps(built: Built) -> None:
    """Events are numbered 1 to n, in order, and all belong to the one opportunity."""
    events = built.opp.events
    assert [event.version for event in events] == list(range(1, len(events) + 1))
    assert {event.opportunity_id for event in events} == {built.opp.id}


@given(built_opportunities())
def test_each_command_appends_one_event_and_keeps_the_earlier_ones(built: Built) -> None:
    """The value after each event is the replay of the events so far, a prefix of the last."""
    events = built.opp.events
    assert len(built.states) == len(events)
    for count, state in enumerate(built.states, start=1):
        assert state.events == events[:count]
        assert state.version == count
        assert Opportunity.replay(events[:count]) == state


@given(built_opportunities())
def test_event_times_are_aware_ordered_and_never_after_recording(built: Built) -> None:
    """Every event's at is aware, not before the previous one, and not after its recorded_at."""
    events = built.opp.events
    for event in events:
        assert event.at.utcoffset() is not None
        assert event.recorded_at.utcoffset() is not None
        assert event.at <= event.recorded_at
    for earlier, later in itertools.pairwise(events):
        assert earlier.at <= later.at


# -- time travel --------------------------------------------------------------------------


@given(built_opportunities(), offsets())
def test_as_of_an_event_time_is_the_value_after_the_last_event_at_that_time(
    built: Built, zone: timezone
) -> None:
    """as_of(e.at) is the value right after the last event sharing e's valid time."""
    events = built.opp.events
    for event in events:
        last = max(i for i, other in enumerate(events) if other.at == event.at)
        assert built.opp.as_of(event.at.astimezone(zone)) == built.states[last]


@given(built_opportunities())
def test_as_of_just_before_an_event_is_the_value_before_it(built: Built) -> None:
    """One microsecond before an event's time, as_of shows the value before that event."""
    events = built.opp.events
    for index in range(1, len(events)):
        if events[index].at > events[index - 1].at:
            assert built.opp.as_of(events[index].at - ONE_MICROSECOND) == built.states[index - 1]


@given(
    built_opportunities(), st.timedeltas(min_value=ONE_MICROSECOND, max_value=timedelta(days=9999))
)
def test_as_of_before_creation_is_none(built: Built, before: timedelta) -> None:
    """Before the deal's first event, as_of answers None."""
    assert built.opp.as_of(built.opp.events[0].at - before) is None


@given(built_opportunities(), st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=9999)))
def test_as_of_after_the_last_event_is_the_current_value(built: Built, after: timedelta) -> None:
    """At or after the last event's time, as_of is the current value."""
    assert built.opp.as_of(built.opp.events[-1].at + after) == built.opp


@given(built_opportunities(), offsets())
def test_as_known_at_a_recording_time_is_the_value_after_the_last_event_recorded_then(
    built: Built, zone: timezone
) -> None:
    """as_known_at(e.recorded_at) is the value right after the last event recorded at that time."""
    events = built.opp.events
    for event in events:
        last = max(i for i, other in enumerate(events) if other.recorded_at == event.recorded_at)
        assert built.opp.as_known_at(event.recorded_at.astimezone(zone)) == built.states[last]


@given(
    built_opportunities(), st.timedeltas(min_value=ONE_MICROSECOND, max_value=timedelta(days=9999))
)
def test_as_known_at_before_the_first_recording_is_none(built: Built, before: timedelta) -> None:
    """Before the first event was recorded, as_known_at answers None."""
    assert built.opp.as_known_at(built.opp.events[0].recorded_at - before) is None


# -- closed deals -------------------------------------------------------------------------


@given(built_opportunities(closed=True))
def test_a_closed_deal_cannot_move_to_an_open_stage(built: Built) -> None:
    """move_to any open stage from a closed deal raises TransitionError."""
    opp = built.opp
    assert opp.is_closed
    for stage in opp.pipeline.open_stages:
        with pytest.raises(TransitionError):
            opp.move_to(stage.key, clock=built.clock)


@given(built_opportunities(closed=True))
def test_a_closed_deal_cannot_change_its_outcome_without_reopening(built: Built) -> None:
    """Winning a lost deal, losing a won one, or moving to the other outcome raises TransitionError."""
    opp = built.opp
    assert opp.is_closed
    if opp.is_lost:
        with pytest.raises(TransitionError):
            opp.win(clock=built.clock)
    else:
        with pytest.raises(TransitionError):
            opp.lose(clock=built.clock)
    for stage in opp.pipeline.stages:
        if stage.outcome not in (opp.stage.outcome, Outcome.OPEN):
            with pytest.raises(TransitionError):
                opp.move_to(stage.key, clock=built.clock)


@given(built_opportunities(closed=True), st.data())
def test_reopen_is_the_way_out_of_a_closed_stage(built: Built, data: st.DataObject) -> None:
    """A closed deal reopened into an open stage is open again, without closed_at or lost_reason."""
    opp = built.opp
    assert opp.is_closed
    ready = [stage for stage in opp.pipeline.open_stages if not missing_for(opp, stage)]
    assume(ready)
    stage: Stage = data.draw(st.sampled_from(ready))
    reopened = opp.reopen(stage=stage.key, clock=built.clock)
    assert reopened.is_open
    assert reopened.stage_key == stage.key
    assert reopened.probability == stage.probability
    assert reopened.closed_at is None
    assert reopened.lost_reason is None
    assert reopened.version == opp.version + 1


@given(built_opportunities())
def test_closed_at_is_set_exactly_while_the_deal_is_closed(built: Built) -> None:
    """After every event, closed_at is set if and only if the deal is closed; lost_reason only when lost."""
    for state in built.states:
        assert state.is_open != state.is_closed
        assert state.is_closed == (state.is_won or state.is_lost)
        assert (state.closed_at is not None) == state.is_closed
        if state.closed_at is not None:
            assert state.created_at <= state.closed_at <= state.events[-1].at
        if not state.is_lost:
            assert state.lost_reason is None


# -- failed and idle commands ---------------------------------------------------------------


@given(built_opportunities())
def test_a_failed_command_raises_its_error_and_leaves_the_value_unchanged(built: Built) -> None:
    """Every refused command raises the right OppcoreError and adds no event."""
    opp = built.opp
    snapshot = Opportunity.replay(opp.events)  # an equal value built apart
    for label, command, error in _refused_commands(opp, built.clock):
        assert error is not None
        with pytest.raises(error):
            command()
        assert opp == snapshot, label
        assert opp.version == snapshot.version == len(opp.events), label
    assert Opportunity.replay(opp.events) == snapshot


@given(built_opportunities())
def test_a_command_that_changes_nothing_returns_an_equal_value_with_the_same_version(
    built: Built,
) -> None:
    """Commands that change nothing return an equal value and append no event."""
    opp = built.opp
    for label, command, _ in _idle_commands(opp, built.clock):
        result = command()
        assert result == opp, label
        assert result.version == opp.version, label
        assert result.events == opp.events, label


# -- money on the deal -----------------------------------------------------------------------


@given(built_opportunities())
def test_expected_revenue_is_amount_times_probability_over_a_hundred_exactly(built: Built) -> None:
    """After every event, expected_revenue is amount x probability / 100, exact, or None with no amount."""
    for state in built.states:
        if state.amount is None:
            assert state.expected_revenue is None
            continue
        revenue = state.expected_revenue
        assert revenue is not None
        assert revenue.currency == state.amount.currency
        with localcontext(EXACT):
            assert revenue.amount == state.amount.amount * state.probability / 100


@given(built_opportunities())
def test_won_means_probability_100_and_lost_means_0_and_zero_revenue(built: Built) -> None:
    """A won deal has probability 100; a lost one 0 and, with an amount, zero expected revenue."""
    for state in built.states:
        if state.is_won:
            assert state.probability == 100
            assert state.expected_revenue == state.amount
        if state.is_lost:
            assert state.probability == 0
            if state.amount is not None:
                assert state.expected_revenue == Money("0", state.amount.currency)
        assert Decimal(0) <= state.probability <= Decimal(100)


@given(built_opportunities())
def test_the_amount_is_the_manual_amount_else_the_line_total(built: Built) -> None:
    """The amount is the hand-typed one if any, else the exact sum of the line totals, else None."""
    for state in built.states:
        if state.amount_is_manual:
            assert state.amount is not None
        elif state.line_items:
            with localcontext(EXACT):
                total = sum(
                    (
                        line.quantity * line.unit_price.amount * (1 - line.discount / 100)
                        for line in state.line_items
                    ),
                    Decimal(0),
                )
            assert state.amount is not None
            assert state.amount.amount == total
        else:
            assert state.amount is None
        if state.amount is not None:
            assert state.amount.currency == state.currency
        for line in state.line_items:
            assert line.currency == state.currency


# -- history ----------------------------------------------------------------------------------


@given(built_opportunities())
def test_history_has_one_entry_per_event_and_ends_at_the_current_state(built: Built) -> None:
    """history() has an entry per event, in order, the last matching the current deal."""
    opp = built.opp
    history = opp.history()
    assert len(history) == len(opp.events)
    assert [entry.version for entry in history] == [event.version for event in opp.events]
    assert [entry.event for entry in history] == [type(event).__name__ for event in opp.events]
    last = history[-1]
    assert last.stage == opp.stage_key
    assert last.amount == opp.amount
    assert last.probability == opp.probability
    assert last.expected_revenue == opp.expected_revenue
    assert last.forecast_category == opp.forecast_category


@given(built_opportunities())
def test_each_history_entry_is_the_state_after_its_event(built: Built) -> None:
    """Entry i carries the event's times and author and the deal's values right after it."""
    history = built.opp.history()
    for entry, event, state in zip(history, built.opp.events, built.states, strict=True):
        assert (entry.at, entry.recorded_at, entry.by) == (event.at, event.recorded_at, event.by)
        assert entry.stage == state.stage_key
        assert entry.amount == state.amount
        assert entry.probability == state.probability
        assert entry.expected_revenue == state.expected_revenue
        assert entry.expected_close == state.expected_close
        assert entry.forecast_category == state.forecast_category


@given(built_opportunities())
def test_history_changes_name_every_value_that_moved_with_old_and_new(built: Built) -> None:
    """An entry's changes include each of stage, amount and probability that changed, knock-ons too."""
    history = built.opp.history()
    for entry, (before, after) in zip(history[1:], itertools.pairwise(built.states), strict=True):
        seen = {
            "stage": (before.stage_key, after.stage_key),
            "amount": (before.amount, after.amount),
            "probability": (before.probability, after.probability),
        }
        for field, (old, new) in seen.items():
            if old != new:
                assert entry.changes[field] == (old, new), field


# -- lost reasons and values handed across processes ---------------------------------------


def _two_lost_stages() -> Pipeline:
    return Pipeline(
        id="สองทางแพ้",
        name="Two ways to lose",
        stages=(
            Stage("ติดต่อ", "Contact", 20),
            Stage("won", "Won", 100, Outcome.WON),
            Stage("lost_price", "Lost on price", 0, Outcome.LOST),
            Stage("lost_silent", "Went silent", 0, Outcome.LOST),
        ),
    )


def test_a_new_lost_reason_is_refused_not_dropped_by_a_move_between_lost_stages() -> None:
    """lose(reason=<new>, stage=<another lost stage>) on a lost deal records the reason or refuses."""
    clock = FixedClock(datetime(2026, 1, 5, 9, 0, tzinfo=timezone(timedelta(hours=7))))
    lost = Opportunity.open(name="ดีลแพ้", pipeline=_two_lost_stages(), clock=clock).lose(
        reason="ราคาสูงไป", stage="lost_price", clock=clock
    )
    try:
        moved: Opportunity | TransitionError = lost.lose(
            reason="ลูกค้าเงียบหาย", stage="lost_silent", clock=clock
        )
    except TransitionError as refused:
        moved = refused
    assert isinstance(moved, TransitionError) or moved.lost_reason == "ลูกค้าเงียบหาย"
    assert lost.lose(stage="lost_silent", clock=clock).lost_reason == "ราคาสูงไป"


def test_an_opportunity_survives_pickle_and_deepcopy() -> None:
    """An opportunity, a frozen value, pickles and deep-copies to an equal value."""
    clock = FixedClock(datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc))
    opp = Opportunity.open(name="ส่งต่อให้ worker", amount=Money("5100.00", "THB"), clock=clock)
    assert pickle.loads(pickle.dumps(opp)) == opp
    assert copy.deepcopy(opp) == opp

"""Opportunity commands, leads and campaigns, and the history views, case by case."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from oppcore import (
    Campaign,
    CurrencyMismatchError,
    FixedClock,
    Lead,
    LineItem,
    LineKind,
    Money,
    Opportunity,
    Outcome,
    Pipeline,
    Stage,
    StageInterval,
    TransitionError,
    ValidationError,
    dumps,
    loads,
    using,
)
from oppcore.domain.events import Lost, Opened, Reopened, Won

T0 = datetime(2026, 4, 1, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


def test_every_command_appends_exactly_one_event_and_leaves_the_old_value_alone(
    clock: FixedClock,
) -> None:
    """A command returns a new value one version higher; the value it was called on is unchanged."""
    opp = Opportunity.open(name="Immutable", clock=clock)
    before = opp

    moved = opp.move_to("in_progress", clock=clock)

    assert opp is before
    assert opp.version == 1
    assert opp.stage.key == "wait"
    assert moved.version == 2
    assert moved.events[:1] == opp.events


def test_commands_that_change_nothing_append_nothing(clock: FixedClock) -> None:
    """Setting a field to its current value, moving to the current stage, winning a won deal: no event."""
    opp = Opportunity.open(name="Same", amount=Money("10", "USD"), owner="Ann", clock=clock)

    assert opp.update(owner="Ann", clock=clock) is opp
    assert opp.update(probability=opp.probability, clock=clock) is opp
    assert opp.update(amount=Money("10.00", "USD"), clock=clock) is opp
    assert opp.move_to("wait", clock=clock) is opp
    won = opp.win(clock=clock)
    assert won.win(clock=clock) is won
    lost = opp.lose(reason="Budget", clock=clock)
    assert lost.lose(clock=clock) is lost


def test_update_refuses_unknown_fields_and_points_stage_changes_to_move_to(
    clock: FixedClock,
) -> None:
    """update(stage=...) says to use move_to; an unknown field is named."""
    opp = Opportunity.open(name="Fields", clock=clock)
    with pytest.raises(ValidationError, match="use move_to"):
        opp.update(stage="in_progress", clock=clock)
    with pytest.raises(ValidationError, match="'colour'"):
        opp.update(colour="red", clock=clock)


def test_update_probability_none_returns_to_the_stage_default(clock: FixedClock) -> None:
    """probability=None undoes a hand-set probability."""
    opp = Opportunity.open(name="Hunch", clock=clock).update(probability=80, clock=clock)

    back = opp.update(probability=None, clock=clock)

    assert back.probability == 10
    assert not back.manual_probability


def test_a_closed_deals_probability_cannot_be_set_by_hand(clock: FixedClock) -> None:
    """A won deal stays at 100 and a lost one at 0."""
    won = Opportunity.open(name="Done", clock=clock).win(clock=clock)
    with pytest.raises(ValidationError, match="stays 100"):
        won.update(probability=50, clock=clock)


def test_lose_and_win_record_the_right_events(clock: FixedClock) -> None:
    """win() appends Won, lose() Lost with its reason, reopen() Reopened."""
    opp = Opportunity.open(name="Events", clock=clock).move_to("in_progress", clock=clock)

    lost = opp.lose(reason="Chose a competitor", clock=clock)
    reopened = lost.reopen(clock=clock)
    won = reopened.win(clock=clock)

    assert isinstance(lost.events[-1], Lost)
    assert lost.events[-1].reason == "Chose a competitor"
    assert isinstance(reopened.events[-1], Reopened)
    assert reopened.stage.key == "in_progress"
    assert isinstance(won.events[-1], Won)


def test_a_lost_deal_must_be_reopened_before_it_can_be_won(clock: FixedClock) -> None:
    """Lost to won directly raises TransitionError."""
    lost = Opportunity.open(name="Lost", clock=clock).lose(clock=clock)
    with pytest.raises(TransitionError, match="reopen"):
        lost.win(clock=clock)
    with pytest.raises(TransitionError, match="already lost"):
        lost.lose(reason="Another reason", clock=clock)


def test_reopen_refuses_an_open_deal_and_a_closed_target(clock: FixedClock) -> None:
    """Only a closed deal reopens, and only into an open stage."""
    opp = Opportunity.open(name="Open", clock=clock)
    with pytest.raises(TransitionError, match="only a closed deal reopens"):
        opp.reopen(clock=clock)
    won = opp.win(clock=clock)
    with pytest.raises(TransitionError, match="closed stage 'closed_lost'"):
        won.reopen(stage="closed_lost", clock=clock)


def test_win_and_lose_refuse_stages_of_the_wrong_outcome(clock: FixedClock) -> None:
    """win(stage=) must name a won stage and lose(stage=) a lost one."""
    opp = Opportunity.open(name="Wrong", clock=clock)
    with pytest.raises(ValidationError, match="not a won stage"):
        opp.win(stage="closed_lost", clock=clock)
    with pytest.raises(ValidationError, match="not a lost stage"):
        opp.lose(stage="in_progress", clock=clock)


def test_an_add_on_names_its_parent_line_and_the_parent_cannot_go_first(clock: FixedClock) -> None:
    """Add-ons hang off a product line; removing the product first is refused."""
    opp = Opportunity.open(name="Bundle", clock=clock)
    opp = opp.add_line_item(LineItem("Laptop", Money("30000", "THB"), id="laptop"), clock=clock)
    opp = opp.add_line_item(
        LineItem(
            "Extended warranty",
            Money("2500", "THB"),
            kind=LineKind.ADD_ON,
            parent_id="laptop",
            id="warranty",
        ),
        clock=clock,
    )

    with pytest.raises(ValidationError, match="'warranty'"):
        opp.remove_line_item("laptop", clock=clock)
    with pytest.raises(ValidationError, match="'ghost'"):
        opp.add_line_item(LineItem("Bag", Money("900", "THB"), parent_id="ghost"), clock=clock)

    opp = opp.remove_line_item("warranty", clock=clock).remove_line_item("laptop", clock=clock)
    assert opp.line_items == ()
    assert opp.amount is None


def test_update_line_item_changes_one_line_and_refuses_unknown_fields(clock: FixedClock) -> None:
    """update_line_item replaces the line; unknown fields and unknown ids are named."""
    opp = Opportunity.open(name="Lines", clock=clock)
    opp = opp.add_line_item(
        LineItem("Seat", Money("100", "USD"), quantity=10, id="seats"), clock=clock
    )

    cheaper = opp.update_line_item("seats", discount="12.5", clock=clock)

    assert cheaper.amount == Money("875", "USD")
    assert opp.update_line_item("seats", quantity=10, clock=clock) is opp
    with pytest.raises(ValidationError, match="'colour'"):
        opp.update_line_item("seats", colour="red", clock=clock)
    with pytest.raises(ValidationError, match="'nope'"):
        opp.update_line_item("nope", quantity=2, clock=clock)
    with pytest.raises(CurrencyMismatchError):
        opp.update_line_item("seats", unit_price=Money("100", "EUR"), clock=clock)


def test_a_lead_converts_into_an_opportunity_carrying_its_id_source_and_campaign(
    clock: FixedClock,
) -> None:
    """Lead.convert opens a deal with lead_id, lead_source and campaign_id from the lead."""
    lead = Lead(
        id="lead-7",
        name="Somsak Jaidee",
        company="Chiang Mai Foods",
        source="web",
        campaign_id="cmp-songkran",
        created_at=T0 - timedelta(days=3),
    )

    opp = lead.convert(amount=Money("45000", "THB"), clock=clock)

    assert (opp.lead_id, opp.lead_source, opp.campaign_id) == ("lead-7", "web", "cmp-songkran")
    assert opp.name == "Chiang Mai Foods"
    assert opp.account == "Chiang Mai Foods"
    assert opp.amount == Money("45000", "THB")
    with pytest.raises(ValidationError, match="lead_id"):
        lead.convert(lead_id="other", clock=clock)


def test_campaign_costs_share_a_currency_and_dates_are_ordered() -> None:
    """A campaign's budgeted and actual cost are Money in one currency; it cannot end before it starts."""
    campaign = Campaign(
        id="cmp-expo",
        name="Bangkok Expo 2026",
        type="event",
        start=date(2026, 3, 1),
        end=date(2026, 3, 3),
        budgeted_cost=Money("150000", "THB"),
        actual_cost=Money("162500", "THB"),
    )
    assert campaign.actual_cost == Money("162500", "THB")
    with pytest.raises(CurrencyMismatchError):
        Campaign(id="c", name="C", budgeted_cost=Money("1", "THB"), actual_cost=Money("1", "USD"))
    with pytest.raises(ValidationError, match="before it starts"):
        Campaign(id="c", name="C", start=date(2026, 3, 3), end=date(2026, 3, 1))


def test_as_of_uses_valid_time_and_as_known_at_uses_record_time() -> None:
    """A back-dated change shows in as_of from when it happened, in as_known_at from when it was recorded."""
    clock = FixedClock(T0)
    opp = Opportunity.open(name="Late news", clock=clock)
    clock.set(T0 + timedelta(days=10))
    # Recorded on day 10, but the customer agreed on day 4.
    opp = opp.move_to("in_progress", at=T0 + timedelta(days=4), clock=clock)
    day6 = T0 + timedelta(days=6)

    as_of_day6 = opp.as_of(day6)
    known_day6 = opp.as_known_at(day6)

    assert as_of_day6 is not None
    assert as_of_day6.stage.key == "in_progress"
    assert known_day6 is not None
    assert known_day6.stage.key == "wait"
    assert opp.as_of(T0 - timedelta(seconds=1)) is None
    assert opp.as_known_at(T0 - timedelta(seconds=1)) is None


def test_stage_timeline_lists_each_stretch_with_the_current_one_open(clock: FixedClock) -> None:
    """stage_timeline gives (stage, entered_at, exited_at) with exited_at None for the current stage."""
    opp = Opportunity.open(name="Timeline", clock=clock)
    clock.advance(timedelta(hours=5))
    opp = opp.move_to("in_progress", clock=clock)
    clock.advance(timedelta(hours=7))
    opp = opp.lose(clock=clock)

    assert opp.stage_timeline() == (
        StageInterval("wait", T0, T0 + timedelta(hours=5)),
        StageInterval("in_progress", T0 + timedelta(hours=5), T0 + timedelta(hours=12)),
        StageInterval("closed_lost", T0 + timedelta(hours=12), None),
    )


def test_time_in_stage_before_a_later_move_counts_only_up_to_now(clock: FixedClock) -> None:
    """time_in_stage(now) in the past ignores what happened after now."""
    opp = Opportunity.open(name="Past reading", clock=clock)
    clock.advance(timedelta(days=2))
    opp = opp.move_to("in_progress", clock=clock)

    assert opp.time_in_stage(now=T0 + timedelta(days=1)) == {"wait": timedelta(days=1)}
    assert opp.time_in_stage(now=T0 - timedelta(days=1)) == {}


def test_the_process_clock_can_be_swapped_for_a_block() -> None:
    """with using(clock): commands without clock= use that clock."""
    fixed = FixedClock(T0)
    with using(fixed):
        opp = Opportunity.open(name="Scoped clock")
    assert opp.created_at == T0
    assert opp.events[0].recorded_at == T0


def test_replay_refuses_events_that_do_not_follow_on() -> None:
    """Replay checks that each event is the same deal's next version."""
    clock = FixedClock(T0)
    first = Opportunity.open(name="A", id="a", clock=clock).move_to("in_progress", clock=clock)
    other = Opportunity.open(name="B", id="b", clock=clock).move_to("in_progress", clock=clock)

    with pytest.raises(ValidationError, match="starts with Opened"):
        Opportunity.replay(first.events[1:])
    with pytest.raises(ValidationError, match="cannot apply to opportunity 'a'"):
        Opportunity.replay((first.events[0], other.events[1]))
    with pytest.raises(ValidationError, match="does not follow"):
        Opportunity.replay((first.events[0], first.events[1], first.events[1]))
    assert isinstance(first.events[0], Opened)


def test_a_deal_can_open_already_won_for_imports(clock: FixedClock) -> None:
    """Opening straight into a won stage sets closed_at and probability 100."""
    opp = Opportunity.open(
        name="Imported", stage="closed_won", amount=Money("5", "USD"), clock=clock
    )

    assert opp.is_won
    assert opp.closed_at == T0
    assert opp.probability == 100
    with pytest.raises(ValidationError, match="probability 100"):
        Opportunity.open(name="Imported", stage="closed_won", probability=40, clock=clock)


def test_stock_pipelines_cannot_be_changed_through_their_labels_or_transitions() -> None:
    """Labels and transitions are read-only, so no deal can change a pipeline others share."""
    stage = Pipeline.default().stages[0]
    with pytest.raises(TypeError):
        stage.labels["th"] = "changed"  # type: ignore[index]
    assert Pipeline.default().stages[0].label_for("th") == "รอดำเนินการ"


def test_a_lost_deal_never_drops_a_new_reason_silently(clock: FixedClock) -> None:
    """lose(reason=other) on a lost deal raises, even when it names another lost stage."""
    pipeline = Pipeline(
        id="two-lost",
        name="Two lost",
        stages=(
            *Pipeline.default().stages,
            Stage("disqualified", "Disqualified", 0, Outcome.LOST),
        ),
    )
    lost = Opportunity.open(name="Gone", pipeline=pipeline, clock=clock).lose(
        reason="Price", clock=clock
    )

    with pytest.raises(TransitionError, match="already lost"):
        lost.lose(reason="Timing", stage="disqualified", clock=clock)
    moved = lost.lose(stage="disqualified", clock=clock)
    assert moved.stage.key == "disqualified"
    assert moved.lost_reason == "Price"


def test_money_from_arithmetic_must_be_rounded_before_it_becomes_an_amount(
    clock: FixedClock,
) -> None:
    """A typed amount obeys the input limits, so every stored amount reads back."""
    third = Money("1000000.00", "THB") * Decimal("0.3333333")
    with pytest.raises(ValidationError, match="decimal places"):
        Opportunity.open(name="Thirds", amount=third, clock=clock)

    opp = Opportunity.open(name="Thirds", amount=third.rounded(), clock=clock)

    assert loads(dumps(opp), Opportunity) == opp

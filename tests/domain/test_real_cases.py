"""Cases taken from real CRM systems (Odoo, Salesforce) that oppcore must reproduce."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from oppcore import (
    CurrencyMismatchError,
    FixedClock,
    LineItem,
    Money,
    Opportunity,
    Outcome,
    Pipeline,
    Stage,
    TransitionError,
    ValidationError,
)

START = datetime(2023, 2, 15, 12, 0, tzinfo=timezone.utc)


def odoo_pipeline() -> Pipeline:
    """Odoo's test pipeline: S1 to S4, plus S0 standing in for Odoo's "no stage"."""
    return Pipeline(
        id="odoo-test",
        name="Odoo stage duration test",
        stages=(
            Stage("S1", "Stage 1", 10),
            Stage("S2", "Stage 2", 20),
            Stage("S3", "Stage 3", 30),
            Stage("S4", "Stage 4", 40),
            Stage("S0", "No stage", 0),
            Stage("won", "Won", 100, Outcome.WON),
            Stage("lost", "Lost", 0, Outcome.LOST),
        ),
    )


def odoo_lead(pipeline: Pipeline | None = None) -> tuple[Opportunity, FixedClock]:
    """The lead of Odoo's stage-duration test, and a clock 20 minutes after its last move."""
    clock = FixedClock(START)
    opp = Opportunity.open(
        id="odoo", name="Odoo lead", pipeline=pipeline or odoo_pipeline(), stage="S1", clock=clock
    )
    steps: list[tuple[int, str | None]] = [
        (5, "S2"),
        (10, None),  # an update that changes no stage
        (50, "S3"),
        (50, "S4"),
        (20, "S2"),
        (55, "S4"),
        (200, "S0"),
        (30, "S3"),
    ]
    for minutes, stage in steps:
        clock.advance(timedelta(minutes=minutes))
        if stage is None:
            opp = opp.update(description="Called the customer back.", clock=clock)
        else:
            opp = opp.move_to(stage, clock=clock)
    clock.advance(timedelta(minutes=20))
    return opp, clock


def test_odoo_stage_durations_add_revisits_and_count_the_current_stage_to_now() -> None:
    """Odoo's stage-duration test: revisits add up and the current stage counts up to the reading."""
    opp, clock = odoo_lead()

    spent = opp.time_in_stage(clock=clock)

    assert spent == {
        "S0": timedelta(minutes=30),
        "S1": timedelta(minutes=5),
        "S2": timedelta(minutes=115),
        "S3": timedelta(minutes=70),
        "S4": timedelta(minutes=220),
    }
    assert opp.time_in_stage(now=clock.now()) == spent


def test_probability_100_on_an_open_deal_does_not_win_it() -> None:
    """Won comes from a won stage, never from a probability of 100."""
    clock = FixedClock(START)
    opp = Opportunity.open(name="Sure thing", amount=Money("1000", "USD"), clock=clock)

    sure = opp.update(probability=100, clock=clock)

    assert sure.probability == 100
    assert sure.is_open
    assert not sure.is_won
    assert sure.closed_at is None
    assert sure.stage.key == "wait"


def _two_won_stages() -> Pipeline:
    return Pipeline(
        id="two-won",
        name="Won then invoiced",
        stages=(
            Stage("qualify", "Qualify", 20),
            Stage("propose", "Propose", 60),
            Stage("won", "Won", 100, Outcome.WON),
            Stage("invoiced", "Invoiced", 100, Outcome.WON),
            Stage("lost", "Lost", 0, Outcome.LOST),
        ),
    )


def test_moving_between_won_stages_keeps_closed_at() -> None:
    """A deal moved from one won stage to another keeps the time it closed."""
    clock = FixedClock(START)
    opp = Opportunity.open(name="Invoice me", pipeline=_two_won_stages(), clock=clock)
    clock.advance(timedelta(days=3))
    won = opp.move_to("propose", clock=clock).win(clock=clock)
    clock.advance(timedelta(days=10))

    invoiced = won.move_to("invoiced", clock=clock)

    assert won.closed_at == START + timedelta(days=3)
    assert invoiced.closed_at == won.closed_at
    assert invoiced.is_won
    assert type(invoiced.events[-1]).__name__ == "StageChanged"


def test_reopen_clears_closed_at_and_the_lost_reason() -> None:
    """Reopening a lost deal clears closed_at and lost_reason and returns to the stage it closed from."""
    clock = FixedClock(START)
    opp = Opportunity.open(name="Came back", pipeline=_two_won_stages(), clock=clock)
    opp = opp.move_to("propose", clock=clock)
    clock.advance(timedelta(days=1))
    lost = opp.lose(reason="Price too high", clock=clock)
    clock.advance(timedelta(days=30))

    reopened = lost.reopen(clock=clock)

    assert lost.closed_at == START + timedelta(days=1)
    assert lost.lost_reason == "Price too high"
    assert reopened.closed_at is None
    assert reopened.lost_reason is None
    assert reopened.stage.key == "propose"
    assert reopened.probability == 60
    assert reopened.is_open


def test_closed_deal_cannot_move_to_an_open_stage_without_reopen() -> None:
    """From a closed stage, move_to an open stage raises TransitionError saying to reopen first."""
    clock = FixedClock(START)
    won = Opportunity.open(name="Done", clock=clock).win(clock=clock)

    with pytest.raises(TransitionError, match="reopen it first") as caught:
        won.move_to("wait", clock=clock)

    assert caught.value.from_stage == "closed_won"
    assert caught.value.to_stage == "wait"
    assert caught.value.opportunity_id == won.id


def test_hand_set_probability_survives_a_move_only_under_keep_manual_probability() -> None:
    """A hand-set probability resets on a stage move unless the pipeline keeps it."""
    clock = FixedClock(START)
    keeping = Pipeline(
        id="keep",
        name="Keeps hand-set probabilities",
        stages=Pipeline.default().stages,
        keep_manual_probability=True,
    )
    for pipeline, expected in ((Pipeline.default(), Decimal(50)), (keeping, Decimal(35))):
        opp = Opportunity.open(name="Hunch", pipeline=pipeline, clock=clock)
        opp = opp.update(probability=35, clock=clock)

        moved = opp.move_to("in_progress", clock=clock)

        assert moved.probability == expected
        assert moved.manual_probability is (pipeline is keeping)


def test_probability_given_with_the_move_wins_over_the_stage_default() -> None:
    """move_to(probability=) sets the probability by hand in the new stage."""
    clock = FixedClock(START)
    opp = Opportunity.open(name="Hunch", clock=clock)

    moved = opp.move_to("in_progress", probability="65.5", clock=clock)

    assert moved.probability == Decimal("65.5")
    assert moved.manual_probability


def test_won_forces_100_and_lost_forces_0_with_zero_expected_revenue() -> None:
    """Winning gives 100; losing gives 0 and a lost deal's expected revenue is zero money, not unknown."""
    clock = FixedClock(START)
    opp = Opportunity.open(name="Either way", amount=Money("2500.00", "EUR"), clock=clock)
    opp = opp.update(probability=35, clock=clock)

    won = opp.win(clock=clock)
    lost = opp.lose(reason="No budget", clock=clock)

    assert won.probability == 100
    assert won.expected_revenue == Money("2500.00", "EUR")
    assert lost.probability == 0
    assert lost.expected_revenue == Money("0", "EUR")
    assert lost.expected_revenue is not None


@pytest.mark.parametrize(
    ("quantity", "unit_price", "total"),
    [("6", "850", "5100.00"), ("50", "761.86", "38093.00"), ("66", "1276.52", "84250.32")],
)
def test_line_totals_from_salesforce_seed_data(quantity: str, unit_price: str, total: str) -> None:
    """Salesforce line totals: quantity x unit price, exact to the cent."""
    item = LineItem("Product", Money(unit_price, "USD"), quantity=quantity)

    assert item.total == Money(total, "USD")
    assert item.total.rounded().amount == Decimal(total)


def test_amount_is_the_sum_of_line_totals_and_a_hand_set_amount_is_recorded_as_manual() -> None:
    """Salesforce's rule made explicit: lines give the amount; a typed amount is manual, never ignored."""
    clock = FixedClock(START)
    opp = Opportunity.open(name="Three lines", clock=clock)
    for quantity, price in (("6", "850"), ("50", "761.86"), ("66", "1276.52")):
        opp = opp.add_line_item(
            LineItem("Part", Money(price, "USD"), quantity=quantity), clock=clock
        )
    assert opp.amount == Money("127443.32", "USD")
    assert not opp.amount_is_manual

    typed = opp.update(amount=Money("120000.00", "USD"), clock=clock)

    assert typed.amount == Money("120000.00", "USD")
    assert typed.amount_is_manual
    assert typed.history()[-1].changes["amount"] == (
        Money("127443.32", "USD"),
        Money("120000.00", "USD"),
    )
    assert typed.history()[-1].changes["amount_is_manual"] == (False, True)
    event = typed.events[-1]
    assert type(event).__name__ == "FieldsChanged"
    assert event.fields == ("amount",)  # type: ignore[union-attr]

    back = typed.update(amount=None, clock=clock)

    assert back.amount == Money("127443.32", "USD")
    assert not back.amount_is_manual


def test_lines_added_after_a_manual_amount_do_not_override_it() -> None:
    """Adding a line to a deal with a typed budget keeps the typed budget."""
    clock = FixedClock(START)
    opp = Opportunity.open(name="Budget", amount=Money("9000", "USD"), clock=clock)

    opp = opp.add_line_item(LineItem("Part", Money("10", "USD")), clock=clock)

    assert opp.amount == Money("9000", "USD")
    assert opp.line_total == Money("10", "USD")


def test_probability_1000_is_refused() -> None:
    """The Fivetran Salesforce seeds hold a probability of 1000: refused with the value named."""
    clock = FixedClock(START)
    with pytest.raises(ValidationError, match="1000"):
        Opportunity.open(name="Bad seed", probability=1000, clock=clock)
    opp = Opportunity.open(name="Good seed", clock=clock)
    with pytest.raises(ValidationError, match="1000"):
        opp.update(probability=1000, clock=clock)
    with pytest.raises(ValidationError, match="1000"):
        opp.move_to("in_progress", probability=1000, clock=clock)


def test_negative_quantity_and_discount_over_100_are_refused() -> None:
    """A negative quantity and a discount over 100 percent raise ValidationError naming them."""
    with pytest.raises(ValidationError, match="-3"):
        LineItem("Part", Money("10", "USD"), quantity=-3)
    with pytest.raises(ValidationError, match="120"):
        LineItem("Part", Money("10", "USD"), discount=120)


def test_unknown_currency_is_refused() -> None:
    """An unknown currency code raises ValidationError naming it."""
    with pytest.raises(ValidationError, match="XYZ"):
        Money("10", "XYZ")
    with pytest.raises(ValidationError, match="XYZ"):
        Opportunity.open(name="Odd money", currency="XYZ", clock=FixedClock(START))


def test_naive_datetimes_are_refused() -> None:
    """A naive datetime for an event time raises ValidationError."""
    clock = FixedClock(START)
    naive = datetime(2023, 2, 15, 12, 0)
    with pytest.raises(ValidationError, match="naive"):
        Opportunity.open(name="No zone", at=naive, clock=clock)
    with pytest.raises(ValidationError, match="naive"):
        FixedClock(naive)


def test_an_event_dated_before_the_previous_one_is_refused() -> None:
    """Back-dating is allowed, but never before the previous event."""
    clock = FixedClock(START + timedelta(days=10))
    opp = Opportunity.open(name="Back-dated", at=START + timedelta(days=5), clock=clock)

    earlier = opp.move_to("in_progress", at=START + timedelta(days=6), clock=clock)
    with pytest.raises(ValidationError, match="before"):
        earlier.win(at=START + timedelta(days=5, hours=23), clock=clock)

    assert earlier.events[-1].at == START + timedelta(days=6)
    assert earlier.events[-1].recorded_at == START + timedelta(days=10)


def test_an_event_in_the_future_is_refused() -> None:
    """An event time after the clock's now is refused: at is never after recorded_at."""
    clock = FixedClock(START)
    with pytest.raises(ValidationError, match="future"):
        Opportunity.open(name="Tomorrow", at=START + timedelta(days=1), clock=clock)


def test_unknown_stage_key_is_refused() -> None:
    """An unknown stage key raises ValidationError naming it and the stages there are."""
    clock = FixedClock(START)
    opp = Opportunity.open(name="Where to", clock=clock)
    with pytest.raises(ValidationError, match=r"'negotiation'.*'wait'"):
        opp.move_to("negotiation", clock=clock)
    with pytest.raises(ValidationError, match="negotiation"):
        Opportunity.open(name="Where to", stage="negotiation", clock=clock)


def test_money_in_another_currency_cannot_join_a_deal() -> None:
    """A line in another currency than the deal's raises CurrencyMismatchError."""
    clock = FixedClock(START)
    opp = Opportunity.open(name="Baht deal", amount=Money("1000", "THB"), clock=clock)
    with pytest.raises(CurrencyMismatchError, match="USD"):
        opp.add_line_item(LineItem("Part", Money("10", "USD")), clock=clock)
    with pytest.raises(CurrencyMismatchError, match="USD"):
        opp.update(amount=Money("10", "USD"), clock=clock)

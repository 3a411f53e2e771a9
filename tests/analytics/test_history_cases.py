"""Analytics II by hand: movement, stages, history and learning on cases small enough to draw.

Every expected number here was worked out on paper from the rules of DESIGN section 5 and
the module documentation (the bucket table of ``movement.py``), never read back from the code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from oppcore import (
    CurrencyMismatchError,
    ExchangeRates,
    FixedClock,
    LineItem,
    Money,
    OppcoreError,
    Opportunity,
    Outcome,
    Pipeline,
    Stage,
    ValidationError,
)
from oppcore.analytics import (
    BUCKETS,
    FunnelRow,
    Movement,
    Period,
    StageTimeRow,
    as_probabilities,
    calibration,
    forecast,
    funnel,
    period_of,
    pipeline_movement,
    slippage,
    slippage_summary,
    snapshot,
    stage_win_rates,
    stale,
    time_in_stage,
)
from tests.domain.test_real_cases import START as ODOO_START
from tests.domain.test_real_cases import odoo_lead, odoo_pipeline

UTC = timezone.utc
Q1: Period = period_of(date(2027, 3, 1), "quarter")
WEEK_START = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)  # a Monday
WEEK_END = datetime(2027, 3, 8, 9, 0, tzinfo=UTC)  # the Monday after


def _at(month: int, day: int, hour: int = 9, year: int = 2027) -> datetime:
    return datetime(year, month, day, hour, 0, tzinfo=UTC)


def _on(month: int, day: int, hour: int = 9, year: int = 2027) -> FixedClock:
    """A clock standing at that moment: each command below says when it happened."""
    return FixedClock(_at(month, day, hour, year))


def _usd(amount: str) -> Money:
    return Money(amount, "USD")


def _thb(amount: str) -> Money:
    return Money(amount, "THB")


def _deal(
    id: str,
    amount: str,
    close: date | None,
    *,
    opened: FixedClock | None = None,
    **fields: Any,
) -> Opportunity:
    """A USD deal opened on 2027-02-01 (unless ``opened`` says otherwise)."""
    return Opportunity.open(
        id=id,
        name=f"Deal {id}",
        amount=_usd(amount),
        expected_close=close,
        clock=opened or _on(2, 1),
        **fields,
    )


def _entries(movement: Movement) -> list[tuple[str, str, Money | None]]:
    return [(e.opportunity_id, e.bucket, e.amount) for e in movement.entries]


def _close_to(value: Decimal | None, expected: float, tolerance: float = 1e-4) -> bool:
    return value is not None and math.isclose(float(value), expected, abs_tol=tolerance)


# -- 1. pipeline movement: the week a sales manager draws by hand --------------------------


def _the_week() -> list[Opportunity]:
    """Five deals, one per bucket, in the week of Monday 2027-03-01."""
    new = _deal("new", "10000", date(2027, 3, 20), opened=_on(3, 3))
    grew = _deal("grew", "20000", date(2027, 3, 15)).update(amount=_usd("25000"), clock=_on(3, 2))
    won = _deal("won", "30000", date(2027, 3, 10)).win(clock=_on(3, 4))
    lost = _deal("lost", "15000", date(2027, 3, 25)).lose(reason="Price", clock=_on(3, 5))
    pushed = _deal("pushed", "40000", date(2027, 3, 31)).update(
        expected_close=date(2027, 4, 30), clock=_on(3, 6)
    )
    return [new, grew, won, lost, pushed]


@pytest.mark.parametrize(
    "window", [Q1, (date(2027, 1, 1), date(2027, 3, 31))], ids=["period", "pair"]
)
def test_the_hand_built_week_puts_each_deal_in_its_one_bucket(window: Any) -> None:
    """Opening 105,000 (grew, won, lost, pushed) + 10,000 new + 5,000 increased - 30,000 won
    - 15,000 lost - 40,000 pushed out = closing 35,000 (new, grew)."""
    opps = _the_week()

    movement = pipeline_movement(opps, start=WEEK_START, end=WEEK_END, window=window)

    assert movement.opening == _usd("105000")
    assert movement.new == _usd("10000")
    assert movement.increased == _usd("5000")
    assert movement.decreased == _usd("0")
    assert movement.won == _usd("30000")
    assert movement.lost == _usd("15000")
    assert movement.reopened == _usd("0")
    assert movement.pushed_out == _usd("40000")
    assert movement.pulled_in == _usd("0")
    assert movement.closing == _usd("35000")
    assert dict(movement.counts) == {
        "opening": 4,
        "new": 1,
        "increased": 1,
        "decreased": 0,
        "won": 1,
        "lost": 1,
        "reopened": 0,
        "pushed_out": 1,
        "pulled_in": 0,
        "closing": 2,
    }
    assert _entries(movement) == [
        ("new", "new", _usd("10000")),
        ("grew", "increased", _usd("5000")),
        ("won", "won", _usd("30000")),
        ("lost", "lost", _usd("15000")),
        ("pushed", "pushed_out", _usd("40000")),
    ]


def test_the_movement_prints_as_a_table_from_opening_to_closing() -> None:
    """str(movement) is the summary a manager reads top to bottom, one row per bucket."""
    movement = pipeline_movement(_the_week(), start=WEEK_START, end=WEEK_END, window=Q1)

    text = str(movement)
    lines = text.splitlines()

    assert lines[0] == "Pipeline movement"
    assert lines[1].split() == ["bucket", "count", "amount"]
    rows = [line.split() for line in lines[3:]]
    assert [row[0] for row in rows] == ["opening", *BUCKETS, "closing"]
    assert rows[0] == ["opening", "4", "105,000.00", "USD"]
    assert rows[1] == ["new", "1", "10,000.00", "USD"]
    assert rows[2] == ["increased", "1", "5,000.00", "USD"]
    assert rows[3] == ["decreased", "0", "0.00", "USD"]
    assert rows[7] == ["pushed_out", "1", "40,000.00", "USD"]
    assert rows[-1] == ["closing", "2", "35,000.00", "USD"]
    summary = movement.summary()
    assert [(row.bucket, row.count, row.amount) for row in summary][4:6] == [
        ("won", 1, _usd("30000")),
        ("lost", 1, _usd("15000")),
    ]


def _the_other_week() -> list[Opportunity]:
    """The buckets the first week leaves empty, plus deals that end up in none."""
    shrank = _deal("shrank", "50000", date(2027, 3, 20)).update(
        amount=_usd("35000"), clock=_on(3, 2)
    )
    reopened = (
        _deal("reopened", "12000", date(2027, 3, 28))
        .lose(reason="No budget", clock=_on(2, 20))
        .reopen(clock=_on(3, 3))
    )
    pulled = _deal("pulled", "8000", date(2027, 5, 15)).update(
        expected_close=date(2027, 3, 30), clock=_on(3, 4)
    )
    in_and_out = _deal("in-and-out", "9000", date(2027, 3, 31), opened=_on(3, 2)).win(
        clock=_on(3, 5)
    )
    same = (
        _deal("same", "20000", date(2027, 3, 12))
        .update(amount=_usd("22000"), clock=_on(3, 2))
        .update(amount=_usd("20000"), clock=_on(3, 4))
    )
    won_and_back = (
        _deal("won-and-back", "10000", date(2027, 3, 18))
        .win(clock=_on(3, 3))
        .reopen(clock=_on(3, 4))
        .update(amount=_usd("11000"), clock=_on(3, 5))
    )
    return [shrank, reopened, pulled, in_and_out, same, won_and_back]


def test_decreased_reopened_pulled_in_and_deals_in_no_bucket() -> None:
    """Opening 80,000 (shrank 50,000, same 20,000, won-and-back 10,000) - 15,000 decreased
    + 12,000 reopened + 8,000 pulled in + 1,000 increased = closing 86,000.  The deal opened
    and won within the week and the deal that changed and changed back are in no bucket; the
    one won and reopened within the week is compared by its amounts."""
    movement = pipeline_movement(_the_other_week(), start=WEEK_START, end=WEEK_END, window=Q1)

    assert movement.opening == _usd("80000")
    assert movement.closing == _usd("86000")
    assert (movement.new, movement.won, movement.lost, movement.pushed_out) == (
        _usd("0"),
        _usd("0"),
        _usd("0"),
        _usd("0"),
    )
    assert movement.increased == _usd("1000")
    assert movement.decreased == _usd("15000")
    assert movement.reopened == _usd("12000")
    assert movement.pulled_in == _usd("8000")
    assert dict(movement.counts) == {
        "opening": 3,
        "new": 0,
        "increased": 1,
        "decreased": 1,
        "won": 0,
        "lost": 0,
        "reopened": 1,
        "pushed_out": 0,
        "pulled_in": 1,
        "closing": 5,
    }
    assert _entries(movement) == [
        ("won-and-back", "increased", _usd("1000")),
        ("shrank", "decreased", _usd("15000")),
        ("reopened", "reopened", _usd("12000")),
        ("pulled", "pulled_in", _usd("8000")),
    ]


def test_without_a_window_a_change_of_date_moves_nothing() -> None:
    """With no window every open deal is in: the pushed deal stays in the pipeline."""
    movement = pipeline_movement(_the_week(), start=WEEK_START, end=WEEK_END)

    assert movement.opening == _usd("105000")
    assert movement.pushed_out == _usd("0")
    assert movement.closing == _usd("75000")  # new 10,000 + grew 25,000 + pushed 40,000
    assert [entry.bucket for entry in movement.entries] == ["new", "increased", "won", "lost"]


def test_a_window_leaves_out_deals_without_an_expected_close() -> None:
    """A deal with no expected close is outside any window; setting a date in it pulls it in."""
    undated = _deal("undated", "7000", None).update(
        expected_close=date(2027, 3, 19), clock=_on(3, 2)
    )

    movement = pipeline_movement([undated], start=WEEK_START, end=WEEK_END, window=Q1)

    assert movement.counts["opening"] == 0
    assert _entries(movement) == [("undated", "pulled_in", _usd("7000"))]


def test_amounts_from_line_items_and_deals_without_an_amount() -> None:
    """A deal priced by its lines grows when a line is added (2 x 1,500 = 3,000 more); a deal
    with no amount is counted in both pipelines and adds nothing, until it gets one."""
    lines = Opportunity.open(
        id="lines",
        name="Licences",
        line_items=[LineItem("Licence", _usd("1500"), quantity=4)],
        expected_close=date(2027, 3, 26),
        clock=_on(2, 1),
    ).add_line_item(LineItem("Licence", _usd("1500"), quantity=2), clock=_on(3, 2))
    unpriced = _deal("unpriced", "1", date(2027, 3, 12)).update(amount=None, clock=_on(2, 2))
    priced = _deal("priced-late", "1", date(2027, 3, 12)).update(amount=None, clock=_on(2, 2))
    priced = priced.update(amount=_usd("4000"), clock=_on(3, 3))

    movement = pipeline_movement(
        [lines, unpriced, priced], start=WEEK_START, end=WEEK_END, window=Q1
    )

    assert (movement.counts["opening"], movement.counts["closing"]) == (3, 3)
    assert movement.opening == _usd("6000")
    assert movement.closing == _usd("13000")
    assert _entries(movement) == [
        ("lines", "increased", _usd("3000")),
        ("priced-late", "increased", _usd("4000")),
    ]


# -- 2. time in stage: Odoo's stage-duration test ------------------------------------------


def _odoo_lead(pipeline: Pipeline) -> tuple[Opportunity, datetime]:
    """The lead of Odoo's test and the moment it is read (20 minutes after its last move)."""
    opp, clock = odoo_lead(pipeline)
    return opp, clock.now()


def _minutes(value: float) -> timedelta:
    return timedelta(minutes=value)


def test_time_in_stage_reproduces_odoos_stage_durations() -> None:
    """S0 30, S1 5, S2 115, S3 70, S4 220 minutes; one deal per stage; rows in pipeline order."""
    opp, now = _odoo_lead(odoo_pipeline())

    table = time_in_stage([opp], now=now)

    assert [row.stage for row in table] == ["S1", "S2", "S3", "S4", "S0"]
    assert {row.stage: row.total for row in table} == {
        "S0": _minutes(30),
        "S1": _minutes(5),
        "S2": _minutes(115),
        "S3": _minutes(70),
        "S4": _minutes(220),
    }
    for row in table:
        assert row.opportunities == 1
        assert row.mean == row.median == row.p90 == row.total


def test_time_in_stage_statistics_over_two_deals_interpolate_like_numpy() -> None:
    """A second deal: S1 15 minutes, S2 100 minutes, then won (time won is no stage time).
    S1 [5, 15]: mean and median 10, p90 5 + 0.9 x 10 = 14; S2 [100, 115]: mean and median
    107.5, p90 100 + 0.9 x 15 = 113.5."""
    pipeline = odoo_pipeline()
    opp, now = _odoo_lead(pipeline)
    clock = FixedClock(ODOO_START)
    second = Opportunity.open(id="two", name="Second", pipeline=pipeline, stage="S1", clock=clock)
    clock.advance(_minutes(15))
    second = second.move_to("S2", clock=clock)
    clock.advance(_minutes(100))
    second = second.win(clock=clock)

    rows = {row.stage: row for row in time_in_stage([opp, second], now=now)}

    assert set(rows) == {"S1", "S2", "S3", "S4", "S0"}  # won and lost are not rows
    assert rows["S1"] == StageTimeRow(
        "S1", 2, _minutes(10), _minutes(10), _minutes(14), _minutes(20)
    )
    assert rows["S2"] == StageTimeRow(
        "S2", 2, _minutes(107.5), _minutes(107.5), _minutes(113.5), _minutes(215)
    )
    assert rows["S4"] == StageTimeRow(
        "S4", 1, _minutes(220), _minutes(220), _minutes(220), _minutes(220)
    )


def test_time_in_stage_reads_the_clock_when_now_is_not_given() -> None:
    opp, now = _odoo_lead(odoo_pipeline())

    assert time_in_stage([opp], clock=FixedClock(now)) == time_in_stage([opp], now=now)


def test_a_stage_nobody_visited_is_a_row_of_zero() -> None:
    """Every open stage is a row; one no deal was in has no statistics and a zero total."""
    clock = _on(3, 1)
    opps = [Opportunity.open(name=f"Waiting {n}", clock=clock) for n in (1, 2)]

    rows = list(time_in_stage(opps, now=_at(3, 3)))

    assert rows == [
        StageTimeRow(
            "wait", 2, timedelta(days=2), timedelta(days=2), timedelta(days=2), timedelta(days=4)
        ),
        StageTimeRow("in_progress", 0, None, None, None, timedelta(0)),
    ]


def test_time_in_stage_of_nothing_is_an_empty_table() -> None:
    assert len(time_in_stage([], now=_at(3, 1))) == 0


# -- 3. funnel ------------------------------------------------------------------------------

SALESFORCE_OPEN = [stage.key for stage in Pipeline.salesforce().open_stages]


def _walk(opp: Opportunity, stages: Sequence[str], clock: FixedClock) -> Opportunity:
    for key in stages:
        clock.advance(timedelta(days=1))
        opp = opp.move_to(key, clock=clock)
    return opp


def _salesforce_deals() -> list[Opportunity]:
    """Five deals through Salesforce's eight open stages (ranks 0 to 7, won beyond them):
    stepwise to value_proposition (3), won after every stage (past all), a jump from
    prospecting to id_decision_makers (4), lost in qualification (1), and opened in
    needs_analysis (2)."""
    pipeline = Pipeline.salesforce()
    clock = _on(1, 4)

    def opened(id: str, stage: str | None = None) -> Opportunity:
        return Opportunity.open(id=id, name=id, pipeline=pipeline, stage=stage, clock=clock)

    stepwise = _walk(opened("stepwise"), SALESFORCE_OPEN[1:4], clock)
    winner = _walk(opened("winner"), SALESFORCE_OPEN[1:], clock)
    clock.advance(timedelta(days=1))
    winner = winner.win(clock=clock)
    jumper = _walk(opened("jumper"), ["id_decision_makers"], clock)
    loser = _walk(opened("loser"), ["qualification"], clock)
    clock.advance(timedelta(days=1))
    loser = loser.lose(reason="Went quiet", clock=clock)
    late = opened("late", "needs_analysis")
    return [stepwise, winner, jumper, loser, late]


def test_funnel_counts_each_stage_reached_advanced_and_won() -> None:
    """Progress 3, past all, 4, 1, 2: reached at rank r = deals with progress >= r, advanced
    = progress > r, won = the won deal wherever it counts."""
    table = funnel(_salesforce_deals())

    third = Decimal(1) / Decimal(3)
    expected = [
        # stage, reached, advanced, won, conversion, win rate
        ("prospecting", 5, 5, 1, 1.0, 0.2),
        ("qualification", 5, 4, 1, 0.8, 0.2),
        ("needs_analysis", 4, 3, 1, 0.75, 0.25),
        ("value_proposition", 3, 2, 1, float(2 * third), float(third)),
        ("id_decision_makers", 2, 1, 1, 0.5, 0.5),
        ("perception_analysis", 1, 1, 1, 1.0, 1.0),
        ("proposal_price_quote", 1, 1, 1, 1.0, 1.0),
        ("negotiation_review", 1, 1, 1, 1.0, 1.0),
    ]
    assert [row.stage for row in table] == SALESFORCE_OPEN
    for row, (stage, reached, advanced, won, conversion, win_rate) in zip(
        table, expected, strict=True
    ):
        assert (row.stage, row.reached, row.advanced, row.won) == (stage, reached, advanced, won)
        assert _close_to(row.conversion, conversion, 1e-12), row
        assert _close_to(row.win_rate_from_stage, win_rate, 1e-12), row
    assert table[1].conversion == Decimal("0.8")
    assert table[2].win_rate_from_stage == Decimal("0.25")


def test_funnel_refuses_deals_of_two_pipelines_unless_one_is_chosen() -> None:
    """Stages of different pipelines are not added: name both, or count only the chosen one."""
    clock = _on(1, 4)
    default_deal = Opportunity.open(id="plain", name="Plain", clock=clock)
    clock.advance(timedelta(days=1))
    default_deal = default_deal.move_to("in_progress", clock=clock)
    opps = [*_salesforce_deals(), default_deal]

    with pytest.raises(ValidationError, match=r"'default', 'salesforce'"):
        funnel(opps)

    only_default = list(funnel(opps, pipeline=Pipeline.default()))
    assert only_default == [
        FunnelRow("wait", 1, 1, 0, Decimal(1), Decimal(0)),
        FunnelRow("in_progress", 1, 0, 0, Decimal(0), Decimal(0)),
    ]
    assert list(funnel(opps, pipeline=Pipeline.salesforce())) == list(funnel(_salesforce_deals()))


def test_funnel_counts_the_furthest_stage_of_a_deal_that_went_back() -> None:
    """In progress, back to wait, then lost: it reached both stages and advanced past wait."""
    clock = _on(1, 4)
    opp = Opportunity.open(name="Back and forth", clock=clock)
    opp = _walk(opp, ["in_progress", "wait"], clock).lose(clock=clock)

    assert list(funnel([opp])) == [
        FunnelRow("wait", 1, 1, 0, Decimal(1), Decimal(0)),
        FunnelRow("in_progress", 1, 0, 0, Decimal(0), Decimal(0)),
    ]


def test_funnel_of_nothing_is_an_empty_table() -> None:
    assert len(funnel([])) == 0


# -- 4. snapshot with a back-dated change ---------------------------------------------------


def test_snapshot_separates_when_a_change_happened_from_when_it_was_recorded() -> None:
    """The amount went to 12,000 on March 1, but nobody typed it in until March 10."""
    deal = _deal("late-news", "10000", date(2027, 3, 31)).update(
        amount=_usd("12000"), at=_at(3, 1), clock=_on(3, 10)
    )
    later = _deal("later", "5000", date(2027, 3, 31), opened=_on(3, 7))

    def amounts(known_at: datetime | None) -> dict[str, Money | None]:
        return {
            opp.id: opp.amount
            for opp in snapshot([deal, later], as_of=_at(3, 5), known_at=known_at)
        }

    assert amounts(_at(3, 6)) == {"late-news": _usd("10000")}
    assert amounts(_at(3, 11)) == {"late-news": _usd("12000")}
    assert amounts(None) == {"late-news": _usd("12000")}
    [before] = snapshot([deal], as_of=_at(2, 20), known_at=_at(3, 11))
    assert before.amount == _usd("10000")
    assert before.version == 1


def test_snapshot_leaves_out_a_deal_not_yet_recorded_at_known_at() -> None:
    """A deal opened (back-dated) on February 20 but entered on March 10 was unknown on March 6."""
    deal = Opportunity.open(
        id="backfilled", name="Backfilled", amount=_usd("3000"), at=_at(2, 20), clock=_on(3, 10)
    )

    assert snapshot([deal], as_of=_at(3, 5), known_at=_at(3, 6)) == []
    assert [opp.id for opp in snapshot([deal], as_of=_at(3, 5), known_at=_at(3, 11))] == [
        "backfilled"
    ]
    assert snapshot([deal], as_of=_at(2, 19)) == []


# -- 5. slippage ------------------------------------------------------------------------------


def _slipping_deals() -> list[Opportunity]:
    slipper = (
        _deal("slipper", "1000", date(2027, 3, 31), owner="Ann", opened=_on(1, 10))
        .update(expected_close=date(2027, 4, 30), clock=_on(2, 1))  # pushed 30 days
        .update(expected_close=date(2027, 4, 15), clock=_on(2, 15))  # pulled in: no push
        .update(expected_close=date(2027, 6, 30), clock=_on(3, 1))  # pushed 76 days from Apr 15
    )
    cleared = (
        _deal("cleared", "1000", date(2027, 3, 31), owner="Ann", opened=_on(1, 10))
        .update(expected_close=None, clock=_on(2, 1))
        .update(expected_close=date(2027, 5, 31), clock=_on(2, 10))  # 61 days after Mar 31
    )
    steady = _deal("steady", "1000", date(2027, 3, 31), owner="Bob", opened=_on(1, 10))
    never = _deal("never", "1000", None, owner="Bob", opened=_on(1, 10))
    late_set = _deal("late-set", "1000", None, opened=_on(1, 10)).update(
        expected_close=date(2027, 4, 10), clock=_on(2, 1)
    )
    return [steady, never, late_set, cleared, slipper]


def test_slippage_counts_pushes_against_the_last_known_date() -> None:
    table = slippage(_slipping_deals())

    rows = [
        (
            row.opportunity_id,
            row.owner,
            row.pushes,
            row.days_slipped,
            row.first_expected_close,
            row.last_expected_close,
        )
        for row in table
    ]
    assert rows == [
        ("slipper", "Ann", 2, Decimal(30 + 76), date(2027, 3, 31), date(2027, 6, 30)),
        ("cleared", "Ann", 1, Decimal(61), date(2027, 3, 31), date(2027, 5, 31)),
        # Ties in opportunity id order, whatever order the deals came in.
        ("late-set", None, 0, Decimal(0), date(2027, 4, 10), date(2027, 4, 10)),
        ("steady", "Bob", 0, Decimal(0), date(2027, 3, 31), date(2027, 3, 31)),
    ]


def test_slippage_summary_adds_up_per_owner_with_no_owner_last() -> None:
    """Ann: slipper and cleared (3 pushes, 167 days); Bob: steady only (never had a date)."""
    table = slippage_summary(_slipping_deals())

    assert [(r.key, r.opportunities, r.pushes, r.days_slipped) for r in table] == [
        ("Ann", 2, 3, Decimal(167)),
        ("Bob", 1, 0, Decimal(0)),
        (None, 1, 0, Decimal(0)),
    ]
    by_slipped = slippage_summary(_slipping_deals(), by=lambda opp: opp.id.startswith("s"))
    assert [(r.key, r.opportunities, r.pushes) for r in by_slipped] == [
        (False, 2, 1),
        (True, 2, 2),
    ]


# -- 6. stage win rates ----------------------------------------------------------------------

Z95 = 1.959963984540054


def _wilson(won: int, closed: int) -> tuple[float, float]:
    """The textbook 95 % Wilson score interval, in floats."""
    p = won / closed
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * closed)) / (1 + z2 / closed)
    margin = Z95 * math.sqrt(p * (1 - p) / closed + z2 / (4 * closed * closed)) / (1 + z2 / closed)
    return max(0.0, centre - margin), min(1.0, centre + margin)


def test_the_wilson_helper_matches_published_values() -> None:
    assert _wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert _wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)


def _closed_history() -> list[Opportunity]:
    """20 closed deals in the default pipeline: 10 lost in wait, 8 won and 2 lost after
    reaching in_progress; plus two open deals, which teach nothing."""
    clock = _on(1, 4)
    opps = []
    for n in range(10):
        opps.append(Opportunity.open(name=f"Lost early {n}", clock=clock).lose(clock=clock))
    for n in range(10):
        opp = Opportunity.open(name=f"Went on {n}", clock=clock).move_to("in_progress", clock=clock)
        opps.append(opp.win(clock=clock) if n < 8 else opp.lose(clock=clock))
    opps.append(Opportunity.open(name="Still waiting", clock=clock))
    opps.append(
        Opportunity.open(name="Still going", clock=clock).move_to("in_progress", clock=clock)
    )
    return opps


def test_stage_win_rates_count_closed_deals_that_reached_each_stage() -> None:
    """wait: 20 closed, 8 won (40 %); in_progress: 10 closed, 8 won (80 %)."""
    table = stage_win_rates(_closed_history(), min_closed=15)

    wait, in_progress = table
    assert (wait.stage, wait.closed, wait.won, wait.rate, wait.sufficient) == (
        "wait",
        20,
        8,
        Decimal("0.4"),
        True,
    )
    assert (in_progress.stage, in_progress.closed, in_progress.won) == ("in_progress", 10, 8)
    assert (in_progress.rate, in_progress.sufficient) == (Decimal("0.8"), False)
    low, high = _wilson(8, 10)
    assert _close_to(in_progress.low, low)
    assert _close_to(in_progress.high, high)
    assert _close_to(in_progress.low, 0.4902)
    assert _close_to(in_progress.high, 0.9433)
    low, high = _wilson(8, 20)
    assert _close_to(wait.low, low)
    assert _close_to(wait.high, high)


def test_stage_win_rates_with_nothing_won_and_nothing_closed() -> None:
    """0 of 10: the interval runs from 0 to about 0.2775; a stage no closed deal reached has
    no rate and is sufficient only when min_closed is 0."""
    clock = _on(1, 4)
    opps = [Opportunity.open(name=f"Lost {n}", clock=clock).lose(clock=clock) for n in range(10)]

    wait, in_progress = stage_win_rates(opps, min_closed=0)

    assert (wait.closed, wait.won, wait.rate) == (10, 0, Decimal(0))
    assert _close_to(wait.low, 0.0)
    assert _close_to(wait.high, _wilson(0, 10)[1])
    assert _close_to(wait.high, 0.2775)
    assert wait.low is not None
    assert wait.low >= 0
    assert (in_progress.closed, in_progress.rate, in_progress.low, in_progress.high) == (
        0,
        None,
        None,
        None,
    )
    assert in_progress.sufficient is True
    assert [row.sufficient for row in stage_win_rates(opps)] == [False, False]  # 30 by default


def test_learned_win_rates_replace_stage_probabilities_in_the_forecast() -> None:
    """Open: 1,000 in wait (10 %) and 2,000 in progress (50 %), weighted 100 + 1,000.  With
    wait's 40 % learned: 400 + 1,000; with both stages learned (40 %, 80 %): 400 + 1,600."""
    clock = _on(1, 10)
    close = date(2027, 3, 15)
    open_deals = [
        Opportunity.open(name="W", amount=_usd("1000"), expected_close=close, clock=clock),
        Opportunity.open(
            name="P", stage="in_progress", amount=_usd("2000"), expected_close=close, clock=clock
        ),
    ]
    history = _closed_history()

    only_wait = as_probabilities(stage_win_rates(history, min_closed=15))
    both = as_probabilities(stage_win_rates(history, min_closed=10))

    assert only_wait == {"wait": Decimal(40)}
    assert both == {"wait": Decimal(40), "in_progress": Decimal(80)}
    assert as_probabilities(stage_win_rates(history)) == {}
    [plain] = forecast(open_deals)
    [learned_wait] = forecast(open_deals, probabilities=only_wait)
    [learned_both] = forecast(open_deals, probabilities=both)
    assert plain.weighted == _usd("1100")
    assert learned_wait.weighted == _usd("1400")
    assert learned_both.weighted == _usd("2000")
    assert learned_both.pipeline == plain.pipeline == _usd("3000")


# -- 7. calibration ---------------------------------------------------------------------------


def _calibration_deals() -> list[Opportunity]:
    """Five closed deals with the probability each had when it entered its last open stage:
    a 50 % won, b 70 % (set with the move) lost, c 10 % lost, d 20 % (set at opening) won,
    e 50 % raised by hand to 90 % before it was won; and one open deal."""
    clock = _on(2, 1)

    def opened(id: str, **fields: Any) -> Opportunity:
        return Opportunity.open(id=id, name=id, clock=clock, **fields)

    a = opened("a").move_to("in_progress", clock=clock).win(clock=clock)
    b = opened("b").move_to("in_progress", probability=70, clock=clock).lose(clock=clock)
    c = opened("c").lose(clock=clock)
    d = opened("d", probability=20).win(clock=clock)
    e = (
        opened("e")
        .move_to("in_progress", clock=clock)
        .update(probability=90, clock=clock)
        .win(clock=clock)
    )
    pending = opened("pending", probability=80)
    return [a, b, c, d, e, pending]


def test_calibration_brier_score_and_bins_by_hand() -> None:
    """Brier = (0.5-1)² + (0.7-0)² + (0.1-0)² + (0.2-1)² + (0.5-1)² over 5
    = (0.25 + 0.49 + 0.01 + 0.64 + 0.25) / 5 = 0.328."""
    result = calibration(_calibration_deals())

    assert result.count == 5
    assert result.brier == Decimal("0.328")
    assert [(b.low, b.high, b.count, b.stated, b.observed) for b in result.bins] == [
        (Decimal("0.1"), Decimal("0.2"), 1, Decimal("0.1"), Decimal(0)),
        (Decimal("0.2"), Decimal("0.3"), 1, Decimal("0.2"), Decimal(1)),
        (Decimal("0.5"), Decimal("0.6"), 2, Decimal("0.5"), Decimal(1)),
        (Decimal("0.7"), Decimal("0.8"), 1, Decimal("0.7"), Decimal(0)),
    ]


def test_calibration_point_chooses_which_probability_was_stated() -> None:
    """opened: 0.1, 0.1, 0.1, 0.2, 0.1 -> (0.81 + 0.01 + 0.01 + 0.64 + 0.81) / 5 = 0.456;
    before_close: e's hand-set 0.9 -> (0.25 + 0.49 + 0.01 + 0.64 + 0.01) / 5 = 0.28."""
    deals = _calibration_deals()

    assert calibration(deals, point="last_open_stage").brier == Decimal("0.328")
    assert calibration(deals, point="opened").brier == Decimal("0.456")
    before_close = calibration(deals, point="before_close")
    assert before_close.brier == Decimal("0.28")
    assert [(b.low, b.count) for b in before_close.bins][-1] == (Decimal("0.9"), 1)


def test_calibration_in_one_bin_and_the_last_bin_includes_certainty() -> None:
    """One bin holds all five: stated mean 2.0 / 5 = 0.4, observed 3 / 5 = 0.6.  A deal
    stated at 100 % falls in the last bin, not past it."""
    one = calibration(_calibration_deals(), bins=1)

    [only] = one.bins
    assert (only.low, only.high, only.count) == (Decimal(0), Decimal(1), 5)
    assert (only.stated, only.observed) == (Decimal("0.4"), Decimal("0.6"))
    assert one.brier == Decimal("0.328")
    clock = _on(2, 1)
    sure = Opportunity.open(name="Sure", probability=100, clock=clock).lose(clock=clock)
    [last] = calibration([sure], bins=4).bins
    assert (last.low, last.high, last.count, last.observed) == (
        Decimal("0.75"),
        Decimal(1),
        1,
        Decimal(0),
    )
    assert calibration([sure]).brier == Decimal(1)


def test_calibration_of_open_deals_only_is_empty() -> None:
    result = calibration(_calibration_deals()[-1:])

    assert (result.brier, result.count, len(result.bins)) == (None, 0, 0)


# -- 8. stale deals ---------------------------------------------------------------------------


def _rotting_pipeline() -> Pipeline:
    return Pipeline(
        id="rotting",
        name="With stale limits",
        stages=(
            Stage("lead", "Lead", 10, stale_after_days=7),
            Stage("offer", "Offer", 50, stale_after_days=3),
            Stage("contract", "Contract", 80),
            Stage("won", "Won", 100, Outcome.WON),
            Stage("lost", "Lost", 0, Outcome.LOST),
        ),
    )


STALE_NOW = _at(3, 31)


def _rotting_deals() -> list[Opportunity]:
    pipeline = _rotting_pipeline()

    def opened(id: str, stage: str = "lead", when: FixedClock | None = None) -> Opportunity:
        return Opportunity.open(
            id=id, name=id, pipeline=pipeline, stage=stage, owner="Kai", clock=when or _on(3, 1)
        )

    return [
        opened("stuck"),  # 30 days in lead
        opened("back")
        .move_to("offer", clock=_on(3, 20))
        .move_to("lead", clock=_on(3, 27)),  # 4 days since it came back to lead
        opened("offered").move_to("offer", clock=_on(3, 25)),  # 6 days in offer
        opened("contract", "contract"),  # 30 days, but contract has no limit
        opened("closed").win(clock=_on(3, 2)),
        opened("seven-days", when=_on(3, 24)),  # exactly 7 days: not more than 7
        opened("won-later").win(clock=_on(4, 5)),  # still open in lead on March 31
    ]


def test_stale_deals_sat_longer_than_their_stage_allows_longest_first() -> None:
    table = stale(_rotting_deals(), now=STALE_NOW)

    assert [(r.opportunity_id, r.stage, r.owner, r.days_in_stage) for r in table] == [
        ("stuck", "lead", "Kai", Decimal(30)),
        ("won-later", "lead", "Kai", Decimal(30)),
        ("offered", "offer", "Kai", Decimal(6)),
    ]


def test_stale_days_overrides_every_stage_limit_but_never_takes_closed_deals() -> None:
    table = stale(_rotting_deals(), clock=FixedClock(STALE_NOW), days=5)

    assert [(r.opportunity_id, r.days_in_stage) for r in table] == [
        ("contract", Decimal(30)),
        ("stuck", Decimal(30)),
        ("won-later", Decimal(30)),
        ("seven-days", Decimal(7)),
        ("offered", Decimal(6)),
    ]
    everything = stale(_rotting_deals(), now=STALE_NOW, days=0)
    assert "closed" not in {row.opportunity_id for row in everything}
    assert len(everything) == 6


def test_stale_counts_part_days_exactly() -> None:
    """Opened 7 days and 12 hours before now: 7.5 days, more than the lead stage's 7."""
    deal = Opportunity.open(
        id="half", name="half", pipeline=_rotting_pipeline(), clock=_on(3, 23, hour=21)
    )

    [row] = stale([deal], now=STALE_NOW)

    assert row.days_in_stage == Decimal("7.5")


# -- 9. bad input -------------------------------------------------------------------------------

NAIVE = datetime(2027, 3, 1, 9, 0)
Call = Callable[[list[Opportunity]], object]

BAD_CALLS: list[tuple[str, Call, type[OppcoreError], str]] = [
    # snapshot
    (
        "snapshot naive as_of",
        lambda opps: snapshot(opps, as_of=NAIVE),
        ValidationError,
        r"as_of '2027-03-01T09:00:00' is naive",
    ),
    (
        "snapshot naive known_at",
        lambda opps: snapshot(opps, as_of=WEEK_END, known_at=NAIVE),
        ValidationError,
        r"known_at '2027-03-01T09:00:00' is naive",
    ),
    (
        "snapshot as_of a text",
        lambda opps: snapshot(opps, as_of="2027-03-01"),  # type: ignore[call-overload]
        ValidationError,
        r"as_of must be a datetime or a date, not '2027-03-01'",
    ),
    (
        "snapshot of a str",
        lambda opps: snapshot("deals", as_of=WEEK_END),  # type: ignore[arg-type]
        ValidationError,
        r"not 'deals'",
    ),
    (
        "snapshot with a non-Opportunity",
        lambda opps: snapshot([*opps, 42], as_of=WEEK_END),  # type: ignore[list-item]
        ValidationError,
        r"42 is not an Opportunity",
    ),
    # funnel
    (
        "funnel of a str",
        lambda opps: funnel("deals"),  # type: ignore[arg-type]
        ValidationError,
        r"not 'deals'",
    ),
    (
        "funnel with a non-Opportunity",
        lambda opps: funnel([*opps, "deal"]),  # type: ignore[list-item]
        ValidationError,
        r"'deal' is not an Opportunity",
    ),
    (
        "funnel pipeline by name",
        lambda opps: funnel(opps, pipeline="default"),  # type: ignore[arg-type]
        ValidationError,
        r"pipeline must be a Pipeline, not 'default'",
    ),
    # time_in_stage
    (
        "time_in_stage naive now",
        lambda opps: time_in_stage(opps, now=NAIVE),
        ValidationError,
        r"now '2027-03-01T09:00:00' is naive",
    ),
    (
        "time_in_stage of a str",
        lambda opps: time_in_stage("deals", now=WEEK_END),  # type: ignore[arg-type]
        ValidationError,
        r"not 'deals'",
    ),
    (
        "time_in_stage with a non-Opportunity",
        lambda opps: time_in_stage([*opps, None], now=WEEK_END),  # type: ignore[list-item]
        ValidationError,
        r"None is not an Opportunity",
    ),
    (
        "time_in_stage with a bad clock",
        lambda opps: time_in_stage(opps, clock="noon"),  # type: ignore[arg-type]
        ValidationError,
        r"'noon' is not a clock",
    ),
    # pipeline_movement
    (
        "movement naive start",
        lambda opps: pipeline_movement(opps, start=NAIVE, end=WEEK_END),
        ValidationError,
        r"start '2027-03-01T09:00:00' is naive",
    ),
    (
        "movement naive end",
        lambda opps: pipeline_movement(opps, start=WEEK_START, end=NAIVE),
        ValidationError,
        r"end '2027-03-01T09:00:00' is naive",
    ),
    (
        "movement start after end",
        lambda opps: pipeline_movement(opps, start=WEEK_END, end=WEEK_START),
        ValidationError,
        r"start 2027-03-08T09:00:00\+00:00 is after end 2027-03-01T09:00:00\+00:00",
    ),
    (
        "movement window of a str",
        lambda opps: pipeline_movement(
            opps,
            start=WEEK_START,
            end=WEEK_END,
            window="2027-Q1",  # type: ignore[arg-type]
        ),
        ValidationError,
        r"not '2027-Q1'",
    ),
    (
        "movement window of three days",
        lambda opps: pipeline_movement(
            opps,
            start=WEEK_START,
            end=WEEK_END,
            window=(date(2027, 1, 1), date(2027, 2, 1), date(2027, 3, 1)),  # type: ignore[arg-type]
        ),
        ValidationError,
        r"a \(first day, last day\) pair, not \(datetime.date\(2027, 1, 1\)",
    ),
    (
        "movement window reversed",
        lambda opps: pipeline_movement(
            opps, start=WEEK_START, end=WEEK_END, window=(date(2027, 3, 31), date(2027, 1, 1))
        ),
        ValidationError,
        r"starts on 2027-03-31 after it ends on 2027-01-01",
    ),
    (
        "movement window of datetimes",
        lambda opps: pipeline_movement(
            opps,
            start=WEEK_START,
            end=WEEK_END,
            window=(WEEK_START, date(2027, 3, 31)),  # a datetime is a date to the type checker
        ),
        ValidationError,
        r"Window start must be a date .*datetime.datetime\(2027, 3, 1, 9, 0",
    ),
    (
        "movement of a str",
        lambda opps: pipeline_movement("deals", start=WEEK_START, end=WEEK_END),  # type: ignore[arg-type]
        ValidationError,
        r"not 'deals'",
    ),
    (
        "movement with a non-Opportunity",
        lambda opps: pipeline_movement([*opps, 1.5], start=WEEK_START, end=WEEK_END),  # type: ignore[list-item]
        ValidationError,
        r"1.5 is not an Opportunity",
    ),
    (
        "movement bad currency",
        lambda opps: pipeline_movement(opps, start=WEEK_START, end=WEEK_END, currency="XYZ"),
        ValidationError,
        r"'XYZ'",
    ),
    (
        "movement rates of a dict",
        lambda opps: pipeline_movement(
            opps,
            start=WEEK_START,
            end=WEEK_END,
            currency="USD",
            rates={"THB": 35},  # type: ignore[arg-type]
        ),
        ValidationError,
        r"rates must be ExchangeRates, not \{'THB': 35\}",
    ),
    (
        "movement mixed currencies",
        lambda opps: pipeline_movement(opps, start=WEEK_START, end=WEEK_END),
        CurrencyMismatchError,
        r"THB, USD",
    ),
    (
        "movement mixed currencies without rates",
        lambda opps: pipeline_movement(opps, start=WEEK_START, end=WEEK_END, currency="USD"),
        CurrencyMismatchError,
        r"THB, not USD",
    ),
    # slippage and slippage_summary
    (
        "slippage of a str",
        lambda opps: slippage("deals"),  # type: ignore[arg-type]
        ValidationError,
        r"not 'deals'",
    ),
    (
        "slippage with a non-Opportunity",
        lambda opps: slippage([*opps, {"id": "x"}]),  # type: ignore[list-item]
        ValidationError,
        r"\{'id': 'x'\} is not an Opportunity",
    ),
    (
        "slippage_summary by nonsense",
        lambda opps: slippage_summary(opps, by="nonsense"),  # type: ignore[arg-type]
        ValidationError,
        r"by='nonsense' is not one of",
    ),
    (
        "slippage_summary of a str",
        lambda opps: slippage_summary("deals"),  # type: ignore[arg-type]
        ValidationError,
        r"not 'deals'",
    ),
    (
        "slippage_summary by an unhashable key",
        lambda opps: slippage_summary(opps, by=lambda opp: [opp.owner]),  # type: ignore[arg-type,return-value]
        ValidationError,
        r"unhashable key \['Ann'\]",
    ),
    # stage_win_rates and as_probabilities
    (
        "stage_win_rates min_closed -1",
        lambda opps: stage_win_rates(opps, min_closed=-1),
        ValidationError,
        r"min_closed -1 must be a whole number",
    ),
    (
        "stage_win_rates min_closed True",
        lambda opps: stage_win_rates(opps, min_closed=True),
        ValidationError,
        r"min_closed True must be a whole number",
    ),
    (
        "stage_win_rates min_closed '3'",
        lambda opps: stage_win_rates(opps, min_closed="3"),  # type: ignore[arg-type]
        ValidationError,
        r"min_closed '3' must be a whole number",
    ),
    (
        "stage_win_rates of a str",
        lambda opps: stage_win_rates("deals"),  # type: ignore[arg-type]
        ValidationError,
        r"not 'deals'",
    ),
    (
        "stage_win_rates with a non-Opportunity",
        lambda opps: stage_win_rates([*opps, "deal"]),  # type: ignore[list-item]
        ValidationError,
        r"'deal' is not an Opportunity",
    ),
    (
        "as_probabilities of a str",
        lambda opps: as_probabilities("wait"),  # type: ignore[arg-type]
        ValidationError,
        r"not 'wait'",
    ),
    (
        "as_probabilities of deals",
        lambda opps: as_probabilities(opps),  # type: ignore[arg-type]
        ValidationError,
        r"<Opportunity 'usd'.* is not a row of stage_win_rates",
    ),
    (
        "as_probabilities of a number",
        lambda opps: as_probabilities(7),  # type: ignore[arg-type]
        ValidationError,
        r"not 7",
    ),
    # calibration
    (
        "calibration bins 0",
        lambda opps: calibration(opps, bins=0),
        ValidationError,
        r"bins 0 must be a whole number from 1",
    ),
    (
        "calibration bins True",
        lambda opps: calibration(opps, bins=True),
        ValidationError,
        r"bins True must be a whole number",
    ),
    (
        "calibration bins '10'",
        lambda opps: calibration(opps, bins="10"),  # type: ignore[arg-type]
        ValidationError,
        r"bins '10' must be a whole number",
    ),
    (
        "calibration bad point",
        lambda opps: calibration(opps, point="closed"),  # type: ignore[arg-type]
        ValidationError,
        r"point 'closed' is not one of last_open_stage, opened, before_close",
    ),
    (
        "calibration of a str",
        lambda opps: calibration("deals"),  # type: ignore[arg-type]
        ValidationError,
        r"not 'deals'",
    ),
    # stale
    (
        "stale days -1",
        lambda opps: stale(opps, now=WEEK_END, days=-1),
        ValidationError,
        r"days -1 must be from 0 to 36500",
    ),
    (
        "stale days True",
        lambda opps: stale(opps, now=WEEK_END, days=True),
        ValidationError,
        r"days must be a whole or Decimal number of days, not True",
    ),
    (
        "stale days 1.5",
        lambda opps: stale(opps, now=WEEK_END, days=1.5),  # type: ignore[arg-type]
        ValidationError,
        r"not 1.5",
    ),
    (
        "stale days NaN",
        lambda opps: stale(opps, now=WEEK_END, days=Decimal("NaN")),
        ValidationError,
        r"days 'NaN' must be from 0 to 36500",
    ),
    (
        "stale naive now",
        lambda opps: stale(opps, now=NAIVE),
        ValidationError,
        r"now '2027-03-01T09:00:00' is naive",
    ),
    (
        "stale of a str",
        lambda opps: stale("deals", now=WEEK_END),  # type: ignore[arg-type]
        ValidationError,
        r"not 'deals'",
    ),
    (
        "stale with a non-Opportunity",
        lambda opps: stale([*opps, 0], now=WEEK_END),  # type: ignore[list-item]
        ValidationError,
        r"0 is not an Opportunity",
    ),
]


def _mixed_deals() -> list[Opportunity]:
    """Two open deals, one in USD (with a slip to summarise) and one in THB."""
    usd = _deal("usd", "1000", date(2027, 3, 31), owner="Ann").update(
        expected_close=date(2027, 4, 30), clock=_on(2, 2)
    )
    thb = Opportunity.open(
        id="thb",
        name="Baht deal",
        amount=_thb("35000"),
        expected_close=date(2027, 3, 20),
        owner="Ann",
        clock=_on(2, 1),
    )
    return [usd, thb]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [pytest.param(call, error, message, id=name) for name, call, error, message in BAD_CALLS],
)
def test_bad_input_raises_an_oppcore_error_naming_the_value(
    call: Call, error: type[OppcoreError], message: str
) -> None:
    opps = _mixed_deals()
    before = list(opps)
    events = [opp.events for opp in opps]

    with pytest.raises(error, match=message) as raised:
        call(opps)

    assert isinstance(raised.value, OppcoreError)
    assert opps == before
    assert all(a is b for a, b in zip(opps, before, strict=True))
    assert [opp.events for opp in opps] == events


def test_every_new_function_is_covered_by_the_bad_input_table() -> None:
    names = " ".join(name for name, *_ in BAD_CALLS)
    for function in (
        "snapshot",
        "funnel",
        "time_in_stage",
        "movement",
        "slippage",
        "slippage_summary",
        "stage_win_rates",
        "as_probabilities",
        "calibration",
        "stale",
    ):
        assert re.search(rf"\b{function}\b", names), function


# -- 10. pipeline movement across currencies ---------------------------------------------------

RATES = ExchangeRates(
    [
        ("USD", "THB", date(2027, 1, 1), "35"),
        ("USD", "THB", date(2027, 3, 5), "36"),  # in force on March 8, the end
    ]
)


def _two_currency_week() -> list[Opportunity]:
    """In USD: steady 1,000 (unchanged), grew 2,000 -> 2,500, won 500; in THB: steady 36,000,
    new 18,000, lost 7,200."""
    steady_usd = _deal("steady-usd", "1000", date(2027, 3, 20))
    grew_usd = _deal("grew-usd", "2000", date(2027, 3, 20)).update(
        amount=_usd("2500"), clock=_on(3, 2)
    )
    won_usd = _deal("won-usd", "500", date(2027, 3, 10)).win(clock=_on(3, 3))

    def baht(id: str, amount: str, opened: FixedClock) -> Opportunity:
        return Opportunity.open(
            id=id,
            name=id,
            amount=_thb(amount),
            expected_close=date(2027, 3, 25),
            clock=opened,
        )

    steady_thb = baht("steady-thb", "36000", _on(2, 1))
    new_thb = baht("new-thb", "18000", _on(3, 4))
    lost_thb = baht("lost-thb", "7200", _on(2, 1)).lose(clock=_on(3, 6))
    return [steady_usd, grew_usd, won_usd, steady_thb, new_thb, lost_thb]


def test_movement_in_thb_converts_every_amount_at_the_end_dates_rate() -> None:
    """At 36 THB a dollar (March 8's rate, also for the amounts at start): opening 36,000 +
    72,000 + 18,000 + 36,000 + 7,200 = 169,200; + 18,000 new + 18,000 increased - 18,000 won
    - 7,200 lost = closing 36,000 + 90,000 + 36,000 + 18,000 = 180,000.  The rate moved from
    35 to 36 during the week, but the steady dollar deal is in no bucket."""
    movement = pipeline_movement(
        _two_currency_week(),
        start=WEEK_START,
        end=WEEK_END,
        window=Q1,
        currency="THB",
        rates=RATES,
    )

    assert movement.opening == _thb("169200")
    assert movement.new == _thb("18000")
    assert movement.increased == _thb("18000")
    assert movement.won == _thb("18000")
    assert movement.lost == _thb("7200")
    assert movement.closing == _thb("180000")
    assert _entries(movement) == [
        ("new-thb", "new", _thb("18000")),
        ("grew-usd", "increased", _thb("18000")),
        ("won-usd", "won", _thb("18000")),
        ("lost-thb", "lost", _thb("7200")),
    ]


def test_movement_in_usd_reconciles_exactly_though_baht_divide_unevenly() -> None:
    """In USD the baht amounts are divided by 36 (18,000 / 36 = 500, 7,200 / 36 = 200, but
    7,000 / 36 does not come out even); the buckets still add up to the closing exactly."""
    opps = [
        *_two_currency_week(),
        Opportunity.open(
            id="odd-thb",
            name="odd",
            amount=_thb("7000"),
            expected_close=date(2027, 3, 30),
            clock=_on(2, 1),
        ).update(amount=_thb("7001"), clock=_on(3, 7)),
    ]

    movement = pipeline_movement(
        opps, start=WEEK_START, end=WEEK_END, window=Q1, currency="USD", rates=RATES
    )

    assert movement.new == _usd("500")
    assert movement.lost == _usd("200")
    assert movement.won == _usd("500")
    parts = [movement.opening, movement.new, movement.increased, movement.reopened]
    parts += [movement.pulled_in]
    less = [movement.decreased, movement.won, movement.lost, movement.pushed_out]
    assert all(part is not None for part in (*parts, *less, movement.closing))
    total = sum((part for part in parts if part is not None), Money.zero("USD"))
    for part in less:
        assert part is not None
        total = total - part
    assert total == movement.closing
    increased = movement.increased
    assert increased is not None
    assert increased.amount != increased.rounded().amount  # 500 + 1/36 of a dollar
    assert increased.rounded() == _usd("500.03")

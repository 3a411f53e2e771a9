"""Properties of the history analytics (Hypothesis): pipeline movement, snapshot, funnel,
stage win rates, calibration, time in stage and slippage.

Deals come from the shared strategies: ``deal_lists`` (one currency, simple endings),
``built_opportunities`` (random valid command histories, any currency), and
``shared_histories`` here (``_Builder`` commands of several deals interleaved on one clock,
so that their lifetimes overlap).  Every expected
value here is worked out independently from the public domain API (``as_of``,
``as_known_at``, ``history``, ``stage_timeline``, ``time_in_stage``).  The statistical
properties are plain tests over seeded ``random.Random`` runs: deterministic, never flaky.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from statistics import NormalDist
from typing import Literal

from hypothesis import event, given
from hypothesis import strategies as st

from oppcore import ExchangeRates, FixedClock, Money, Opportunity, Outcome, Pipeline
from oppcore.analytics import (
    BUCKETS,
    Movement,
    Period,
    as_probabilities,
    calibration,
    effectiveness,
    forecast,
    funnel,
    period_of,
    pipeline_movement,
    slippage,
    slippage_summary,
    snapshot,
    stage_win_rates,
    time_in_stage,
)
from tests.analytics.test_properties import EXACT, deal_lists
from tests.strategies import (
    CLOCK_STEPS,
    CURRENCIES,
    _Builder,
    any_pipelines,
    aware_datetimes,
    built_opportunities,
    currencies,
    dates,
    money,
    offsets,
    optional,
    pick,
    pipelines,
)

#: The currency every amount converts to when the deals are in several.
TARGET = "USD"
#: Direct rates into ``TARGET`` from long before any generated time: conversion is exact.
RATES = ExchangeRates(
    [
        (code, TARGET, date(1900, 1, 1), rate)
        for code, rate in {"THB": "0.028", "JPY": "0.0067", "KWD": "3.25", "EUR": "1.08"}.items()
    ]
)
assert set(CURRENCIES) == {"THB", "USD", "JPY", "KWD", "EUR"}, "RATES must cover CURRENCIES"

ONE_MICROSECOND = timedelta(microseconds=1)
SIX_PLACES = Decimal("0.000001")
T_FAR = datetime(2095, 1, 1, tzinfo=timezone.utc)  # after every generated event
Window = Period | tuple[date, date] | None
GRAINS: tuple[Literal["week", "month", "quarter", "year"], ...] = (
    "week",
    "month",
    "quarter",
    "year",
)


# -- strategies -----------------------------------------------------------------------------


def histories(max_size: int = 4, max_commands: int = 8) -> st.SearchStrategy[list[Opportunity]]:
    """Deals made by random valid commands (amount, line, close date, stage changes...)."""
    return st.lists(built_opportunities(max_commands=max_commands), max_size=max_size).map(
        lambda built: [b.opp for b in built]
    )


@st.composite
def shared_histories(draw: st.DrawFn, max_deals: int = 4, max_steps: int = 24) -> list[Opportunity]:
    """Deals in one currency on one ``FixedClock``, opened at different times, their commands
    interleaved: random valid ones (``_Builder.step``: amount, lines, close date, moves, win,
    lose, reopen) and extra amount changes, close dates among a few, closes, reopens and
    line changes.  Lifetimes overlap, so a movement's two ends see deals grow, shrink, close,
    reopen, and move their close date into and out of a window."""
    code = draw(currencies())
    clock = FixedClock(draw(aware_datetimes()))
    closes = draw(st.lists(dates(), min_size=1, max_size=3, unique=True))
    builders: list[_Builder] = []
    for index in range(draw(st.integers(1, max_deals))):
        clock.advance(draw(CLOCK_STEPS))
        pipeline = draw(shared_pipelines)
        opp = Opportunity.open(
            id=f"deal-{index}",
            name=f"Deal {index}",
            pipeline=pipeline,
            stage=pick(draw, pipeline.open_stages).key,
            currency=code,
            amount=draw(optional(money(code, non_negative=True))),
            expected_close=pick(draw, (None, *closes)),
            owner=pick(draw, (None, "nok", "ploy")),
            clock=clock,
        )
        builders.append(_Builder(draw, opp, clock, code, [f"open deal-{index}"]))
    for _ in range(draw(st.integers(2 * len(builders), max_steps))):
        builder = pick(draw, builders)
        how = pick(draw, ("step", "amount", "close", "flip", "line"))
        if how == "step":
            builder.step()
            continue
        clock.advance(draw(CLOCK_STEPS))
        if how == "amount":
            builder.update(amount=draw(optional(money(code, non_negative=True))))
        elif how == "close":
            builder.update(expected_close=pick(draw, (None, *closes)))
        elif how == "flip":  # close an open deal, reopen a closed one
            to_win = bool(builder.closing_targets(Outcome.WON)) and draw(st.booleans())
            if builder.opp.is_closed:
                builder.do_reopen()
            elif to_win:
                builder.do_win()
            elif builder.closing_targets(Outcome.LOST):
                builder.do_lose()
        else:  # a line added or, when there are lines, maybe removed
            remove = draw(st.booleans())
            if builder.opp.line_items and remove:
                builder.do_remove_line()
            else:
                builder.add_line()
    return [builder.opp for builder in builders]


shared_pipelines = st.one_of(
    st.just(Pipeline.default()),
    st.just(Pipeline.salesforce()),
    pipelines(with_required=False),
)

#: Single-currency interleaved histories (half the time: they exercise every bucket),
#: single-currency simple deals, or rich histories in any currencies (one clock each).
deal_sets: st.SearchStrategy[list[Opportunity]] = st.one_of(
    shared_histories(), shared_histories(max_deals=3), deal_lists(max_size=6), histories()
)


@st.composite
def times_around(draw: st.DrawFn, opps: Sequence[Opportunity], recorded: bool = False) -> datetime:
    """A time at, near, before all or after all of the deals' event times (``recorded_at``
    times with ``recorded=True``), at any UTC offset."""
    times = [e.recorded_at if recorded else e.at for opp in opps for e in opp.events]
    if not times:
        return draw(aware_datetimes())
    how = pick(draw, ("event", "near", "event", "near", "before", "after"))
    if how == "event":
        moment = pick(draw, times)
    elif how == "near":
        moment = pick(draw, times) + draw(
            st.timedeltas(min_value=timedelta(days=-3), max_value=timedelta(days=3))
        )
    elif how == "before":
        moment = min(times) - draw(st.timedeltas(ONE_MICROSECOND, timedelta(days=400)))
    else:
        moment = max(times) + draw(st.timedeltas(timedelta(0), timedelta(days=400)))
    return moment.astimezone(draw(offsets()))


@st.composite
def time_pairs(draw: st.DrawFn, opps: Sequence[Opportunity]) -> tuple[datetime, datetime]:
    """start <= end: two times drawn by ``times_around``, or two distinct event times of one
    deal (either maybe a microsecond early), so that its changes between them show."""
    one_deal = draw(st.booleans())
    if opps and one_deal:
        times = sorted({e.at for e in pick(draw, opps).events})  # distinct valid times
        first = draw(st.integers(0, max(len(times) - 2, 0)))
        last = draw(st.integers(min(first + 1, len(times) - 1), len(times) - 1))
        early = (
            ONE_MICROSECOND * draw(st.integers(0, 1)),
            ONE_MICROSECOND * draw(st.integers(0, 1)),
        )
        start, end = times[first] - early[0], times[last] - early[1]
        zone = draw(offsets())
        return min(start, end).astimezone(zone), max(start, end).astimezone(zone)
    start, end = draw(times_around(opps)), draw(times_around(opps))
    return min(start, end), max(start, end)


@st.composite
def windows(draw: st.DrawFn, opps: Sequence[Opportunity]) -> Window:
    """None, a (first day, last day) pair or a Period, usually around a close date the deals had."""
    kind = draw(st.sampled_from(("none", "pair", "period")))
    if kind == "none":
        return None
    closes = sorted(
        {e.expected_close for opp in opps for e in opp.history() if e.expected_close is not None}
    )
    near_a_close = draw(st.integers(0, 3)) > 0  # mostly around a date the deals had
    anchor = pick(draw, closes) if closes and near_a_close else draw(dates())
    if kind == "pair":
        first = anchor - timedelta(days=draw(st.integers(0, 90)))
        return first, anchor + timedelta(days=draw(st.integers(0, 90)))
    return period_of(anchor, draw(st.sampled_from(GRAINS)))


@st.composite
def forward_pipelines(draw: st.DrawFn) -> Pipeline:
    """A pipeline whose transitions only move forward: each open stage to a later open stage
    or to any closed stage."""
    base = draw(pipelines(with_transitions=False))
    open_keys = [s.key for s in base.stages if s.is_open]
    closed_keys = [s.key for s in base.stages if not s.is_open]
    return Pipeline(
        id=base.id,
        name=base.name,
        stages=base.stages,
        transitions={key: [*open_keys[i + 1 :], *closed_keys] for i, key in enumerate(open_keys)},
        keep_manual_probability=base.keep_manual_probability,
    )


@st.composite
def one_pipeline_deals(
    draw: st.DrawFn, forward_only: bool = False
) -> tuple[Pipeline, list[Opportunity]]:
    """A pipeline (stock, custom, or forward-only) and deals with random histories in it."""
    pipeline = draw(forward_pipelines() if forward_only else any_pipelines())
    built = draw(
        st.lists(
            built_opportunities(pipeline_strategy=st.just(pipeline), max_commands=8), max_size=5
        )
    )
    return pipeline, [b.opp for b in built]


# -- helpers --------------------------------------------------------------------------------


def _codes(opps: Sequence[Opportunity]) -> set[str]:
    """Every currency an amount of the deals was ever in."""
    return {e.amount.currency for opp in opps for e in opp.history() if e.amount is not None}


def _conversion(opps: Sequence[Opportunity], data: st.DataObject) -> bool:
    """Whether to pass currency= and rates=: needed for several currencies, else drawn."""
    return len(_codes(opps)) > 1 or data.draw(st.booleans(), label="convert")


def _value(money: Money | None, convert: bool, on: date) -> Decimal:
    """An amount as the movement counts it: 0 for none, else in ``TARGET`` when converting."""
    if money is None:
        return Decimal(0)
    return RATES.convert(money, TARGET, on=on).amount if convert else money.amount


def _sum(values: Sequence[Decimal]) -> Decimal:
    total = Decimal(0)
    for value in values:
        total = EXACT.add(total, value)
    return total


def _span(window: Window) -> tuple[date, date] | None:
    if window is None:
        return None
    if isinstance(window, Period):
        return window.start, window.end
    return window


def _inside(state: Opportunity | None, span: tuple[date, date] | None) -> bool:
    """In the pipeline: opened, open, and (with a window) expected to close inside it."""
    if state is None or not state.is_open:
        return False
    if span is None:
        return True
    close = state.expected_close
    return close is not None and span[0] <= close <= span[1]


def _expected_entries(
    opps: Sequence[Opportunity],
    states: tuple[Sequence[Opportunity | None], Sequence[Opportunity | None]],
    span: tuple[date, date] | None,
    value: Callable[[Money | None], Decimal],
) -> list[tuple[str, str, Decimal]]:
    """Each deal's (id, bucket, amount) by the rule in ``oppcore.analytics.movement``'s docs,
    comparing the deal at start with the deal at end (``states``: each deal's ``as_of``)."""
    entries = []
    for opp, before, after in zip(opps, states[0], states[1], strict=True):
        was, now = _inside(before, span), _inside(after, span)
        if was and now:
            assert before is not None
            assert after is not None
            old, new = value(before.amount), value(after.amount)
            if new > old:
                entries.append((opp.id, "increased", EXACT.subtract(new, old)))
            elif new < old:
                entries.append((opp.id, "decreased", EXACT.subtract(old, new)))
        elif was:
            assert before is not None
            assert after is not None  # opened before start, so open or closed by end
            bucket = "won" if after.is_won else "lost" if after.is_lost else "pushed_out"
            entries.append((opp.id, bucket, value(before.amount)))
        elif now:
            assert after is not None
            bucket = "new" if before is None else "pulled_in" if before.is_open else "reopened"
            entries.append((opp.id, bucket, value(after.amount)))
    return entries


def _money_fields(movement: Movement) -> list[Money | None]:
    return [movement.opening, *(getattr(movement, b) for b in BUCKETS), movement.closing]


def _cash(money: Money | None) -> Money:
    assert money is not None
    return money


def _furthest(opp: Opportunity, open_keys: Sequence[str]) -> int:
    """How far along ``open_keys`` the deal ever got, from its stage timeline: the highest
    position of an open stage it was in, ``len(open_keys)`` once it was ever in a won stage,
    -1 if neither (opened straight into a lost stage)."""
    furthest = -1
    for interval in opp.stage_timeline():
        if opp.pipeline.stage(interval.stage).is_won:
            return len(open_keys)
        if interval.stage in open_keys:
            furthest = max(furthest, list(open_keys).index(interval.stage))
    return furthest


def _close_to(value: Decimal | None, part: int, whole: int) -> bool:
    """``value`` is part / whole (None when whole is 0), to 20 places."""
    if whole == 0:
        return value is None
    return value is not None and abs(value - Decimal(part) / Decimal(whole)) < Decimal("1e-20")


def _percentage(rate: Decimal) -> Decimal:
    """rate x 100, rounded half-even to six places (as_probabilities' documented rounding)."""
    return EXACT.multiply(rate, Decimal(100)).quantize(SIX_PLACES, rounding=ROUND_HALF_EVEN)


def _wilson(won: int, closed: int) -> tuple[float, float]:
    """The 95 % Wilson score interval, in floats, from the textbook formula."""
    z = NormalDist().inv_cdf(0.975)
    share = won / closed
    centre = (share + z * z / (2 * closed)) / (1 + z * z / closed)
    margin = (
        z
        / (1 + z * z / closed)
        * math.sqrt(share * (1 - share) / closed + z * z / (4 * closed * closed))
    )
    return max(0.0, centre - margin), min(1.0, centre + margin)


def _stated(opp: Opportunity) -> Decimal | None:
    """The probability set when the deal last entered an open stage, read off its history."""
    stated = None
    for entry in opp.history():
        if (
            entry.event in ("Opened", "StageChanged", "Reopened")
            and opp.pipeline.stage(entry.stage).is_open
        ):
            stated = entry.probability
    return stated


# -- pipeline movement ----------------------------------------------------------------------


def _check_movement(
    opps: Sequence[Opportunity],
    ends: tuple[datetime, datetime],
    states: tuple[Sequence[Opportunity | None], Sequence[Opportunity | None]],
    window: Window,
    convert: bool,
) -> Movement:
    """Run ``pipeline_movement`` from ``ends[0]`` to ``ends[1]`` and check it against the
    deals as they stood then (``states``: each deal's ``as_of`` at both ends, worked out once
    by the caller): the counts, the reconciliation, opening and closing, and each entry."""
    start, end = ends
    if convert:
        movement = pipeline_movement(
            opps, start=start, end=end, window=window, currency=TARGET, rates=RATES
        )
    else:
        movement = pipeline_movement(opps, start=start, end=end, window=window)
    on = end.date()
    span = _span(window)
    opening = [s for s in states[0] if s is not None and _inside(s, span)]
    closing = [s for s in states[1] if s is not None and _inside(s, span)]
    held = [s.amount for s in opening + closing if s.amount is not None]
    fields = _money_fields(movement)

    # The counts
    assert set(movement.counts) == {"opening", *BUCKETS, "closing"}
    assert movement.counts["opening"] == len(opening)
    assert movement.counts["closing"] == len(closing)
    for bucket in BUCKETS:
        assert movement.counts[bucket] == sum(1 for e in movement.entries if e.bucket == bucket)
    order = [BUCKETS.index(e.bucket) for e in movement.entries]
    assert order == sorted(order)

    # The money: None only when no deal in either pipeline has an amount
    if not convert and not held:
        assert fields == [None] * len(fields)
        code: str | None = None
    else:
        code = TARGET if convert else held[0].currency
        assert all(f is not None and f.currency == code for f in fields)
        total = (
            _cash(movement.opening)
            + _cash(movement.new)
            + _cash(movement.increased)
            - _cash(movement.decreased)
            - _cash(movement.won)
            - _cash(movement.lost)
            + _cash(movement.reopened)
            - _cash(movement.pushed_out)
            + _cash(movement.pulled_in)
        )
        assert total == movement.closing
        assert _cash(movement.opening).amount == _sum(
            [_value(s.amount, convert, on) for s in opening]
        )
        assert _cash(movement.closing).amount == _sum(
            [_value(s.amount, convert, on) for s in closing]
        )
        for bucket in BUCKETS:
            assert _cash(getattr(movement, bucket)).amount == _sum(
                [_cash(e.amount).amount for e in movement.entries if e.bucket == bucket]
            )
    for entry in movement.entries:
        assert entry.amount is None or entry.amount.amount >= 0
        assert entry.amount is None if code is None else _cash(entry.amount).currency == code

    # Each deal's bucket, by the documented rule
    expected = _expected_entries(opps, states, span, lambda money: _value(money, convert, on))
    got = [
        (e.opportunity_id, e.bucket, None if e.amount is None else e.amount.amount)
        for e in movement.entries
    ]
    assert Counter(got) == Counter(
        (i, b, None if code is None else amount) for i, b, amount in expected
    )
    return movement


@given(opps=deal_sets, data=st.data())
def test_pipeline_movement_reconciles_exactly_and_matches_both_ends(
    opps: list[Opportunity], data: st.DataObject
) -> None:
    """For times in, around, before and after the deals' events, with or without a window, in
    one currency or converted: opening + new + increased - decreased - won - lost + reopened
    - pushed_out + pulled_in == closing exactly; counts match entries; entry amounts are never
    negative; opening and closing (count and amount) are the open deals in the window of
    ``as_of(start)`` and ``as_of(end)``; each deal's bucket follows the documented rule."""
    start, end = data.draw(time_pairs(opps), label="start, end")
    window = data.draw(windows(opps), label="window")
    convert = _conversion(opps, data)
    states = ([opp.as_of(start) for opp in opps], [opp.as_of(end) for opp in opps])

    movement = _check_movement(opps, (start, end), states, window, convert)

    for bucket in BUCKETS:
        if movement.counts[bucket]:
            event(f"bucket {bucket}")
    event(f"window {type(window).__name__}, convert={convert}")


@given(opps=shared_histories(max_deals=3), data=st.data())
def test_pipeline_movement_follows_the_bucket_rule_between_any_two_event_times(
    opps: list[Opportunity], data: st.DataObject
) -> None:
    """The movement properties for every pair start <= end among up to eight of the deals'
    distinct event times and a time before them all: every bucket shows up, often."""
    times = sorted({e.at for opp in opps for e in opp.events})
    if len(times) > 8:
        chosen = data.draw(
            st.lists(st.integers(0, len(times) - 1), min_size=8, max_size=8, unique=True),
            label="chosen times",
        )
        times = sorted(times[i] for i in chosen)
    moments = [times[0] - ONE_MICROSECOND, *times]
    window = data.draw(windows(opps), label="window")
    convert = _conversion(opps, data)
    states = {moment: [opp.as_of(moment) for opp in opps] for moment in moments}

    seen: set[str] = set()
    for start, end in itertools.combinations_with_replacement(moments, 2):
        movement = _check_movement(
            opps, (start, end), (states[start], states[end]), window, convert
        )
        seen.update(bucket for bucket in BUCKETS if movement.counts[bucket])
    for bucket in sorted(seen):
        event(f"bucket {bucket}")


@given(opps=deal_sets, data=st.data())
def test_pipeline_movement_from_a_time_to_itself_moves_nothing(
    opps: list[Opportunity], data: st.DataObject
) -> None:
    """With start == end every bucket is zero with count 0, no entries, and opening == closing."""
    moment = data.draw(times_around(opps), label="moment")
    window = data.draw(windows(opps), label="window")
    if _conversion(opps, data):
        movement = pipeline_movement(
            opps, start=moment, end=moment, window=window, currency=TARGET, rates=RATES
        )
    else:
        movement = pipeline_movement(opps, start=moment, end=moment, window=window)

    assert len(movement.entries) == 0
    assert movement.opening == movement.closing
    assert movement.counts["opening"] == movement.counts["closing"]
    for bucket in BUCKETS:
        assert movement.counts[bucket] == 0
        amount = getattr(movement, bucket)
        assert amount is None or amount.amount == 0


# -- snapshot -------------------------------------------------------------------------------


@given(opps=deal_sets, data=st.data())
def test_snapshot_is_each_opened_deal_as_of_the_time(
    opps: list[Opportunity], data: st.DataObject
) -> None:
    """snapshot(as_of=t) == [o.as_of(t) for the deals opened by t], in the order given; and
    forecast(snapshot(opps, as_of=t)) == forecast(opps, as_of=t)."""
    moment = data.draw(times_around(opps), label="t")
    grain = data.draw(st.sampled_from(GRAINS), label="grain")

    taken = snapshot(opps, as_of=moment)

    assert taken == [s for s in (opp.as_of(moment) for opp in opps) if s is not None]
    clock = FixedClock(moment)
    if _conversion(opps, data):
        of_snapshot = forecast(taken, period=grain, currency=TARGET, rates=RATES, clock=clock)
        as_of = forecast(opps, period=grain, as_of=moment, currency=TARGET, rates=RATES)
    else:
        of_snapshot = forecast(taken, period=grain, clock=clock)
        as_of = forecast(opps, period=grain, as_of=moment)
    assert of_snapshot.rows == as_of.rows


@given(opps=deal_sets, data=st.data())
def test_snapshot_known_at_is_each_deal_as_known_then_as_of_the_time(
    opps: list[Opportunity], data: st.DataObject
) -> None:
    """snapshot(as_of=t, known_at=k) == [o.as_known_at(k).as_of(t), leaving out Nones]; with k
    at or after every recorded_at it equals snapshot(as_of=t)."""
    moment = data.draw(times_around(opps), label="t")
    known = data.draw(times_around(opps, recorded=True), label="k")

    expected = []
    for opp in opps:
        recorded = opp.as_known_at(known)
        state = None if recorded is None else recorded.as_of(moment)
        if state is not None:
            expected.append(state)
    assert snapshot(opps, as_of=moment, known_at=known) == expected

    last = max((e.recorded_at for opp in opps for e in opp.events), default=moment)
    later = last + data.draw(st.timedeltas(timedelta(0), timedelta(days=30)), label="later")
    assert snapshot(opps, as_of=moment, known_at=later) == snapshot(opps, as_of=moment)


# -- funnel ---------------------------------------------------------------------------------


def _check_funnel(pipeline: Pipeline, opps: list[Opportunity]) -> None:
    open_keys = [s.key for s in pipeline.stages if s.is_open]
    won_count = sum(1 for opp in opps if opp.is_won)
    rows = funnel(opps, pipeline=pipeline).rows

    if not opps:  # empty input, empty table
        assert rows == ()
        assert funnel(opps).rows == ()
        return
    assert [row.stage for row in rows] == open_keys
    assert funnel(opps).rows == rows
    furthest = [_furthest(opp, open_keys) for opp in opps]
    for i, row in enumerate(rows):
        assert row.reached == sum(1 for f in furthest if f >= i)  # cumulative
        assert row.advanced == sum(1 for f in furthest if f > i)
        assert row.advanced <= row.reached
        assert row.won <= row.reached
        assert row.won == won_count  # a won deal got past every open stage
        assert _close_to(row.conversion, row.advanced, row.reached)
        assert _close_to(row.win_rate_from_stage, row.won, row.reached)
    for above, below in itertools.pairwise(rows):
        assert below.reached <= above.reached
        assert above.advanced == below.reached
    assert rows[-1].advanced == sum(1 for f in furthest if f == len(open_keys))

    by_all = effectiveness(opps, by=lambda opp: 0, currency=TARGET, rates=RATES)
    assert sum(row.won for row in by_all) == won_count
    plan = forecast(opps, currency=TARGET, rates=RATES, clock=FixedClock(T_FAR))
    assert sum(row.won_count for row in plan) == won_count


@given(deals=one_pipeline_deals())
def test_funnel_reached_never_increases_and_advanced_feeds_the_next_stage(
    deals: tuple[Pipeline, list[Opportunity]],
) -> None:
    """Any history in one pipeline: reached (cumulative) never increases down the rows,
    advanced <= reached, won <= reached, advanced of a row == reached of the next, and won
    equals the number of won deals, as effectiveness and forecast count them."""
    _check_funnel(*deals)


@given(deals=one_pipeline_deals(forward_only=True))
def test_funnel_of_a_forward_only_pipeline_narrows_down_the_rows(
    deals: tuple[Pipeline, list[Opportunity]],
) -> None:
    """The funnel properties for a pipeline whose transitions only move forward."""
    _check_funnel(*deals)


# -- stage win rates ------------------------------------------------------------------------


@given(deals=one_pipeline_deals(), min_closed=st.integers(0, 4))
def test_stage_win_rates_lie_in_their_wilson_interval_and_closed_never_increases(
    deals: tuple[Pipeline, list[Opportunity]], min_closed: int
) -> None:
    """0 <= low <= rate <= high <= 1, low and high the 95 % Wilson interval; won <= closed;
    closed (the closed deals that reached the stage, cumulatively) never increases down the
    rows; sufficient == (closed >= min_closed); as_probabilities gives rate x 100 (rounded
    half-even to six places) for the sufficient rows only."""
    pipeline, opps = deals
    open_keys = [s.key for s in pipeline.stages if s.is_open]
    rows = stage_win_rates(opps, min_closed=min_closed).rows
    closed = [opp for opp in opps if opp.is_closed]
    furthest = [_furthest(opp, open_keys) for opp in closed]

    assert [row.stage for row in rows] == (open_keys if opps else [])  # empty in, empty out
    for i, row in enumerate(rows):
        assert row.closed == sum(1 for f in furthest if f >= i)
        assert row.won == sum(1 for opp in closed if opp.is_won)
        assert 0 <= row.won <= row.closed
        assert row.sufficient == (row.closed >= min_closed)
        if row.closed == 0:
            assert (row.rate, row.low, row.high) == (None, None, None)
        else:
            assert row.rate is not None
            assert row.low is not None
            assert row.high is not None
            assert 0 <= row.low <= row.rate <= row.high <= 1
            assert _close_to(row.rate, row.won, row.closed)
            low, high = _wilson(row.won, row.closed)
            assert abs(float(row.low) - low) < 1e-9
            assert abs(float(row.high) - high) < 1e-9
    for above, below in itertools.pairwise(rows):
        assert below.closed <= above.closed

    learned = as_probabilities(rows)
    assert learned == {
        row.stage: _percentage(row.rate) for row in rows if row.sufficient and row.rate is not None
    }
    for row in rows:
        if row.stage in learned:
            assert row.rate is not None
            assert abs(learned[row.stage] - row.rate * 100) <= Decimal("0.0000005")


def _closed_deal(
    index: int, rng: random.Random, chance: Decimal, clock: FixedClock, pipeline: Pipeline
) -> Opportunity:
    """A deal opened in the first stage with probability ``chance`` (a percentage), then won
    with that chance and lost otherwise."""
    opp = Opportunity.open(
        id=f"deal-{index}",
        name=f"Deal {index}",
        pipeline=pipeline,
        amount=Money("1000", "THB"),
        probability=chance,
        clock=clock,
    )
    clock.advance(timedelta(hours=1))
    return opp.win(clock=clock) if rng.random() < float(chance) / 100 else opp.lose(clock=clock)


def test_the_wilson_interval_covers_the_true_win_rate_about_95_percent_of_the_time() -> None:
    """300 seeded trials of 200 deals, each won with a known chance p: the first stage's
    [low, high] covers p in 91 % to 99 % of the trials (95 % give or take three standard
    deviations of 300 trials, 1.3 % each: a 90 % interval would not pass).  Each trial's
    deal i is one of two ready-made deals, won or lost, chosen by the seeded draw: building
    60,000 deals would only slow the test down."""
    rng = random.Random(20260105)
    clock = FixedClock(datetime(2026, 1, 5, 9, tzinfo=timezone.utc))
    pipeline = Pipeline.default()
    endings = []
    for i in range(200):
        opp = Opportunity.open(id=f"deal-{i}", name=f"Deal {i}", pipeline=pipeline, clock=clock)
        clock.advance(timedelta(hours=1))
        endings.append((opp.win(clock=clock), opp.lose(clock=clock)))
    trials, covered = 300, 0
    for _ in range(trials):
        chance = rng.randint(5, 95)
        deals = [won if rng.random() < chance / 100 else lost for won, lost in endings]
        row = stage_win_rates(deals).rows[0]
        assert (row.stage, row.closed, row.sufficient) == ("wait", 200, True)
        assert row.won == sum(1 for opp in deals if opp.is_won)
        assert row.low is not None
        assert row.high is not None
        covered += row.low <= Decimal(chance) / 100 <= row.high
    assert 0.91 <= covered / trials <= 0.99, covered


# -- calibration ----------------------------------------------------------------------------


@given(opps=histories(max_size=6), bins=st.integers(1, 12))
def test_calibration_bins_add_up_and_the_brier_score_is_a_fraction(
    opps: list[Opportunity], bins: int
) -> None:
    """0 <= brier <= 1 (the mean of (stated - outcome)^2, worked out here); the bins' counts add
    up to count (the closed deals that were ever open); each bin's stated mean lies in
    [low, high] and its observed share in [0, 1]."""
    result = calibration(opps, bins=bins)
    scored: list[tuple[Opportunity, Decimal]] = []
    for opp in opps:
        stated = _stated(opp) if opp.is_closed else None
        if stated is not None:
            scored.append((opp, stated))

    assert result.count == len(scored)
    assert sum(b.count for b in result.bins) == result.count
    if not scored:
        assert result.brier is None
    else:
        assert result.brier is not None
        assert 0 <= result.brier <= 1
        squares = [(p / 100 - (1 if opp.is_won else 0)) ** 2 for opp, p in scored]
        assert abs(result.brier - _sum(squares) / len(squares)) < Decimal("1e-20")
    lows = [b.low for b in result.bins]
    assert lows == sorted(set(lows))
    # each deal in the bin [i/bins, (i+1)/bins) of its stated fraction; the last bin holds 1
    where = Counter(min(int(p / 100 * bins), bins - 1) for _, p in scored)
    got = {int((b.low * bins).to_integral_value()): b.count for b in result.bins}
    assert got == dict(where)
    for b in result.bins:
        assert b.count > 0
        assert 0 <= b.low < b.high <= 1
        assert b.low <= b.stated <= b.high
        assert 0 <= b.observed <= 1


def test_a_calibrated_single_probability_scores_a_brier_near_p_times_one_minus_p() -> None:
    """3000 deals stated at p and won with chance p: the Brier score is within 0.015 of p(1-p)."""
    rng = random.Random(7)
    clock = FixedClock(datetime(2026, 1, 5, 9, tzinfo=timezone.utc))
    pipeline = Pipeline.default()
    for chance in (Decimal(10), Decimal(30), Decimal(50), Decimal(80)):
        deals = [_closed_deal(i, rng, chance, clock, pipeline) for i in range(3000)]
        result = calibration(deals)
        p = chance / 100
        assert result.count == 3000
        assert result.brier is not None
        assert abs(result.brier - p * (1 - p)) < Decimal("0.015"), (chance, result.brier)


def test_a_calibrated_mix_observes_about_what_it_states_in_every_bin() -> None:
    """4000 deals stated at 5 %, 15 %, ..., 95 % and won with that chance: each of the ten bins
    states exactly its probability and observes within 0.1 of it; Brier near the mean p(1-p)."""
    rng = random.Random(11)
    clock = FixedClock(datetime(2026, 1, 5, 9, tzinfo=timezone.utc))
    pipeline = Pipeline.default()
    chances = [Decimal(5 + 10 * k) for k in range(10)]
    deals = [_closed_deal(i, rng, rng.choice(chances), clock, pipeline) for i in range(4000)]
    result = calibration(deals, bins=10)

    assert [b.stated for b in result.bins] == [c / 100 for c in chances]
    for b in result.bins:
        assert b.count > 250
        assert abs(b.observed - b.stated) < Decimal("0.1"), b
    expected = _sum([c / 100 * (1 - c / 100) for c in chances]) / 10
    assert result.brier is not None
    assert abs(result.brier - expected) < Decimal("0.015")


# -- time in stage --------------------------------------------------------------------------


@given(opps=histories(max_size=5), data=st.data())
def test_time_in_stage_totals_are_the_deals_own_times_in_each_open_stage(
    opps: list[Opportunity], data: st.DataObject
) -> None:
    """Per open stage: total == the sum of each deal's time_in_stage(now)[stage]; opportunities
    == the deals that were in it; mean x count == total within a microsecond per deal;
    min <= median <= p90 <= max."""
    now = data.draw(times_around(opps), label="now")
    rows = time_in_stage(opps, now=now).rows

    spent: dict[str, list[timedelta]] = {}
    for opp in opps:
        for stage in opp.pipeline.stages:
            if stage.is_open:
                spent.setdefault(stage.key, [])
    for opp in opps:
        for key, delta in opp.time_in_stage(now=now).items():
            if opp.pipeline.stage(key).is_open:
                spent[key].append(delta)

    assert [row.stage for row in rows] == list(spent)
    for row in rows:
        values = spent[row.stage]
        assert row.opportunities == len(values)
        assert row.total == sum(values, timedelta(0))
        if not values:
            assert (row.mean, row.median, row.p90) == (None, None, None)
            continue
        assert row.mean is not None
        assert row.median is not None
        assert row.p90 is not None
        assert abs(row.mean * len(values) - row.total) <= ONE_MICROSECOND * len(values)
        assert min(values) <= row.median <= row.p90 <= max(values)
        assert min(values) <= row.mean <= max(values)


# -- slippage -------------------------------------------------------------------------------


def _close_dates(opp: Opportunity) -> list[date]:
    """The expected close dates the deal had, in order, from its history (clearings skipped)."""
    return [e.expected_close for e in opp.history() if e.expected_close is not None]


@given(opps=st.one_of(shared_histories(), histories(max_size=4, max_commands=12)))
def test_slippage_counts_pushes_and_the_summary_adds_them_up_by_owner(
    opps: list[Opportunity],
) -> None:
    """pushes >= 0, days_slipped >= 0, days_slipped == 0 iff pushes == 0 (each matching the
    deal's history of close dates); rows most-slipped first; slippage_summary(by="owner")
    adds up the slippage rows per owner."""
    rows = slippage(opps).rows

    expected = []
    for opp in opps:
        closes = _close_dates(opp)
        if not closes:
            continue
        pushes = [(b - a).days for a, b in itertools.pairwise(closes) if b > a]
        expected.append((opp.id, opp.owner, len(pushes), sum(pushes), closes[0], closes[-1]))
    got = [
        (
            r.opportunity_id,
            r.owner,
            r.pushes,
            r.days_slipped,
            r.first_expected_close,
            r.last_expected_close,
        )
        for r in rows
    ]
    assert Counter(got) == Counter(expected)
    for row in rows:
        assert row.pushes >= 0
        assert row.days_slipped >= 0
        assert (row.days_slipped == 0) == (row.pushes == 0)
    ranks = [(-row.days_slipped, -row.pushes) for row in rows]
    assert ranks == sorted(ranks)

    summary = slippage_summary(opps, by="owner").rows
    keys = [s.key for s in summary]
    assert len(set(keys)) == len(keys)
    assert None not in keys[:-1]
    assert set(keys) == {row.owner for row in rows}
    for s in summary:
        mine = [row for row in rows if row.owner == s.key]
        assert s.opportunities == len(mine)
        assert s.pushes == sum(row.pushes for row in mine)
        assert s.days_slipped == sum(row.days_slipped for row in mine)

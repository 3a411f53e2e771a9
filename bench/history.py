"""History benchmarks for oppcore: pipeline_movement and snapshot against hand-written loops.

The target: 100,000 opportunities with 10 events each: ``pipeline_movement`` over a quarter
and ``snapshot`` at 12 month-ends, each at most 2x a hand-written loop over the same events
computing the same result.

Run from the repository root with oppcore installed::

    python bench/history.py --quick                    # smoke run: 5,000 opportunities, 3 repeats
    python bench/history.py                            # the issue's workload: 100,000 opportunities
    python bench/history.py --opportunities 20000      # smaller

The deals are built once and every timing then runs over those same objects.  As in
bench/storage.py and bench/analytics.py, nothing is judged on an absolute time: each figure
is the median of several repeats run side by side (interleaved, the order rotated each
repeat) and every verdict is a ratio against a hand-written loop measured in the same
process.  See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import gc
import io
import os
import platform
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from functools import partial
from operator import attrgetter
from typing import Any, TypeVar

from _timing import Sample, median, progress, rotated, source_state, spread, timed, verdict

import oppcore
from oppcore import (
    FieldsChanged,
    FixedClock,
    LineItem,
    LineItemAdded,
    LineItemChanged,
    LineItemRemoved,
    Lost,
    Money,
    Opportunity,
    Outcome,
    Pipeline,
    Reopened,
    StageChanged,
    Won,
)
from oppcore.analytics import Period, period_of, pipeline_movement, snapshot
from oppcore.analytics.movement import BUCKETS, Movement

T = TypeVar("T")

FLOOR_TARGET = 2.0  # library at most this many times the hand-written loop
EVENTS = 10  # events per deal

# -- the workload ----------------------------------------------------------------------------

PIPELINE = Pipeline.default()
CURRENCY = "USD"
BASE_TIME = datetime(2026, 1, 1, 8, 0, tzinfo=timezone.utc)
OPEN_DAYS = 365  # deals open over 2026; their last events run into April 2027
#: pipeline_movement runs over this quarter: start at its first instant, end at its last.
QUARTER = period_of(date(2026, 7, 1), "quarter")
MOVEMENT_START = datetime(2026, 7, 1, tzinfo=timezone.utc)
MOVEMENT_END = datetime(2026, 10, 1, tzinfo=timezone.utc) - timedelta(microseconds=1)
#: snapshot runs at the last instant of each month of 2026.
MONTH_ENDS = tuple(
    datetime(2026 + month // 12, month % 12 + 1, 1, tzinfo=timezone.utc) - timedelta(microseconds=1)
    for month in range(1, 13)
)
OWNERS = tuple(f"Owner {number:02d}" for number in range(25))
ACCOUNTS = tuple(f"Account {number:03d}" for number in range(500))
PRODUCTS = ("Licence", "Support plan", "Onboarding", "Extra seats", "Training day")
DISCOUNTS = (0, 0, 0, 5, 10, 15)
LOST_REASONS = ("Price", "Chose a competitor", "No budget", "No decision", "Timing")
#: What an event before closing does: weights 3 amount, 3 expected close, 3 stage, 1 line.
ACTIONS = ("amount", "amount", "amount", "close", "close", "close", "stage", "stage", "stage")
ACTIONS += ("item",)
MASK64 = (1 << 64) - 1
CENT = Decimal("0.01")


def mix(number: int, salt: int) -> int:
    """A well-spread 32-bit number from ``number`` and ``salt``: the workload's only dice."""
    x = (number * 0x9E3779B97F4A7C15 + salt * 0xD1B54A32D192ED03 + 1) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return (x ^ (x >> 31)) >> 32


def cents(value: int) -> Decimal:
    return Decimal(value).scaleb(-2)


def plan(number: int) -> tuple[str, ...]:
    """The nine events after ``Opened`` of deal ``number``.

    35 % stay open (nine changes); 25 % are won and 25 % lost (eight changes, then the
    close); 8 % are won, reopened and changed once more (so they end open); 7 % are lost,
    reopened, changed and then won.  A deal opened without an amount gets a line item first.
    """
    draw = mix(number, 1) % 100
    if draw < 35:
        before, after = 9, ()
    elif draw < 60:
        before, after = 8, ("win",)
    elif draw < 85:
        before, after = 8, ("lose",)
    elif draw < 93:
        before, after = 6, ("win", "reopen", ("amount", "close")[mix(number, 2) % 2])
    else:
        before, after = 5, ("lose", "reopen", ("amount", "close")[mix(number, 2) % 2], "win")
    actions = [ACTIONS[mix(number, 30 + index) % len(ACTIONS)] for index in range(before)]
    if not priced(number):
        actions[0] = "item"
    return (*actions, *after)


def priced(number: int) -> bool:
    """One deal in five opens without an amount; its amount is its line items' total."""
    return mix(number, 4) % 5 != 0


def step(number: int, index: int) -> timedelta:
    """The time between two events of a deal: 1 to 11 days and 0 to 23 hours."""
    return timedelta(days=1 + mix(number, 40 + index) % 11, hours=mix(number, 50 + index) % 24)


def lag(number: int, index: int) -> timedelta:
    """How long after it happened an event was recorded: one in three a few hours later."""
    draw = mix(number, 70 + index)
    return timedelta(minutes=draw % 240) if draw % 3 == 0 else timedelta(0)


def build_opportunity(number: int) -> Opportunity:
    """Deal ``number``: ``Opened`` and nine more events, every choice a function of ``number``.

    Each event happens at ``at=`` (1 to 11 days after the one before) and is recorded on a
    ``FixedClock`` standing at that time or a few hours later.  Changes are amount updates
    (-30 % to +30 %, never 0; now and then back to the line total), expected close moves
    (three in four pushed 10 to 75 days later, often into the next quarter; the rest pulled
    in by 1 to 20 days), moves between the two open stages, line items added; then won or
    lost, and reopened for some (see ``plan``).
    """
    when = BASE_TIME + timedelta(days=mix(number, 5) % OPEN_DAYS, minutes=mix(number, 6) % 600)
    clock = FixedClock(when + lag(number, 0))
    base = 100_000 + mix(number, 3) % 19_900_000  # 1,000.00 to 200,000.00
    account = ACCOUNTS[mix(number, 14) % len(ACCOUNTS)]
    opp = Opportunity.open(
        id=f"opp-{number:07d}",
        name=f"{account} - deal {number}",
        pipeline=PIPELINE,
        amount=Money(cents(base), CURRENCY) if priced(number) else None,
        currency=CURRENCY,
        expected_close=when.date() + timedelta(days=20 + mix(number, 8) % 80),
        owner=OWNERS[mix(number, 15) % len(OWNERS)],
        account=account,
        at=when,
        clock=clock,
    )
    for index, action in enumerate(plan(number), start=1):
        when += step(number, index)
        clock.set(when + lag(number, index))
        draw = mix(number, 80 + index)
        if action == "amount":
            current = opp.amount
            if opp.manual_amount is not None and opp.line_items and draw % 4 == 0:
                opp = opp.update(amount=None, at=when, clock=clock)  # back to the line total
            elif current is None:
                opp = opp.update(amount=Money(cents(base), CURRENCY), at=when, clock=clock)
            else:
                percent = 70 + draw % 60
                percent += percent >= 100  # never unchanged
                value = (current.amount * percent / 100).quantize(CENT, ROUND_HALF_UP)
                opp = opp.update(amount=Money(value, CURRENCY), at=when, clock=clock)
        elif action == "close":
            assert opp.expected_close is not None
            days = -(1 + draw % 20) if draw % 4 == 0 else 10 + draw % 66
            opp = opp.update(
                expected_close=opp.expected_close + timedelta(days=days), at=when, clock=clock
            )
        elif action == "stage":
            target = "in_progress" if opp.stage_key == "wait" else "wait"
            opp = opp.move_to(target, at=when, clock=clock)
        elif action == "item":
            item = LineItem(
                PRODUCTS[draw % len(PRODUCTS)],
                Money(cents(5_000 + mix(number, 90 + index) % 2_000_000), CURRENCY),
                quantity=1 + draw % 5,
                discount=DISCOUNTS[mix(number, 100 + index) % len(DISCOUNTS)],
                id=f"opp-{number:07d}-line-{index}",
            )
            opp = opp.add_line_item(item, at=when, clock=clock)
        elif action == "win":
            opp = opp.win(at=when, clock=clock)
        elif action == "lose":
            reason = LOST_REASONS[draw % len(LOST_REASONS)]
            opp = opp.lose(reason=reason, at=when, clock=clock)
        else:
            opp = opp.reopen(at=when, clock=clock)
    if opp.version != EVENTS:
        raise AssertionError(f"the workload makes {EVENTS} events, not {opp.version}")
    return opp


# -- timing ----------------------------------------------------------------------------------


# (shared with the other benchmarks, in _timing.py)
@dataclass
class Case:
    """One contender: ``work`` is timed, ``check`` (untimed) looks at what it returned."""

    label: str
    work: Callable[[], Any]
    check: Callable[[Any], None]
    samples: list[Sample] = field(default_factory=list)

    def walls(self) -> list[float]:
        return [sample.wall for sample in self.samples]

    def cpus(self) -> list[float]:
        return [sample.cpu for sample in self.samples]


def run_cases(cases: Sequence[Case], repeats: int, what: str) -> None:
    # The expected answers the checks keep live all run long, like the deals: keep the
    # collections triggered inside a timed run from rescanning them.
    gc.collect()
    gc.freeze()
    for turn in range(repeats):
        progress(f"{what}: repeat {turn + 1} of {repeats}")
        for case in rotated(cases, turn):
            result, sample = timed(case.work)
            case.check(result)
            del result
            case.samples.append(sample)


def header_row() -> str:
    return (
        f"   {'':47} {'median s':>8} {'min..max s':>13} {'us/deal':>8} {'x floor':>8} "
        f"{'paired':>11}  verdict"
    )


def floor_rows(count: int, floor: Case, library: Case) -> list[str]:
    """The floor's row, the library's row with its ratio and verdict, and the CPU ratio."""
    lines = []
    for case in (floor, library):
        walls = case.walls()
        row = (
            f"   {case.label:47} {median(walls):8.3f} {spread(walls, digits=3):>13} "
            f"{median(walls) / count * 1e6:8.2f} "
        )
        if case is floor:
            row += f"{'1.00x':>8}"
        else:
            ratio = median(walls) / median(floor.walls())
            paired = [w / f for w, f in zip(walls, floor.walls(), strict=True)]
            row += f"{ratio:7.2f}x {spread(paired):>11}  {verdict(ratio, FLOOR_TARGET, paired)}"
        lines.append(row)
    cpu = median(library.cpus()) / median(floor.cpus())
    lines.append(
        f"   {'oppcore / floor in CPU time (context)':47} {'':8} {'':13} {'':8} {cpu:7.2f}x"
    )
    return lines


# -- exact arithmetic for the hand-written loops ---------------------------------------------

#: Sums of money stay exact (it traps if they ever would not).
EXACT = Context(prec=200, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
ZERO = Decimal(0)

# -- 1. pipeline_movement --------------------------------------------------------------------


@dataclass(frozen=True)
class MovementResult:
    """A movement in plain values: totals and counts by bucket (``opening`` and ``closing``
    included) and the entries (deal id, bucket, amount) in oppcore's order."""

    totals: dict[str, Decimal]
    counts: dict[str, int]
    entries: list[tuple[str, str, Decimal]]


def movement_result(movement: Movement) -> MovementResult:
    """oppcore's ``Movement`` in the hand loop's shape."""

    def amount(money: Money | None) -> Decimal:
        if money is None or money.currency != CURRENCY:
            raise AssertionError(f"a movement amount is {money!r}, not {CURRENCY}")
        return money.amount

    names = ("opening", *BUCKETS, "closing")
    return MovementResult(
        {name: amount(getattr(movement, name)) for name in names},
        {name: movement.counts[name] for name in names},
        [(entry.opportunity_id, entry.bucket, amount(entry.amount)) for entry in movement.entries],
    )


def library_movement(deals: list[Opportunity], window: Period | None) -> Movement:
    return pipeline_movement(deals, start=MOVEMENT_START, end=MOVEMENT_END, window=window)


def hand_movement(
    deals: list[Opportunity], start: datetime, end: datetime, window: Period | None
) -> MovementResult:
    """The movement as a careful person writes it: one pass over each deal's events.

    Walking a deal's events in order, the state it had at ``start`` is noted when the first
    event after ``start`` comes (or after the last event), and the walk stops at the first
    event after ``end``.  The state is the stage's outcome, the amount (the hand-typed one,
    else the line items' total, else none, which counts as zero) and the expected close.
    Then the module documentation's rule gives the bucket and the Decimal sums add up.
    """
    first_day, last_day = (window.start, window.end) if window is not None else (None, None)
    open_ = Outcome.OPEN
    opening = closing = ZERO
    opened = closed = 0
    totals = dict.fromkeys(BUCKETS, ZERO)
    counts = dict.fromkeys(BUCKETS, 0)
    moved: dict[str, list[tuple[str, str, Decimal]]] = {bucket: [] for bucket in BUCKETS}
    with localcontext(EXACT):
        for opp in deals:
            events = opp.events
            head = events[0]
            if head.at > end:
                continue  # not yet opened at end: in neither pipeline
            stage_of = head.pipeline.stage
            stage, manual, close = head.stage, head.amount, head.expected_close
            items = {item.id: item for item in head.line_items}
            # (outcome, amount, expected close) at start; None: not yet opened then
            before: tuple[Outcome, Decimal | None, date | None] | None = None
            noted = head.at > start
            for event in events[1:]:
                if event.at > start and not noted:
                    noted = True
                    amount = manual.amount if manual is not None else None
                    if amount is None and items:
                        amount = sum([item.total.amount for item in items.values()], ZERO)
                    before = (stage_of(stage).outcome, amount, close)
                if event.at > end:
                    break
                kind = type(event)
                if kind is StageChanged or kind is Won or kind is Lost or kind is Reopened:
                    stage = event.to_stage
                elif kind is FieldsChanged:
                    if "amount" in event.fields:
                        manual = event.amount
                    if "expected_close" in event.fields:
                        close = event.expected_close
                elif kind is LineItemAdded or kind is LineItemChanged:
                    items[event.item.id] = event.item
                elif kind is LineItemRemoved:
                    items.pop(event.item_id, None)
            amount = manual.amount if manual is not None else None
            if amount is None and items:
                amount = sum([item.total.amount for item in items.values()], ZERO)
            after = (stage_of(stage).outcome, amount, close)
            if not noted:
                before = after
            if before is None:
                was = False
            else:
                day = before[2]
                was = before[0] is open_ and (
                    first_day is None or (day is not None and first_day <= day <= last_day)
                )
            day = after[2]
            now = after[0] is open_ and (
                first_day is None or (day is not None and first_day <= day <= last_day)
            )
            old = ZERO if before is None or before[1] is None else before[1]
            new = ZERO if after[1] is None else after[1]
            if was:
                opening += old
                opened += 1
            if now:
                closing += new
                closed += 1
            if was and now:
                if new > old:
                    bucket, value = "increased", new - old
                elif new < old:
                    bucket, value = "decreased", old - new
                else:
                    continue
            elif was:
                outcome = after[0]
                bucket = (
                    "won"
                    if outcome is Outcome.WON
                    else "lost"
                    if outcome is Outcome.LOST
                    else "pushed_out"
                )
                value = old
            elif now:
                bucket = (
                    "new"
                    if before is None
                    else "reopened"
                    if before[0] is not open_
                    else "pulled_in"
                )
                value = new
            else:
                continue
            totals[bucket] += value
            counts[bucket] += 1
            moved[bucket].append((opp.id, bucket, value))
    return MovementResult(
        {"opening": opening, **totals, "closing": closing},
        {"opening": opened, **counts, "closing": closed},
        [entry for bucket in BUCKETS for entry in moved[bucket]],
    )


def measure_movement(
    deals: list[Opportunity], repeats: int, window: Period | None
) -> tuple[list[Case], MovementResult]:
    """Check the hand loop against oppcore (untimed), then time both interleaved."""
    name = f"pipeline_movement(window={window})"
    progress(f"{name}: checking the hand loop against oppcore (untimed)")
    expected = hand_movement(deals, MOVEMENT_START, MOVEMENT_END, window)
    got = movement_result(library_movement(deals, window))
    for what, mine, theirs in (
        ("totals", got.totals, expected.totals),
        ("counts", got.counts, expected.counts),
    ):
        for key in mine:
            if mine[key] != theirs[key]:
                raise AssertionError(
                    f"{name} {what}[{key}]: oppcore {mine[key]}, hand {theirs[key]}"
                )
    if got.entries != expected.entries:
        raise AssertionError(f"{name}: the entries differ from the hand loop's")
    reconciled = got.totals["opening"]
    for bucket in BUCKETS:
        sign = 1 if bucket in ("new", "increased", "reopened", "pulled_in") else -1
        reconciled += sign * got.totals[bucket]
    if reconciled != got.totals["closing"]:
        raise AssertionError(f"{name}: the buckets do not reconcile")

    def check_library(movement: Movement) -> None:
        if movement_result(movement) != expected:
            raise AssertionError(f"{name} gave another answer on a later repeat")

    def check_hand(result: MovementResult) -> None:
        if result != expected:
            raise AssertionError(f"the {name} hand loop gave another answer than oppcore")

    cases = [
        Case(
            "hand-written loop over the events (floor)",
            lambda: hand_movement(deals, MOVEMENT_START, MOVEMENT_END, window),
            check_hand,
        ),
        Case("oppcore pipeline_movement", lambda: library_movement(deals, window), check_library),
    ]
    run_cases(cases, repeats, name)
    return cases, expected


def report_movement(
    count: int, window: Period | None, cases: list[Case], result: MovementResult
) -> list[str]:
    floor, library = cases
    shown = "None" if window is None else f"Period {window} ({window.start}..{window.end})"
    lines = [f"   window={shown}", header_row(), *floor_rows(count, floor, library)]
    buckets = ", ".join(
        f"{bucket} {result.counts[bucket]:,}" for bucket in BUCKETS if result.counts[bucket]
    )
    lines.append(
        f"   (checked: opening, closing and the {len(BUCKETS)} buckets' totals and counts, and "
        f"the {len(result.entries):,} entries, equal oppcore's exactly; the buckets reconcile)"
    )
    lines.append(
        f"   (opening {result.counts['opening']:,} deals {result.totals['opening']:,.2f}, closing "
        f"{result.counts['closing']:,} deals {result.totals['closing']:,.2f}; {buckets})"
    )
    return lines


# -- 2. snapshot -----------------------------------------------------------------------------

_AT = attrgetter("at")


def hand_snapshot(deals: list[Opportunity], moment: datetime) -> list[Opportunity]:
    """Each deal as it stood at ``moment``, by hand: count its events at or before
    ``moment``, skip the deal if none, keep it whole if all, else replay that prefix."""
    result = []
    replay = Opportunity.replay
    for opp in deals:
        events = opp.events
        count = bisect.bisect_right(events, moment, key=_AT)
        if count == 0:
            continue
        result.append(opp if count == len(events) else replay(events[:count]))
    return result


def library_snapshot(deals: list[Opportunity], moment: datetime) -> list[Opportunity]:
    return snapshot(deals, as_of=moment)


@dataclass(frozen=True)
class MonthEnd:
    moment: datetime
    floor: Case
    library: Case
    deals: int  # deals in the snapshot
    replayed: int  # of which rebuilt from part of their events


def measure_snapshots(deals: list[Opportunity], repeats: int) -> list[MonthEnd]:
    """Check each month-end's hand loop against oppcore (untimed), then time all 24
    contenders interleaved, the order rotated each repeat."""
    months = []
    for moment in MONTH_ENDS:
        progress(f"snapshot(as_of={moment:%Y-%m-%d}): checking the hand loop (untimed)")
        expected = hand_snapshot(deals, moment)
        if library_snapshot(deals, moment) != expected:
            raise AssertionError(f"snapshot at {moment}: oppcore differs from the hand loop")
        replayed = sum(opp.version < EVENTS for opp in expected)

        def check(result: list[Opportunity], expected: list[Opportunity] = expected) -> None:
            if result != expected:
                raise AssertionError("a snapshot gave another answer on a later repeat")

        months.append(
            MonthEnd(
                moment,
                Case("hand-written loop (floor)", partial(hand_snapshot, deals, moment), check),
                Case("oppcore snapshot", partial(library_snapshot, deals, moment), check),
                len(expected),
                replayed,
            )
        )
        del expected
    run_cases(
        [case for month in months for case in (month.floor, month.library)], repeats, "snapshot"
    )
    return months


def report_snapshots(count: int, months: list[MonthEnd]) -> list[str]:
    lines = [
        f"   {'as_of (last instant of)':24} {'deals':>7} {'replayed':>8} {'floor s':>8} "
        f"{'oppcore s':>9} {'x floor':>8} {'paired':>11}  verdict"
    ]
    for month in months:
        floor, library = month.floor.walls(), month.library.walls()
        ratio = median(library) / median(floor)
        paired = [lib / flo for lib, flo in zip(library, floor, strict=True)]
        lines.append(
            f"   {month.moment:%Y-%m-%d}{'':14} {month.deals:7,} {month.replayed:8,} "
            f"{median(floor):8.3f} {median(library):9.3f} {ratio:7.2f}x {spread(paired):>11}  "
            f"{verdict(ratio, FLOOR_TARGET, paired)}"
        )
    repeats = len(months[0].floor.samples)
    floor_total = [sum(m.floor.samples[turn].wall for m in months) for turn in range(repeats)]
    library_total = [sum(m.library.samples[turn].wall for m in months) for turn in range(repeats)]
    ratio = median(library_total) / median(floor_total)
    paired = [lib / flo for lib, flo in zip(library_total, floor_total, strict=True)]
    lines.append(
        f"   {'all 12 (sum per repeat)':24} {sum(m.deals for m in months):7,} "
        f"{sum(m.replayed for m in months):8,} {median(floor_total):8.3f} "
        f"{median(library_total):9.3f} {ratio:7.2f}x {spread(paired):>11}  "
        f"{verdict(ratio, FLOOR_TARGET, paired)}"
    )
    floor_cpu = [sum(m.floor.samples[turn].cpu for m in months) for turn in range(repeats)]
    library_cpu = [sum(m.library.samples[turn].cpu for m in months) for turn in range(repeats)]
    lines.append(
        f"   {'all 12, oppcore / floor in CPU time (context)':62} "
        f"{median(library_cpu) / median(floor_cpu):7.2f}x"
    )
    lines.append(
        f"   (us/deal over all 12: floor {median(floor_total) / (12 * count) * 1e6:.2f}, oppcore "
        f"{median(library_total) / (12 * count) * 1e6:.2f}; checked: each month-end's list "
        "equals oppcore's, deal by deal and field by field, on every repeat)"
    )
    return lines


# -- profiling -------------------------------------------------------------------------------


def profile(deals: list[Opportunity], top: int) -> list[str]:
    busiest = max(MONTH_ENDS, key=lambda moment: sum(1 for _ in _partial(deals, moment)))
    lines = ["Profile of one library call each (cProfile; its overhead inflates all)"]
    calls: list[tuple[str, Callable[[], Any]]] = [
        (f"pipeline_movement(window={QUARTER})", lambda: library_movement(deals, QUARTER)),
        ("pipeline_movement(window=None)", lambda: library_movement(deals, None)),
        (f"snapshot(as_of={busiest:%Y-%m-%d})", lambda: library_snapshot(deals, busiest)),
    ]
    for name, call in calls:
        gc.collect()
        profiler = cProfile.Profile()
        profiler.enable()
        call()
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
        lines.append(f"--- {name}, by tottime")
        lines.extend(
            line
            for line in text.getvalue().splitlines()
            if line.strip() and not line.startswith("   Ordered by")
        )
    return lines


def _partial(deals: list[Opportunity], moment: datetime) -> Any:
    return (opp for opp in deals if opp.events[0].at <= moment < opp.events[-1].at)


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="oppcore history benchmarks: pipeline_movement and snapshot against "
        "hand-written loops, medians and ratios."
    )
    parser.add_argument("--opportunities", type=int, help="deals in memory (100,000)")
    parser.add_argument("--repeats", type=int, help="repeats per measurement (5)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 5,000 opportunities, 3 repeats (options given as well win)",
    )
    parser.add_argument(
        "--only",
        choices=("movement", "snapshot"),
        action="append",
        help="run only these measurements (repeatable)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also profile the library calls: top N rows",
    )
    args = parser.parse_args(argv)
    defaults = (5_000, 3) if args.quick else (100_000, 5)
    for name, default in zip(("opportunities", "repeats"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be 1 or more")
    return args


def describe(deals: list[Opportunity]) -> str:
    outcomes = dict.fromkeys(Outcome, 0)
    reopened = with_lines = line_amount = 0
    first = min(opp.events[0].at for opp in deals)
    last = max(opp.events[-1].at for opp in deals)
    for opp in deals:
        outcomes[opp.stage.outcome] += 1
        reopened += any(type(event) is Reopened for event in opp.events)
        with_lines += bool(opp.line_items)
        line_amount += opp.manual_amount is None and bool(opp.line_items)
    share = ", ".join(f"{o.value} {n / len(deals):.1%}" for o, n in outcomes.items())
    return (
        f"workload: at the end {share}; {reopened / len(deals):.1%} reopened once; "
        f"{with_lines / len(deals):.1%} have line items, {line_amount / len(deals):.1%} "
        f"end with the line total as their amount; events from {first:%Y-%m-%d} to {last:%Y-%m-%d}"
    )


def build_deals(count: int) -> tuple[list[Opportunity], float]:
    """Deals 0 .. ``count - 1``, and the seconds building them took (collector paused)."""
    deals: list[Opportunity] = []
    every = max(count // 10, 1)
    gc.collect()
    gc.disable()
    started = time.perf_counter()
    try:
        for number in range(count):
            deals.append(build_opportunity(number))
            if (number + 1) % every == 0:
                progress(
                    f"  built {number + 1:,} of {count:,} ({time.perf_counter() - started:.0f} s)"
                )
    finally:
        gc.enable()
    return deals, time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    count: int = args.opportunities
    wanted = set(args.only or ("movement", "snapshot"))
    started = time.perf_counter()
    header = [
        f"oppcore history benchmarks: {count:,} opportunities x {EVENTS} events in memory "
        f"(Pipeline.default(), {CURRENCY}, FixedClock and at=), {args.repeats} repeats",
        f"oppcore {oppcore.__version__}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs; {source_state()}",
        "Figures are medians over the repeats; 'paired' is the range of the ratio within each "
        "repeat; contenders run interleaved.",
    ]
    print("\n".join(header), flush=True)
    progress(f"building {count:,} opportunities")
    deals, seconds = build_deals(count)
    gc.collect()
    gc.freeze()  # the deals live all run long: keep full collections from rescanning them
    print(describe(deals), flush=True)
    print(
        f"built {count:,} deals in {seconds:,.1f} s ({seconds / count * 1e6:,.0f} us each, "
        f"{seconds / (count * EVENTS) * 1e6:,.1f} us per event; not part of any ratio)",
        flush=True,
    )
    if "movement" in wanted:
        print(
            f"\n1. pipeline_movement over {QUARTER} (start {MOVEMENT_START.isoformat()}, end "
            f"{MOVEMENT_END.isoformat()}): oppcore at most {FLOOR_TARGET}x a hand-written loop "
            "over each deal's events",
            flush=True,
        )
        for window in (QUARTER, None):
            cases, result = measure_movement(deals, args.repeats, window)
            print("\n".join(report_movement(count, window, cases, result)), flush=True)
    if "snapshot" in wanted:
        print(
            f"\n2. snapshot(opps, as_of=t) at the {len(MONTH_ENDS)} month-ends of 2026: oppcore "
            f"at most {FLOOR_TARGET}x a hand-written loop (count the events at or before t, "
            "Opportunity.replay that prefix)",
            flush=True,
        )
        months = measure_snapshots(deals, args.repeats)
        print("\n".join(report_snapshots(count, months)), flush=True)
    if args.profile:
        print()
        print("\n".join(profile(deals, args.profile)), flush=True)
    progress(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

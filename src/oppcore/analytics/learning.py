"""Learning from closed deals: win rates per stage, and whether stated probabilities hold."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

import attrs

from oppcore._repr import short
from oppcore.analytics import _common, _frames
from oppcore.analytics.stages import (
    frame_pipelines,
    open_ranks,
    open_stage_keys,
    progress,
    stage_order,
)
from oppcore.analytics.table import Table
from oppcore.domain.money import DIVISION, EXACT
from oppcore.domain.stages import Pipeline
from oppcore.exceptions import ValidationError

#: The normal quantile for a two-sided 95 % interval.
_Z = Decimal("1.959963984540054")
_HUNDRED = Decimal(100)


@attrs.frozen
class StageWinRateRow:
    """Of the closed deals that reached ``stage`` (were in it or got past it), the share won.

    ``rate`` is won / closed with its 95 % Wilson interval ``low`` to ``high``, all fractions
    (None when no closed deal reached the stage); ``sufficient`` is False when fewer than
    ``min_closed`` closed deals back the rate.
    """

    stage: str
    closed: int
    won: int
    rate: Decimal | None
    low: Decimal | None
    high: Decimal | None
    sufficient: bool


def _count(value: object, what: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= 1_000_000:
        raise ValidationError(
            f"{what} {short(value)} must be a whole number from {least} to 1000000."
        )
    return value


def wilson(won: int, closed: int) -> tuple[Decimal, Decimal]:
    """The 95 % Wilson score interval for ``won`` successes in ``closed`` trials."""
    n = Decimal(closed)
    share = DIVISION.divide(Decimal(won), n)
    z2 = DIVISION.multiply(_Z, _Z)
    scale = DIVISION.add(1, DIVISION.divide(z2, n))
    centre = DIVISION.divide(
        DIVISION.add(share, DIVISION.divide(z2, DIVISION.multiply(2, n))), scale
    )
    spread = DIVISION.add(
        DIVISION.divide(DIVISION.multiply(share, 1 - share), n),
        DIVISION.divide(z2, DIVISION.multiply(4, DIVISION.multiply(n, n))),
    )
    margin = DIVISION.divide(DIVISION.multiply(_Z, DIVISION.sqrt(spread)), scale)
    low = max(Decimal(0), DIVISION.subtract(centre, margin))
    high = min(Decimal(1), DIVISION.add(centre, margin))
    return low, high


def stage_win_rates(
    opps: _common.Deals,
    *,
    min_closed: int = 30,
    pipelines: Iterable[Pipeline] | None = None,
) -> Table[StageWinRateRow]:
    """Per open stage, the share of closed deals that reached it and were won.

    A deal that skipped a stage counts as having reached it, as in ``funnel``.  Stages with
    the same key in several pipelines are counted together; rows follow the first
    pipeline's order (the order of ``pipelines=`` when given).  Feed the result to
    ``as_probabilities`` for ``forecast``.

    A deal frame holds no stage definitions: with a frame, pass ``pipelines=`` (the
    ``Pipeline`` values its deals are in, e.g. ``repo.pipelines()``).
    """
    least = _count(min_closed, "min_closed", 0)
    given = _common.pipelines(pipelines, "stage_win_rates")
    if _frames.looks_like_frame(opps):
        used = frame_pipelines(opps, given, "stage_win_rates")
        keys = open_stage_keys(used)
        closed = dict.fromkeys(keys, 0)
        won = dict.fromkeys(keys, 0)
        positions = {pipeline.id: open_ranks(pipeline) for pipeline in used}
        orders = {pipeline_id: list(ranks) for pipeline_id, ranks in positions.items()}
        for pipeline_id, furthest, now, count in _frames.furthest(opps, positions):
            if now == "open" or pipeline_id not in orders:  # open now, or another pipeline's
                continue
            for key in orders[pipeline_id][: furthest + 1]:
                closed[key] += count
                if now == "won":
                    won[key] += count
    else:
        deals = _common.deals(opps, None)
        keys = stage_order(deals, given, "stage_win_rates")
        closed = dict.fromkeys(keys, 0)
        won = dict.fromkeys(keys, 0)
        ranked: dict[int, tuple[dict[str, int], list[str]]] = {}
        for opp in deals:
            if opp.is_open:
                continue
            pipeline = opp.pipeline
            found = ranked.get(id(pipeline))
            if found is None:
                ranks = open_ranks(pipeline)
                found = ranked[id(pipeline)] = (ranks, list(ranks))
            ranks, order = found
            furthest = progress(opp, ranks, len(order))
            for key in order[: furthest + 1]:
                closed[key] += 1
                if opp.is_won:
                    won[key] += 1
    rows = []
    for key in keys:
        count, wins = closed[key], won[key]
        low, high = wilson(wins, count) if count else (None, None)
        rows.append(
            StageWinRateRow(
                stage=key,
                closed=count,
                won=wins,
                rate=_common.ratio(wins, count),
                low=low,
                high=high,
                sufficient=count >= least,
            )
        )
    return Table.of(StageWinRateRow, rows, title="Win rate by stage")


def as_probabilities(win_rates: Iterable[StageWinRateRow]) -> dict[str, Decimal]:
    """Stage key -> percentage from the sufficient rows of ``stage_win_rates``, ready for
    ``forecast(probabilities=...)``: rounded half-even to six decimal places, the finest
    probability a deal takes (1 won of 3 gives ``33.333333``)."""
    if _frames.looks_like_frame(win_rates):
        raise ValidationError(
            "as_probabilities takes the rows of stage_win_rates(), not a deal frame: call "
            "stage_win_rates(frame, pipelines=...) first."
        )
    if isinstance(win_rates, (str, bytes)) or not isinstance(win_rates, Iterable):
        raise ValidationError(f"as_probabilities takes stage_win_rates(), not {short(win_rates)}.")
    result = {}
    for row in win_rates:
        if not isinstance(row, StageWinRateRow):
            raise ValidationError(f"{short(row)} is not a row of stage_win_rates().")
        if row.sufficient and row.rate is not None:
            result[row.stage] = _percentage(row.rate)
    return result


_PLACES = Decimal("0.000001")  # the finest probability a deal takes: six decimal places


def _percentage(rate: Decimal) -> Decimal:
    """``rate`` as a percentage rounded to six decimal places, without trailing zeros."""
    value = EXACT.multiply(rate, _HUNDRED).quantize(_PLACES, rounding=ROUND_HALF_EVEN)
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


@attrs.frozen
class CalibrationBin:
    """Closed deals whose stated probability fell from ``low`` to ``high`` (fractions; the
    last bin includes 1): their number, mean stated probability and observed win share."""

    low: Decimal
    high: Decimal
    count: int
    stated: Decimal
    observed: Decimal


@attrs.frozen
class Calibration:
    """How well stated probabilities matched outcomes over ``count`` closed deals.

    ``brier`` is the mean of (stated - outcome)² with the probability as a fraction and the
    outcome 1 for won, 0 for lost: 0 is perfect, 0.25 is what always saying 50 % scores.
    ``bins`` is the reliability table, a row per bin that holds a deal.
    """

    brier: Decimal | None
    count: int
    bins: Table[CalibrationBin]


Point = Literal["last_open_stage", "opened", "before_close"]
_POINTS = ("last_open_stage", "opened", "before_close")


def stated_probability(states: Iterable[tuple[str, str, Decimal]], point: Point) -> Decimal | None:
    """The probability a closed deal had at ``point``; None if it never was open.

    ``states`` is the deal's history as (stage, outcome, probability) after each event, in
    order: its rows with ``recorded_to`` None, from ``Opportunity.versions()`` or a deal
    frame.  A row in an open stage other than the row before's (or the first row) is where
    the deal entered it; a closed row after an open one is where it closed.
    """
    entered: Decimal | None = None  # when it last entered an open stage
    current: Decimal | None = None  # in effect now, while open
    before_close: Decimal | None = None
    previous: str | None = None  # the stage of the row before
    for stage, outcome, probability in states:
        is_open = outcome == "open"
        if previous is None and point == "opened":
            # opened straight into a closed stage: nothing was stated
            return probability if is_open else None
        if is_open:
            if stage != previous:
                entered = probability
            current = probability
        elif current is not None:  # closed just now
            before_close = current
            current = None
        previous = stage
    if point == "before_close":
        return before_close
    return entered


def calibration(
    opps: _common.Deals, *, bins: int = 10, point: Point = "last_open_stage"
) -> Calibration:
    """Stated probability against outcome for closed deals: the Brier score and a
    reliability table of ``bins`` equal-width bins.

    ``point`` chooses which probability is "stated": the one set when the deal entered the
    last open stage it was in (default), the one it opened with, or the one it had just
    before it closed.  Deals that never were open are left out.  Both read each deal's
    history as known now (its rows with ``recorded_to`` None).
    """
    size = _count(bins, "bins", 1)
    if point not in _POINTS:
        raise ValidationError(f"point {short(point)} is not one of {', '.join(_POINTS)}.")
    closed: Iterable[tuple[bool, Decimal | None]]
    if _frames.looks_like_frame(opps):
        closed = (
            (is_won, stated_probability(states, point))
            for _, is_won, states in _frames.closed_histories(opps)
        )
    else:
        closed = (
            (
                opp.is_won,
                stated_probability(
                    ((row.stage, row.outcome, row.probability) for row in _common.history(opp)),
                    point,
                ),
            )
            for opp in _common.deals(opps, None)
            if not opp.is_open
        )
    stated: list[list[Decimal]] = [[] for _ in range(size)]
    wins = [0] * size
    squares = Decimal(0)
    count = 0
    scale = Decimal(size)
    for is_won, chance in closed:
        if chance is None:
            continue
        fraction = EXACT.divide(chance, _HUNDRED)
        outcome = 1 if is_won else 0
        squares = EXACT.add(squares, EXACT.multiply(fraction - outcome, fraction - outcome))
        count += 1
        index = min(int(EXACT.multiply(fraction, scale)), size - 1)
        stated[index].append(fraction)
        wins[index] += outcome
    rows = [
        CalibrationBin(
            low=DIVISION.divide(Decimal(i), scale),
            high=DIVISION.divide(Decimal(i + 1), scale),
            count=len(values),
            stated=_common.mean(values) or Decimal(0),  # values is never empty here
            observed=DIVISION.divide(Decimal(wins[i]), Decimal(len(values))),
        )
        for i, values in enumerate(stated)
        if values
    ]
    return Calibration(
        brier=_common.ratio(squares, count),
        count=count,
        bins=Table.of(CalibrationBin, rows, title="Calibration"),
    )


__all__ = [
    "Calibration",
    "CalibrationBin",
    "StageWinRateRow",
    "as_probabilities",
    "calibration",
    "stage_win_rates",
]

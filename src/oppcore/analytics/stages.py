"""Where deals go and where they stall: the funnel, time in stage and stale deals."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_EVEN, Decimal

import attrs

from oppcore import clock as _clock
from oppcore._repr import short
from oppcore.analytics import _common, _frames
from oppcore.analytics.table import Table
from oppcore.domain.opportunity import Opportunity
from oppcore.domain.stages import Outcome, Pipeline
from oppcore.exceptions import ValidationError


def visited(opp: Opportunity) -> set[str]:
    """The keys of the stages the deal has been in, as the domain reads them
    (``Opportunity.stage_timeline``)."""
    return {interval.stage for interval in opp.stage_timeline()}


def progress(opp: Opportunity, ranks: dict[str, int], past_all: int) -> int:
    """How far along ``ranks`` (open stage key -> position) the deal ever got: the highest
    position of an open stage it was in, ``past_all`` once it was ever won, -1 if neither.

    A deal frame counts the same on its engine (``_frames.furthest``).
    """
    furthest = -1
    pipeline = opp.pipeline
    for key in visited(opp):
        rank = ranks.get(key)
        if rank is None:
            if pipeline.stage(key).outcome is Outcome.WON:
                return past_all
            continue
        furthest = max(furthest, rank)
    return furthest


def open_ranks(pipeline: Pipeline) -> dict[str, int]:
    """Each open stage's position in pipeline order."""
    return {stage.key: i for i, stage in enumerate(s for s in pipeline.stages if s.is_open)}


def open_stage_keys(pipelines: Iterable[Pipeline]) -> list[str]:
    """The open stage keys of ``pipelines``: the first one's in order, then any other
    one's keys not seen yet."""
    keys: dict[str, None] = {}
    for pipeline in pipelines:
        for stage in pipeline.stages:
            if stage.is_open:
                keys.setdefault(stage.key, None)
    return list(keys)


def deal_pipelines(deals: Iterable[Opportunity]) -> list[Pipeline]:
    """The deals' pipelines, each once, in the order the deals come."""
    found: dict[int, Pipeline] = {}
    for opp in deals:
        found.setdefault(id(opp.pipeline), opp.pipeline)
    return list(found.values())


def merged_open_stages(deals: Iterable[Opportunity]) -> list[str]:
    """The open stage keys of the deals' pipelines: the first pipeline's in order, then any
    other pipeline's keys not seen yet."""
    return open_stage_keys(deal_pipelines(deals))


def stage_order(
    deals: Sequence[Opportunity], given: dict[str, Pipeline] | None, what: str
) -> list[str]:
    """The rows' stages for ``what``: the open stages of the deals' pipelines, in the order
    of ``pipelines=`` when given (each deal's pipeline must be among them), else the first
    deal's pipeline first."""
    if given is None:
        return merged_open_stages(deals)
    used = _common.used_pipelines(given, {opp.pipeline.id for opp in deals}, what)
    return open_stage_keys(used)


def frame_pipelines(frame: object, given: dict[str, Pipeline] | None, what: str) -> list[Pipeline]:
    """The pipelines of a deal frame's deals, from ``pipelines=``, in the order given."""
    if given is None:
        raise ValidationError(
            f"A deal frame holds no stage definitions: pass pipelines= (the Pipeline values "
            f"its deals are in, e.g. repo.pipelines()) to {what}."
        )
    return _common.used_pipelines(given, _frames.pipeline_ids(frame), what)


@attrs.frozen
class FunnelRow:
    """How deals went through one open stage.

    ``reached``: deals that were in the stage or got past it (a deal that skipped a stage,
    opening further along or jumping ahead, counts for the stages it skipped);
    ``advanced``: of those, deals that went on to a later open stage or a won stage;
    ``won``: of those, deals won now.  ``conversion`` is advanced / reached and
    ``win_rate_from_stage`` won / reached, as fractions (None when nothing reached it).
    """

    stage: str
    reached: int
    advanced: int
    won: int
    conversion: Decimal | None
    win_rate_from_stage: Decimal | None


def _checked(pipeline: object) -> Pipeline:
    if not isinstance(pipeline, Pipeline):
        raise ValidationError(f"pipeline must be a Pipeline, not {short(pipeline)}.")
    return pipeline


def _pipeline_of(deals: Sequence[Opportunity], pipeline: object) -> Pipeline | None:
    if pipeline is not None:
        return _checked(pipeline)
    ids = sorted({opp.pipeline.id for opp in deals})
    if len(ids) > 1:
        raise ValidationError(
            f"The deals are in pipelines {', '.join(repr(i) for i in ids)}: pass pipeline= "
            "to choose one; stages of different pipelines are not added together."
        )
    return deals[0].pipeline if deals else None


def funnel(opps: _common.Deals, *, pipeline: Pipeline | None = None) -> Table[FunnelRow]:
    """Per open stage in pipeline order: deals that reached it, advanced past it, were won.

    With ``pipeline=`` only deals in that pipeline (by id) count; without it, all deals must
    be in one pipeline.  A deal frame holds no stage definitions: with a frame, pass
    ``pipeline=``.
    """
    if _frames.looks_like_frame(opps):
        if pipeline is None:
            raise ValidationError(
                "A deal frame holds no stage definitions: pass pipeline= (the Pipeline to "
                "count, e.g. repo.get_pipeline('default')) to funnel a frame."
            )
        return _frame_funnel(opps, _checked(pipeline))
    deals = _common.deals(opps, None)
    chosen = _pipeline_of(deals, pipeline)
    if chosen is None or not deals:  # empty input, empty table
        return Table.of(FunnelRow, [], title="Funnel")
    ranks = open_ranks(chosen)
    size = len(ranks)
    deals_in = (
        (progress(opp, ranks, size), opp.is_won, 1) for opp in deals if opp.pipeline.id == chosen.id
    )
    reached, won = _tallies(deals_in, size)
    return _funnel_rows(chosen, ranks, reached, won)


def _frame_funnel(frame: object, chosen: Pipeline) -> Table[FunnelRow]:
    """``funnel`` of a deal frame: each deal's furthest stage found on the engine."""
    ranks = open_ranks(chosen)
    found = _frames.furthest(frame, {chosen.id: ranks})
    if not found:  # empty input, empty table
        return Table.of(FunnelRow, [], title="Funnel")
    deals = ((rank, now == "won", count) for _, rank, now, count in found)
    reached, won = _tallies(deals, len(ranks))
    return _funnel_rows(chosen, ranks, reached, won)


def _tallies(deals: Iterable[tuple[int, bool, int]], size: int) -> tuple[list[int], list[int]]:
    """From (progress, won now, deals): deals whose progress is exactly r, and of them the
    ones won now, for r from 0 to ``size`` (past every open stage)."""
    reached = [0] * (size + 1)
    won = [0] * (size + 1)
    for furthest, is_won, count in deals:
        if furthest < 0:
            continue
        reached[furthest] += count
        if is_won:
            won[furthest] += count
    return reached, won


def _funnel_rows(
    chosen: Pipeline, ranks: dict[str, int], reached: list[int], won: list[int]
) -> Table[FunnelRow]:
    rows = []
    at_least = sum(reached)  # deals whose progress is at least r, from r = 0 up
    won_at_least = sum(won)
    for key, rank in ranks.items():
        beyond = at_least - reached[rank]
        rows.append(
            FunnelRow(
                stage=key,
                reached=at_least,
                advanced=beyond,
                won=won_at_least,
                conversion=_common.ratio(beyond, at_least),
                win_rate_from_stage=_common.ratio(won_at_least, at_least),
            )
        )
        at_least = beyond
        won_at_least -= won[rank]
    return Table.of(FunnelRow, rows, title=f"Funnel of {chosen.name or chosen.id}")


@attrs.frozen
class StageTimeRow:
    """Time deals spent in one open stage, each deal's visits added together.

    ``opportunities``: deals that were in the stage; ``mean``, ``median`` and ``p90`` over
    those deals (None when there are none); ``total`` over all of them.
    """

    stage: str
    opportunities: int
    mean: timedelta | None
    median: timedelta | None
    p90: timedelta | None
    total: timedelta


def _now(now: datetime | date | None, clock: _clock.Clock | None, zone: tzinfo) -> datetime:
    return _common.instant(_clock.resolve(clock).now() if now is None else now, "now", zone)


def _micro(delta: timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _duration(micro: Decimal | None) -> timedelta | None:
    if micro is None:
        return None
    return timedelta(microseconds=int(micro.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)))


def _visits(opp: Opportunity) -> list[tuple[str, bool, datetime, datetime | None]]:
    """The deal's stretches in one stage, as the domain reads them (``stage_timeline``):
    (stage, open, entered, left)."""
    stage = opp.pipeline.stage
    return [
        (visit.stage, stage(visit.stage).is_open, visit.entered_at, visit.exited_at)
        for visit in opp.stage_timeline()
    ]


def _time_spent(
    visits: Iterable[tuple[str, bool, datetime, datetime | None]], now: datetime
) -> dict[str, int]:
    """Microseconds one deal spent in each open stage up to ``now``, from its visits in
    order (stage, open, from, to; to None while it is there): revisits add up, a visit
    still going counts up to ``now``, and a stage entered and left at once counts with no
    time.  Both routes read a deal through this: its stage timeline, or a frame's rows."""
    totals: dict[str, int] = {}
    for key, is_open, entered, left in visits:
        if entered > now:  # this visit and every later one begin after now
            break
        if not is_open:
            continue
        stop = now if left is None or left > now else left
        totals[key] = totals.get(key, 0) + _micro(stop - entered)
    return totals


def time_in_stage(
    opps: _common.Deals,
    *,
    now: datetime | date | None = None,
    clock: _clock.Clock | None = None,
    time_zone: _common.ZoneLike = None,
    pipelines: Iterable[Pipeline] | None = None,
) -> Table[StageTimeRow]:
    """Per open stage: how long deals spent in it, up to ``now`` (default: the clock's now).

    Revisits add up, and a deal still in a stage counts up to ``now``.  Time in won and lost
    stages is not time a deal spends in the pipeline and is left out.  Rows follow the
    pipeline's order, every open stage included; with several pipelines, the first one's
    stages come first (the order of ``pipelines=`` when given).  Mean, median and p90 are
    rounded to the microsecond.  Durations are elapsed time; ``now`` given as a date means
    the end of that day in ``time_zone`` (default UTC).

    A deal frame holds no stage definitions: with a frame, pass ``pipelines=`` (the
    ``Pipeline`` values its deals are in, e.g. ``repo.pipelines()``).
    """
    moment = _now(now, clock, _common.time_zone(time_zone))
    given = _common.pipelines(pipelines, "time_in_stage")
    spent: dict[str, list[int]]
    visits: Iterable[list[tuple[str, bool, datetime, datetime | None]]]
    if _frames.looks_like_frame(opps):
        spent = {key: [] for key in open_stage_keys(frame_pipelines(opps, given, "time_in_stage"))}
        visits = _frames.stage_visits(opps, moment).values()
    else:
        deals = _common.deals(opps, None)
        spent = {key: [] for key in stage_order(deals, given, "time_in_stage")}
        visits = map(_visits, deals)
    for deal in visits:
        for key, micro in _time_spent(deal, moment).items():
            if key in spent:
                spent[key].append(micro)
    rows = []
    half, p90 = Decimal("0.5"), Decimal("0.9")
    for key, values in spent.items():
        values.sort()
        ordered = [Decimal(value) for value in values]
        rows.append(
            StageTimeRow(
                stage=key,
                opportunities=len(values),
                mean=_duration(_common.mean(ordered)),
                median=_duration(_common.quantile(ordered, half)),
                p90=_duration(_common.quantile(ordered, p90)),
                total=timedelta(microseconds=sum(values)),
            )
        )
    return Table.of(StageTimeRow, rows, title="Time in stage")


@attrs.frozen
class StaleRow:
    """An open deal that has sat in its stage longer than the stage allows."""

    opportunity_id: str
    stage: str
    owner: str | None
    days_in_stage: Decimal


def _threshold(days: object) -> Decimal | None:
    if days is None:
        return None
    if isinstance(days, (bool, float)) or not isinstance(days, (int, Decimal)):
        raise ValidationError(f"days must be a whole or Decimal number of days, not {short(days)}.")
    value = Decimal(days)
    if not value.is_finite() or not 0 <= value <= 36_500:
        raise ValidationError(f"days {short(days)} must be from 0 to 36500.")
    return value


def stale(
    opps: _common.Deals,
    *,
    now: datetime | date | None = None,
    clock: _clock.Clock | None = None,
    days: int | Decimal | None = None,
    time_zone: _common.ZoneLike = None,
    pipelines: Iterable[Pipeline] | None = None,
) -> Table[StaleRow]:
    """Open deals that have sat in their current stage more than its ``stale_after_days``
    (or more than ``days`` in any stage, when given): "rotting" deals, as in Pipedrive and Odoo.

    The time counts from when the deal last entered the stage, up to ``now``; each deal is
    taken as it stood at ``now``.  Stages without a threshold never make a deal stale.
    Rows come longest-sitting first, ties in opportunity id order.  Days are counted as the
    clocks of ``time_zone`` (default UTC) show them, as ``sales_cycle`` counts them, and
    ``now`` given as a date means the end of that day there.

    A deal frame holds no stage definitions: with a frame, pass ``pipelines=`` (the
    ``Pipeline`` values its deals are in, e.g. ``repo.pipelines()``) for their stages'
    thresholds; with ``days=`` no stage's threshold is read, and ``pipelines=`` is not needed.
    """
    zone = _common.time_zone(time_zone)
    moment = _now(now, clock, zone)
    limit = _threshold(days)
    given = _common.pipelines(pipelines, "stale")
    rows = []
    if _frames.looks_like_frame(opps):
        thresholds: dict[tuple[str, str], Decimal] = {}
        if limit is None:
            for pipeline in frame_pipelines(opps, given, "stale"):
                for stage in pipeline.stages:
                    if stage.is_open and stage.stale_after_days is not None:
                        thresholds[(pipeline.id, stage.key)] = Decimal(stage.stale_after_days)
        cutoffs: dict[tuple[str, str], datetime] | datetime = (
            _cutoff(moment, limit)
            if limit is not None
            else {key: _cutoff(moment, value) for key, value in thresholds.items()}
        )
        for opp_id, key, owner, pipeline_id, entered in _frames.stage_entries(
            opps, moment, cutoffs
        ):
            bound = limit if limit is not None else thresholds[(pipeline_id, key)]
            sitting = _common.days(_common.local_span(entered, moment, zone))
            if sitting > bound:
                rows.append(StaleRow(opp_id, key, owner, sitting))
    else:
        deals = _common.deals(opps, moment)
        if given is not None and limit is None:  # the same refusal as a frame's
            _common.used_pipelines(given, {opp.pipeline.id for opp in deals}, "stale")
        for opp in deals:
            stage = opp.stage
            if not stage.is_open:
                continue
            threshold = limit if limit is not None else stage.stale_after_days
            if threshold is None:
                continue
            entered = opp.stage_timeline()[-1].entered_at
            sitting = _common.days(_common.local_span(entered, moment, zone))
            if sitting > threshold:
                rows.append(StaleRow(opp.id, stage.key, opp.owner, sitting))
    rows.sort(key=lambda row: (-row.days_in_stage, row.opportunity_id))
    return Table.of(StaleRow, rows, title="Stale deals")


#: More than a zone's clocks can add to or take from elapsed time (offsets span 26 hours).
_ZONE_SLACK = timedelta(days=2)


def _cutoff(now: datetime, days: Decimal) -> datetime:
    """A deal that entered its stage at or after this instant has not sat ``days`` on any
    zone's clocks by ``now``: the engine's coarse filter, the exact test being in Python."""
    try:
        return now - timedelta(microseconds=int(days * 86_400_000_000)) + _ZONE_SLACK
    except OverflowError:  # further back than the calendar: nobody sat that long
        return datetime.min.replace(tzinfo=now.tzinfo)


__all__ = [
    "FunnelRow",
    "StageTimeRow",
    "StaleRow",
    "funnel",
    "stale",
    "time_in_stage",
]

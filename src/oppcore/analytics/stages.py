"""Where deals go and where they stall: the funnel, time in stage and stale deals."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_EVEN, Decimal

import attrs

from oppcore import clock as _clock
from oppcore._repr import short
from oppcore.analytics import _common
from oppcore.analytics.table import Table
from oppcore.domain.events import Lost, Opened, Reopened, StageChanged, Won
from oppcore.domain.opportunity import Opportunity
from oppcore.domain.stages import Outcome, Pipeline
from oppcore.exceptions import ValidationError

_STAGE_EVENTS = (StageChanged, Won, Lost, Reopened)


def visited(opp: Opportunity) -> list[str]:
    """The stage keys the deal was in, in order (repeats kept)."""
    keys: list[str] = []
    for event in opp.events:
        if isinstance(event, Opened):
            keys.append(event.stage)
        elif isinstance(event, _STAGE_EVENTS):
            keys.append(event.to_stage)
    return keys


def progress(opp: Opportunity, ranks: dict[str, int], past_all: int) -> int:
    """How far along ``ranks`` (open stage key -> position) the deal ever got: the highest
    position of an open stage it was in, ``past_all`` once it was ever won, -1 if neither."""
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


def merged_open_stages(deals: Iterable[Opportunity]) -> list[str]:
    """The open stage keys of the deals' pipelines: the first pipeline's in order, then any
    other pipeline's keys not seen yet."""
    keys: dict[str, None] = {}
    seen: set[int] = set()
    for opp in deals:
        pipeline = opp.pipeline
        if id(pipeline) in seen:
            continue
        seen.add(id(pipeline))
        for stage in pipeline.stages:
            if stage.is_open:
                keys.setdefault(stage.key, None)
    return list(keys)


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


def _pipeline_of(deals: Sequence[Opportunity], pipeline: object) -> Pipeline | None:
    if pipeline is not None:
        if not isinstance(pipeline, Pipeline):
            raise ValidationError(f"pipeline must be a Pipeline, not {short(pipeline)}.")
        return pipeline
    ids = sorted({opp.pipeline.id for opp in deals})
    if len(ids) > 1:
        raise ValidationError(
            f"The deals are in pipelines {', '.join(repr(i) for i in ids)}: pass pipeline= "
            "to choose one; stages of different pipelines are not added together."
        )
    return deals[0].pipeline if deals else None


def funnel(opps: Iterable[Opportunity], *, pipeline: Pipeline | None = None) -> Table[FunnelRow]:
    """Per open stage in pipeline order: deals that reached it, advanced past it, were won.

    With ``pipeline=`` only deals in that pipeline (by id) count; without it, all deals must
    be in one pipeline.
    """
    deals = _common.deals(opps, None)
    chosen = _pipeline_of(deals, pipeline)
    if chosen is None or not deals:  # empty input, empty table
        return Table.of(FunnelRow, [], title="Funnel")
    ranks = open_ranks(chosen)
    size = len(ranks)
    reached = [0] * (size + 1)  # reached[r]: deals whose progress is exactly r
    won = [0] * (size + 1)
    for opp in deals:
        if opp.pipeline.id != chosen.id:
            continue
        furthest = progress(opp, ranks, size)
        if furthest < 0:
            continue
        reached[furthest] += 1
        if opp.is_won:
            won[furthest] += 1
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


def time_in_stage(
    opps: Iterable[Opportunity],
    *,
    now: datetime | date | None = None,
    clock: _clock.Clock | None = None,
    time_zone: _common.ZoneLike = None,
) -> Table[StageTimeRow]:
    """Per open stage: how long deals spent in it, up to ``now`` (default: the clock's now).

    Revisits add up, and a deal still in a stage counts up to ``now``.  Time in won and lost
    stages is not time a deal spends in the pipeline and is left out.  Rows follow the
    pipeline's order, every open stage included; with several pipelines, the first one's
    stages come first.  Mean, median and p90 are rounded to the microsecond.  Durations are
    elapsed time; ``now`` given as a date means the end of that day in ``time_zone``
    (default UTC).
    """
    moment = _now(now, clock, _common.time_zone(time_zone))
    deals = _common.deals(opps, None)
    spent: dict[str, list[int]] = {key: [] for key in merged_open_stages(deals)}
    for opp in deals:
        for key, delta in opp.time_in_stage(now=moment).items():
            if key in spent and opp.pipeline.stage(key).is_open:
                spent[key].append(_micro(delta))
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
    opps: Iterable[Opportunity],
    *,
    now: datetime | date | None = None,
    clock: _clock.Clock | None = None,
    days: int | Decimal | None = None,
    time_zone: _common.ZoneLike = None,
) -> Table[StaleRow]:
    """Open deals that have sat in their current stage more than its ``stale_after_days``
    (or more than ``days`` in any stage, when given): "rotting" deals, as in Pipedrive and Odoo.

    The time counts from when the deal last entered the stage, up to ``now``; each deal is
    taken as it stood at ``now``.  Stages without a threshold never make a deal stale.
    Rows come longest-sitting first.  Days are counted as the clocks of ``time_zone``
    (default UTC) show them, as ``sales_cycle`` counts them, and ``now`` given as a date
    means the end of that day there.
    """
    zone = _common.time_zone(time_zone)
    moment = _now(now, clock, zone)
    limit = _threshold(days)
    rows = []
    for opp in _common.deals(opps, moment):
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


__all__ = [
    "FunnelRow",
    "StageTimeRow",
    "StaleRow",
    "funnel",
    "stale",
    "time_in_stage",
]

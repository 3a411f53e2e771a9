"""The repository: domain values in, event records out, and back.

Opportunities are stored as their events, one stream per opportunity (the stream id is the
opportunity's id).  Leads, campaigns and pipelines are stored as snapshots, one stream each,
under ``lead:<id>``, ``campaign:<id>`` and ``pipeline:<id>``; every save that changes one
appends a new snapshot, so their history is kept too.  A snapshot value carries the version of
its stream it was read at (``Lead.version``; 0 for a value never stored), and a save that
changes it must be based on the stored version, as a save of an opportunity must: a stale copy
raises ``ConcurrencyError`` instead of replacing a newer one.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any, TypeVar, cast

import attrs

from oppcore import clock as _clock
from oppcore._repr import short
from oppcore.domain import _checks
from oppcore.domain import versions as _versions
from oppcore.domain.events import EVENT_TYPES, Event
from oppcore.domain.lead import Campaign, Lead
from oppcore.domain.opportunity import Opportunity
from oppcore.domain.stages import Outcome, Pipeline
from oppcore.domain.versions import DealVersion
from oppcore.exceptions import (
    ConcurrencyError,
    CorruptStoreError,
    NotFoundError,
    OppcoreError,
    OpportunityNotFound,
    StorageError,
    ValidationError,
)
from oppcore.serialization import converter
from oppcore.storage import _table
from oppcore.storage.jsonl import JsonEventStore
from oppcore.storage.memory import MemoryEventStore
from oppcore.storage.records import BatchEventStore, EventRecord, EventStore
from oppcore.storage.sqlite import SqliteEventStore

T = TypeVar("T")

_EVENTS_BY_NAME: dict[str, type[Any]] = {cls.__name__: cls for cls in EVENT_TYPES}
_SNAPSHOTS: dict[type[Any], tuple[str, str]] = {
    Lead: ("lead:", "LeadSaved"),
    Campaign: ("campaign:", "CampaignSaved"),
    Pipeline: ("pipeline:", "PipelineSaved"),
}
#: Pipeline definitions, stored once each (store format 2): ``definition:<sha256>`` holds the
#: pipeline an ``Opened`` record names by ``pipeline_ref`` instead of carrying it inline.
DEFINITION_PREFIX = "definition:"
DEFINITION_TYPE = "PipelineDefined"
RESERVED_PREFIXES = (*(prefix for prefix, _ in _SNAPSHOTS.values()), DEFINITION_PREFIX)
assert RESERVED_PREFIXES == _table.SNAPSHOT_PREFIXES
# How many deals a repository keeps of those it saved, to project only their next events.
_SAVED_KEPT = 1_024
# How many times a reader catching the deal table up retries when writers keep moving it.
_CATCH_UP_TRIES = 20

Plan = tuple[str, list[EventRecord], int]
#: What a ``find`` / ``count`` filter takes: one value, or a collection of values.
Filter = str | Outcome | Iterable[str | Outcome] | None
Snapshot = TypeVar("Snapshot", bound=Lead | Campaign | Pipeline)


class Repository:
    """Saves and loads opportunities, leads, campaigns and pipelines in an ``EventStore``."""

    def __init__(self, store: EventStore, *, clock: _clock.Clock | None = None) -> None:
        if not isinstance(store, EventStore):
            raise ValidationError(
                f"Repository needs an EventStore (append, read_stream, stream_ids, read_all), "
                f"not {short(store)}."
            )
        self.store = store
        self._clock = None if clock is None else _clock.resolve(clock)
        # The deal table, for stores that do not keep one (memory, JSON Lines, others):
        # each deal's rows, caught up by position on every query.
        self._kept: dict[str, tuple[DealVersion, ...]] = {}
        self._kept_position = 0
        # What opportunities(), leads(), campaigns() and pipelines() read last time, and
        # up to which position: a later call reads only what came after.
        self._deals: dict[str, int] = {}  # each deal's place in _deal_list
        self._deal_list: list[Opportunity] = []
        self._deals_position = 0
        self._defined: set[str] = set()  # definition streams known to be stored
        self._saved: dict[str, Opportunity] = {}  # the deals saved last, oldest first
        self._definitions: dict[str, dict[str, Any]] = {}  # digest -> pipeline payload
        self._latest: dict[str, dict[str, EventRecord]] = {}
        self._latest_position: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"Repository({self.store!r})"

    # -- saving --------------------------------------------------------------------------

    def save(self, value: T, *, replace: bool = False) -> T:
        """Store what is new in ``value``; ``ConcurrencyError`` if someone else saved first.

        Returns the saved value: an opportunity as it was given; a lead, campaign or
        pipeline carrying the version it is now stored at, to change and save again.  A
        lead, campaign or pipeline must be based on the stored version (a new value, version
        0, on an id stored with other content is a conflict too); saving one equal to the
        stored one writes nothing.  ``replace=True`` lets a lead, campaign or pipeline replace
        the stored one whatever version it was read at (as an import does); it changes
        nothing for opportunities, whose events are always checked.  The caller's value is
        never changed: after a conflict, reload with ``get`` and apply the change again.
        """
        _check_replace(replace)
        plan, saved = self._plan(value, replace)
        if plan is not None:
            self._write([plan], [(plan, saved)])
        return cast(T, saved)

    def save_all(self, values: Iterable[T], *, replace: bool = False) -> list[T]:
        """Store many values in one durable write where the backend allows: all or nothing.

        Returns the saved values, in order, as ``save`` does; ``replace`` as for ``save``.
        """
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ValidationError(f"save_all takes a list of values, not {short(values)}.")
        _check_replace(replace)
        planned = [self._plan(value, replace) for value in values]
        plans = [plan for plan, _ in planned if plan is not None]
        seen: set[str] = set()
        for stream_id, _, _ in plans:
            if stream_id in seen:
                raise ValidationError(
                    f"save_all was given {stream_id!r} twice; save one value per id."
                )
            seen.add(stream_id)
        if plans:
            self._write(plans, planned)
        return [cast(T, saved) for _, saved in planned]

    def _write(self, plans: list[Plan], planned: list[tuple[Plan | None, object]]) -> None:
        """Append the plans: one batch with the deal table's rows where the store keeps it,
        each pipeline definition stored once where the store takes references."""
        store = self.store
        by_reference = bool(getattr(store, "pipelines_by_reference", False)) and isinstance(
            store, BatchEventStore
        )
        for attempt in range(2):
            batches = self._referenced(plans) if by_reference else plans
            try:
                keeper = self._table_keeper()
                if keeper is not None:
                    keeper.append_many(batches, deal_rows=self._deal_rows(planned))
                    self._remember_saved(planned)
                elif isinstance(store, BatchEventStore):
                    store.append_many(batches)
                else:  # a backend without batches: each stream is atomic, the whole is not
                    for stream_id, records, expected in batches:
                        store.append(stream_id, records, expected_version=expected)
                return
            except ConcurrencyError as exc:
                # Another writer stored the same definition first: it is there now, the same
                # content (its id is its hash), so write again without it.
                if attempt or not str(exc.stream_id or "").startswith(DEFINITION_PREFIX):
                    raise
                self._defined.add(str(exc.stream_id))

    def _deal_rows(self, planned: Iterable[tuple[Plan | None, object]]) -> _table.DealRows:
        """For each deal a save writes: the first version whose rows change, and its rows from
        that version on (the row standing before the save is among them: its end changes).

        A deal this repository saved last at that version is projected from there (its new
        events only), so saving a long deal one event at a time stays linear.
        """
        found: dict[str, tuple[int, tuple[DealVersion, ...]]] = {}
        for plan, saved in planned:
            if plan is None or not isinstance(saved, Opportunity):
                continue
            since = plan[2]
            before = self._saved.get(saved.id)
            if (
                since
                and before is not None
                and before.version == since
                and before.events[-1] == saved.events[since - 1]
            ):
                rows = _versions.tail(before, saved.events[since:])
            else:
                rows = tuple(r for r in saved.versions() if r.version >= since)
            found[plan[0]] = (since, rows)
        return found

    def _remember_saved(self, planned: Iterable[tuple[Plan | None, object]]) -> None:
        """Keep the deals just saved, a bounded few, for ``_deal_rows`` of their next save."""
        for plan, saved in planned:
            if plan is not None and isinstance(saved, Opportunity):
                self._saved.pop(saved.id, None)
                self._saved[saved.id] = saved
        while len(self._saved) > _SAVED_KEPT:
            del self._saved[next(iter(self._saved))]

    def _referenced(self, plans: list[Plan]) -> list[Plan]:
        """The plans with each ``Opened`` naming its pipeline by reference, and a batch for
        every definition the store does not hold yet (first, so the batch is whole)."""
        definitions: list[Plan] = []
        result: list[Plan] = []
        for stream_id, records, expected in plans:
            changed = []
            for record in records:
                pipeline = record.payload.get("pipeline") if record.type == "Opened" else None
                if not isinstance(pipeline, dict):
                    changed.append(record)
                    continue
                digest = definition_digest(pipeline)
                definition = DEFINITION_PREFIX + digest
                payload = {k: v for k, v in record.payload.items() if k != "pipeline"}
                payload["pipeline_ref"] = digest
                changed.append(attrs.evolve(record, payload=payload))
                if definition not in self._defined and not any(
                    plan[0] == definition for plan in definitions
                ):
                    if self._version(definition):
                        self._defined.add(definition)
                    else:
                        kept = EventRecord(
                            definition, 1, DEFINITION_TYPE, record.at, record.recorded_at, pipeline
                        )
                        definitions.append((definition, [kept], 0))
            result.append((stream_id, changed, expected))
        return [*definitions, *result]

    def _plan(self, value: object, replace: bool) -> tuple[Plan | None, object]:
        """What to append for ``value``, and the value as it will be once stored."""
        if isinstance(value, Opportunity):
            return self._plan_opportunity(value), value
        if isinstance(value, (Lead, Campaign, Pipeline)):
            return self._plan_snapshot(value, replace)
        raise ValidationError(
            f"A repository saves an Opportunity, Lead, Campaign or Pipeline, not {short(value)}."
        )

    def _version(self, stream_id: str) -> int:
        counter = getattr(self.store, "stream_version", None)
        if callable(counter):
            return int(counter(stream_id))
        return len(self.store.read_stream(stream_id))

    def _last(self, stream_id: str, version: int) -> EventRecord | None:
        records = self.store.read_stream(stream_id, after_version=version - 1)
        return records[0] if records else None

    def _plan_opportunity(self, opp: Opportunity) -> Plan | None:
        if opp.id.startswith(RESERVED_PREFIXES):
            raise ValidationError(
                f"Opportunity id {opp.id!r} starts with a prefix the repository keeps for "
                f"{', '.join(RESERVED_PREFIXES)} streams; choose another id."
            )
        stored = self._version(opp.id)
        if stored:
            last = self._last(opp.id, stored)
            same = (
                stored <= opp.version
                and last is not None
                and self._decode_event(last) == opp.events[stored - 1]
            )
            if not same:
                base = self._common_history(opp)
                raise ConcurrencyError(
                    f"Opportunity {opp.id!r} was saved by someone else: your copy was based "
                    f"on version {base}, the store is at version {stored}. Reload it with "
                    "get() and try again.",
                    stream_id=opp.id,
                    expected=base,
                    actual=stored,
                )
        if stored == opp.version:
            return None
        records = [event_record(event) for event in opp.events[stored:]]
        return opp.id, records, stored

    def _common_history(self, opp: Opportunity) -> int:
        """How many of ``opp``'s events the store holds too: the version it was based on."""
        count = 0
        for record, event in zip(self.store.read_stream(opp.id), opp.events, strict=False):
            if self._decode_event(record) != event:
                break
            count += 1
        return count

    def _plan_snapshot(
        self, value: Lead | Campaign | Pipeline, replace: bool
    ) -> tuple[Plan | None, Lead | Campaign | Pipeline]:
        prefix, kind = _SNAPSHOTS[type(value)]
        stream_id = prefix + value.id
        stored = self._version(stream_id)
        if stored:
            last = self._last(stream_id, stored)
            if last is not None and self._decode_snapshot(last, type(value)) == value:
                return None, _at_version(value, stored)  # the same content: nothing to write
            if value.version != stored and not replace:
                raise _stale(value, stream_id, stored)
        now = _checks.aware((self._clock or _clock.get_clock()).now(), "The clock's time")
        if isinstance(value, Pipeline):
            payload = value.to_dict()
        else:
            payload = converter().unstructure(value)
            # The record's own version is the truth: the payload keeps the content only, as
            # it always has (so older and newer oppcore read each other's snapshots).
            payload.pop("version", None)
        record = EventRecord(stream_id, stored + 1, kind, now.isoformat(), now.isoformat(), payload)
        return (stream_id, [record], stored), _at_version(value, stored + 1)

    # -- loading -------------------------------------------------------------------------

    def get(self, opportunity_id: str) -> Opportunity:
        """The stored opportunity, replayed from its events; ``OpportunityNotFound`` if none."""
        if not isinstance(opportunity_id, str):
            raise ValidationError(f"Opportunity id must be text, not {short(opportunity_id)}.")
        records = (
            []
            if opportunity_id.startswith(RESERVED_PREFIXES)
            else self.store.read_stream(opportunity_id)
        )
        if not records:
            raise OpportunityNotFound(f"No opportunity {opportunity_id!r} is stored.")
        return self._replay(opportunity_id, records)

    def get_lead(self, lead_id: str) -> Lead:
        return self._get_snapshot(Lead, lead_id)

    def get_campaign(self, campaign_id: str) -> Campaign:
        return self._get_snapshot(Campaign, campaign_id)

    def get_pipeline(self, pipeline_id: str) -> Pipeline:
        return self._get_snapshot(Pipeline, pipeline_id)

    def _get_snapshot(self, cls: type[T], value_id: str) -> T:
        if not isinstance(value_id, str):
            raise ValidationError(f"{cls.__name__} id must be text, not {short(value_id)}.")
        prefix, _ = _SNAPSHOTS[cls]
        stream_id = prefix + value_id
        stored = self._version(stream_id)
        last = self._last(stream_id, stored) if stored else None
        if last is None:
            raise NotFoundError(f"No {cls.__name__.lower()} {value_id!r} is stored.")
        return self._decode_snapshot(last, cls)

    def opportunities(
        self, *, as_of: datetime | None = None, known_at: datetime | None = None
    ) -> list[Opportunity]:
        """Every stored opportunity; with ``as_of`` / ``known_at``, as it stood (or was known) then.

        Deals that did not exist yet at that time are left out.
        """
        if as_of is not None:
            _checks.aware(as_of, "as_of")
        if known_at is not None:
            _checks.aware(known_at, "known_at")
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._load_all(as_of, known_at)
        finally:
            # A bulk load makes millions of objects and no garbage cycles; the cyclic
            # collector would walk the growing heap again and again, so it is paused while
            # loading and restored as it was, whatever happens.
            if collecting:
                gc.enable()

    def _load_all(self, as_of: datetime | None, known_at: datetime | None) -> list[Opportunity]:
        self._catch_up_deals()
        if as_of is None and known_at is None:
            return list(self._deal_list)
        result = []
        for opp in self._deal_list:
            state: Opportunity | None = opp
            if known_at is not None:
                state = opp.as_known_at(known_at)
            if as_of is not None and state is not None:
                state = state.as_of(as_of)
            if state is not None:
                result.append(state)
        return result

    def _catch_up_deals(self) -> None:
        """Bring the deals read last time up to the store: only the events since then.

        Each deal with new events is replayed from its events (the ones read before and the
        new ones); nothing is kept until every one replays, so a damaged record leaves the
        repository as it was.
        """
        after = self._deals_position
        new: dict[str, list[Event]] = {}
        last = after
        # Decode each record as it is read: only events stay alive, not records and payloads.
        for position, record in self._records_after(after):
            last = position
            if not record.stream_id.startswith(RESERVED_PREFIXES):
                new.setdefault(record.stream_id, []).append(self._decode_event(record))
            else:
                self._learn(record)
        replayed = {}
        for stream_id, events in new.items():
            slot = self._deals.get(stream_id)
            if slot is None:
                replayed[stream_id] = self._replay_events(stream_id, events)
            else:
                replayed[stream_id] = self._extend(self._deal_list[slot], events)
        for stream_id, opp in replayed.items():
            slot = self._deals.get(stream_id)
            if slot is None:
                self._deals[stream_id] = len(self._deal_list)
                self._deal_list.append(opp)
            else:
                self._deal_list[slot] = opp
        self._deals_position = last

    def _records_after(self, after: int) -> Iterator[tuple[int, EventRecord]]:
        """The records after position ``after``, each with its position (counted on from
        ``after`` for a store that does not set positions)."""
        for index, record in enumerate(self.store.read_all(after_position=after), after + 1):
            yield (index if record.position is None else record.position), record

    def _extend(self, opp: Opportunity, events: list[Event]) -> Opportunity:
        try:
            return opp._extended(events)
        except OppcoreError as exc:
            raise CorruptStoreError(
                f"The stored history of opportunity {opp.id!r} does not replay: {exc}"
            ) from None

    def leads(self) -> list[Lead]:
        return self._snapshots(Lead)

    def campaigns(self) -> list[Campaign]:
        return self._snapshots(Campaign)

    def pipelines(self) -> list[Pipeline]:
        return self._snapshots(Pipeline)

    def _snapshots(self, cls: type[T]) -> list[T]:
        """The latest snapshot of each stream of ``cls``: read in full once, then only what
        was written since the last call."""
        prefix, _ = _SNAPSHOTS[cls]
        latest = cast("dict[str, T]", self._latest.setdefault(prefix, {}))
        after = self._latest_position.get(prefix)
        found: dict[str, T] = {}
        ender = getattr(self.store, "last_position", None)
        if after is None and callable(ender):
            # The first call on a store that can say where it ends: each snapshot stream's
            # last record, without reading every deal's events to find them.
            last = int(ender())
            for stream_id in self.store.stream_ids():
                if stream_id.startswith(prefix):
                    record = self._last(stream_id, self._version(stream_id))
                    if record is not None:
                        found[stream_id] = self._decode_snapshot(record, cls)
        else:
            last = after or 0
            for position, record in self._records_after(last):
                last = position
                if record.stream_id.startswith(prefix):
                    found[record.stream_id] = self._decode_snapshot(record, cls)
        latest.update(found)
        self._latest_position[prefix] = last
        return list(latest.values())

    # -- the deal table --------------------------------------------------------------------

    def _table_keeper(self) -> Any:
        """The store, when it keeps the deal table itself (SQLite, PostgreSQL); else None."""
        store = self.store
        return store if callable(getattr(store, "replace_deals", None)) else None

    def find(
        self,
        *,
        stage: Filter = None,
        outcome: Filter = None,
        owner: Filter = None,
        account: Filter = None,
        campaign_id: Filter = None,
        lead_source: Filter = None,
        type: Filter = None,
        pipeline_id: Filter = None,
        closing_from: date | None = None,
        closing_to: date | None = None,
        order_by: str = "expected_close",
        limit: int | None = None,
        offset: int = 0,
        **unknown: Any,
    ) -> list[DealVersion]:
        """The current rows of the deals that match, from the deal table, with no replay.

        Each filter takes one value or a collection of values (``outcome`` the text or
        ``Outcome``); ``closing_from`` / ``closing_to`` are inclusive dates on
        ``expected_close``.  ``order_by`` is a column name, ``-`` in front for descending,
        ties by ascending ``opportunity_id``, None last either way; ``limit`` and ``offset``
        page the result.  ``ValidationError`` names an unknown argument or a bad value.
        """
        query = _table.query(
            stage=stage,
            outcome=outcome,
            owner=owner,
            account=account,
            campaign_id=campaign_id,
            lead_source=lead_source,
            type=type,
            pipeline_id=pipeline_id,
            closing_from=closing_from,
            closing_to=closing_to,
            order_by=order_by,
            limit=limit,
            offset=offset,
            **unknown,  # ValidationError naming it, not a TypeError
        )
        keeper = self._catch_up_table()
        if keeper is not None:
            return cast("list[DealVersion]", keeper.find_deals(query))
        return query.ordered(row for row in self._current_kept() if query.matches(row))

    def count(
        self,
        *,
        stage: Filter = None,
        outcome: Filter = None,
        owner: Filter = None,
        account: Filter = None,
        campaign_id: Filter = None,
        lead_source: Filter = None,
        type: Filter = None,
        pipeline_id: Filter = None,
        closing_from: date | None = None,
        closing_to: date | None = None,
        **unknown: Any,
    ) -> int:
        """How many deals ``find`` gives for the same filters."""
        query = _table.count_query(
            stage=stage,
            outcome=outcome,
            owner=owner,
            account=account,
            campaign_id=campaign_id,
            lead_source=lead_source,
            type=type,
            pipeline_id=pipeline_id,
            closing_from=closing_from,
            closing_to=closing_to,
            **unknown,
        )
        keeper = self._catch_up_table()
        if keeper is not None:
            return int(keeper.count_deals(query))
        return sum(1 for row in self._current_kept() if query.matches(row))

    def deal_frame(self, *, backend: str = "polars", current: bool = False) -> Any:
        """The stored deal table as a dataframe (``oppcore.frame.deal_frame``), with no replay.

        ``current=True`` gives only the current rows (one per deal): what the analytics of
        the present state read, without the history.
        """
        from oppcore.frame import _check_backend, deal_frame

        if not isinstance(current, bool):
            raise ValidationError(f"current must be True or False, not {short(current)}.")
        _check_backend(backend)
        keeper = self._catch_up_table()
        frame_of = getattr(keeper, "deal_frame", None)
        if callable(frame_of):
            return frame_of(backend=backend, current=current)
        rows = self._table_rows()
        if current:
            rows = (row for row in rows if row.is_current)
        return deal_frame(list(rows), backend=backend)

    def deal_versions(self) -> list[DealVersion]:
        """Every row of the stored deal table (history included), by deal, version and
        recorded time; exact, whatever the size of the numbers."""
        return list(self._table_rows())

    def _table_rows(self) -> Iterable[DealVersion]:
        keeper = self._catch_up_table()
        if keeper is not None:
            return cast("Iterable[DealVersion]", keeper.deal_versions())
        rows = [row for rows in self._kept.values() for row in rows]
        rows.sort(key=_row_key)
        return rows

    def rebuild_deal_table(self) -> None:
        """Rebuild the deal table from the events (the events stay the truth)."""
        keeper = self._table_keeper()
        if keeper is None:
            self._kept, self._kept_position = {}, 0
            self._catch_up_table()
            return
        for _ in range(_CATCH_UP_TRIES):
            rows, until = self._projected_since(0)
            if keeper.replace_deals(rows, since=None, until=until, rebuild=True):
                return
        raise StorageError(
            "The deal table was not rebuilt: other writers kept adding events while it was "
            "read. Try again when they pause."
        )

    def _current_kept(self) -> Iterator[DealVersion]:
        self._catch_up_table()
        for rows in self._kept.values():
            for row in reversed(rows):
                if row.is_current:
                    yield row
                    break

    def _catch_up_table(self) -> Any:
        """Bring the deal table up to the events; the store that keeps it, or None."""
        keeper = self._table_keeper()
        if keeper is None:
            rows, until = self._projected_since(self._kept_position)
            self._kept.update(rows)
            self._kept_position = until
            return None
        for _ in range(_CATCH_UP_TRIES):
            since, last = keeper.deal_table_lag()
            if since is not None and since >= last:
                return keeper
            rows, until = self._projected_since(since or 0)
            if keeper.replace_deals(rows, since=since, until=until):
                return keeper
        raise StorageError(
            "The deal table could not be caught up with the events: other writers kept "
            "moving it. Try again."
        )

    def _projected_since(self, after: int) -> tuple[dict[str, tuple[DealVersion, ...]], int]:
        """Each deal with events after position ``after``, projected from all its events,
        and the last position read."""
        collecting = gc.isenabled()
        gc.disable()
        try:
            touched: dict[str, list[Event]] = {}
            last = after
            for position, record in self._records_after(after):
                last = position
                if not record.stream_id.startswith(RESERVED_PREFIXES):
                    events = touched.setdefault(record.stream_id, [])
                    if after == 0:  # every event of every deal is in this read
                        events.append(self._decode_event(record))
                else:
                    self._learn(record)
            projected = {}
            for stream_id, events in touched.items():
                if after:
                    events = [self._decode_event(r) for r in self.store.read_stream(stream_id)]
                projected[stream_id] = self._replay_events(stream_id, events).versions()
            return projected, last
        finally:
            if collecting:
                gc.enable()

    # -- checking ------------------------------------------------------------------------

    def verify(self) -> list[str]:
        """Read every stream end to end and say what is damaged, changing nothing.

        Each problem is one line naming the stream.  An empty list means every record
        decodes, every stream's versions run 1, 2, 3, ... and every opportunity replays.
        """
        problems: list[str] = []
        try:
            stream_ids = list(self.store.stream_ids())
        except OppcoreError as exc:
            return [str(exc)]
        total = 0
        unreadable = False
        projected: dict[str, tuple[DealVersion, ...] | None] = {}
        for stream_id in stream_ids:
            try:
                records = self.store.read_stream(stream_id)
            except OppcoreError as exc:
                problems.append(f"Stream {stream_id!r} cannot be read: {exc}")
                unreadable = True
                projected[stream_id] = None
                continue
            total += len(records)
            problem = self._check_stream(stream_id, records, projected)
            if problem is not None:
                problems.append(problem)
        try:
            in_order = sum(1 for _ in self.store.read_all())
        except OppcoreError as exc:
            if not unreadable:  # the same damage, already named by its stream
                problems.append(str(exc))
        else:
            if in_order != total and not unreadable:
                problems.append(
                    f"The store's global order holds {in_order} records, its streams {total}."
                )
        problems.extend(self._store_problems())
        if not problems:
            problems.extend(self._table_problems(projected))
        return problems

    def _table_problems(self, projected: dict[str, tuple[DealVersion, ...] | None]) -> list[str]:
        """Where the store's deal table differs from the projection of the events it says
        it reflects (the deals with events after its position are caught up by the next
        reader, so they are not compared)."""
        keeper = self._table_keeper()
        if keeper is None:
            return []
        try:
            marker = keeper.deal_table_position()
            if marker is None:
                return []
            later = {record.stream_id for record in self.store.read_all(after_position=marker)}
            stored: dict[str, list[DealVersion]] = {}
            for row in keeper.deal_versions():
                stored.setdefault(row.opportunity_id, []).append(row)
        except OppcoreError as exc:
            return [f"The deal table cannot be read: {exc}"]
        problems = []
        for stream_id in sorted(set(stored) | set(projected)):
            if stream_id in later or not _table.is_deal(stream_id):
                continue
            want = projected.get(stream_id, ())
            if want is None:
                continue  # unreadable: named above
            got = tuple(stored.get(stream_id, ()))
            if got != tuple(sorted(want, key=_row_key)):
                problems.append(
                    f"The deal table's rows for opportunity {stream_id!r} differ from its "
                    f"events ({len(got)} rows stored, {len(want)} projected); "
                    "rebuild_deal_table() rebuilds the table from the events."
                )
        return problems

    def deal_table_status(self) -> str:
        """One line on the deal table: kept, behind the events, or not built yet.

        Writes nothing (``verify`` reports it).
        """
        keeper = self._table_keeper()
        if keeper is None:
            return "the deal table is kept in memory, built when first read"
        marker, last = keeper.deal_table_lag()
        if marker is None:
            return (
                "the deal table is not built yet: the first query (find, count, deal_frame) "
                "builds it, or rebuild_deal_table()"
            )
        if marker >= last:
            return "the deal table reflects every event"
        return (
            f"the deal table reflects the events up to position {marker} of {last}: the next "
            "query catches it up"
        )

    def _store_problems(self) -> list[str]:
        """What the store's own check finds (SQLite's integrity check, say), if it has one.

        A store may offer ``integrity_problems() -> list[str]``; the protocol does not ask
        for it, so it is looked up, not required.
        """
        check = getattr(self.store, "integrity_problems", None)
        if not callable(check):
            return []
        try:
            return [str(problem) for problem in check()]
        except OppcoreError as exc:
            return [str(exc)]

    def _check_stream(
        self,
        stream_id: str,
        records: Sequence[EventRecord],
        projected: dict[str, tuple[DealVersion, ...] | None],
    ) -> str | None:
        for expected, record in enumerate(records, 1):
            if record.version != expected:
                return (
                    f"Stream {stream_id!r} holds version {record.version} where version "
                    f"{expected} belongs."
                )
        if stream_id.startswith(DEFINITION_PREFIX):
            try:
                for record in records:
                    _definition(record, stream_id[len(DEFINITION_PREFIX) :])
            except OppcoreError as exc:
                return str(exc)
            return None
        kind = next(
            (cls for cls, (prefix, _) in _SNAPSHOTS.items() if stream_id.startswith(prefix)),
            None,
        )
        try:
            if kind is None:
                projected[stream_id] = None
                projected[stream_id] = self._replay(stream_id, records).versions()
            else:
                for record in records:
                    self._decode_snapshot(record, kind)
        except OppcoreError as exc:
            return str(exc)
        return None

    # -- decoding ------------------------------------------------------------------------

    def _replay(self, stream_id: str, records: Sequence[EventRecord]) -> Opportunity:
        return self._replay_events(stream_id, [self._decode_event(r) for r in records])

    def _replay_events(self, stream_id: str, events: list[Event]) -> Opportunity:
        try:
            return Opportunity.replay(events)
        except OppcoreError as exc:
            raise CorruptStoreError(
                f"The stored history of opportunity {stream_id!r} does not replay: {exc}"
            ) from None

    def _decode_event(self, record: EventRecord) -> Event:
        cls = _EVENTS_BY_NAME.get(record.type)
        if cls is None:
            raise CorruptStoreError(
                f"Stream {record.stream_id!r} version {record.version} holds unknown event "
                f"type {short(record.type)}."
            )
        if record.type == "Opened" and "pipeline_ref" in record.payload:
            record = attrs.evolve(record, payload=self._inline(record))
        return cast(Event, _decoded(record, lambda payload: converter().structure(payload, cls)))

    def _learn(self, record: EventRecord) -> None:
        """Keep a pipeline definition met in a read of the global order (it comes before the
        deals that reference it), so decoding them needs no read of its own."""
        if record.stream_id.startswith(DEFINITION_PREFIX):
            digest = record.stream_id[len(DEFINITION_PREFIX) :]
            if digest not in self._definitions:
                self._definitions[digest] = _definition(record, digest)

    def _inline(self, record: EventRecord) -> dict[str, Any]:
        """An ``Opened`` payload with the pipeline it references put back in place."""
        digest = record.payload["pipeline_ref"]
        where = f"Stream {record.stream_id!r} version {record.version} (Opened)"
        if not isinstance(digest, str):
            raise CorruptStoreError(f"{where} names pipeline definition {short(digest)}.")
        pipeline = self._definitions.get(digest)
        if pipeline is None:
            found = self.store.read_stream(DEFINITION_PREFIX + digest)
            if not found:
                raise CorruptStoreError(
                    f"{where} names pipeline definition {digest!r}, which is not stored."
                )
            pipeline = _definition(found[0], digest)
            self._definitions[digest] = pipeline
        payload = {k: v for k, v in record.payload.items() if k != "pipeline_ref"}
        payload["pipeline"] = pipeline
        return payload

    def _decode_snapshot(self, record: EventRecord, cls: type[T]) -> T:
        """The snapshot a record holds, carrying the record's version."""
        if cls is Pipeline:
            pipeline = _decoded(record, Pipeline.from_dict)
            return cast(T, _at_version(pipeline, record.version))
        # A fresh mapping: a store may share its payloads between reads.
        return cast(
            T,
            _decoded(
                record,
                lambda payload: converter().structure({**payload, "version": record.version}, cls),
            ),
        )

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the store (for file and database stores)."""
        closer = getattr(self.store, "close", None)
        if callable(closer):
            closer()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def definition_digest(pipeline: Mapping[str, Any]) -> str:
    """The id of a pipeline definition: the SHA-256 of its canonical JSON, in hex."""
    text = json.dumps(pipeline, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _definition(record: EventRecord, digest: str) -> dict[str, Any]:
    """The pipeline payload a definition record holds, checked against its digest."""
    where = f"Pipeline definition {digest!r}"
    if record.type != DEFINITION_TYPE or record.version != 1:
        raise CorruptStoreError(
            f"{where} holds {short(record.type)} at version {record.version}, not one "
            f"{DEFINITION_TYPE}."
        )
    payload = dict(record.payload)
    if definition_digest(payload) != digest:
        raise CorruptStoreError(
            f"{where} does not match its content; it was changed after it was written."
        )
    return payload


def _row_key(row: DealVersion) -> tuple[str, int, datetime]:
    return row.opportunity_id, row.version, row.recorded_from


def _check_replace(replace: object) -> None:
    if not isinstance(replace, bool):
        raise ValidationError(f"replace must be True or False, not {short(replace)}.")


def _at_version(value: Snapshot, version: int) -> Snapshot:
    """``value`` carrying ``version``: itself when it already does."""
    return value if value.version == version else attrs.evolve(value, version=version)


def _stale(value: Lead | Campaign | Pipeline, stream_id: str, stored: int) -> ConcurrencyError:
    kind = type(value).__name__.lower()
    if value.version == 0:
        why = (
            f"your {kind} is a new value (version 0), but {kind} {value.id!r} is stored at "
            f"version {stored} with other content"
        )
    else:
        why = f"your copy was read at version {value.version}, the store is at version {stored}"
    return ConcurrencyError(
        f"{type(value).__name__} {value.id!r} was saved by someone else: {why}. Reload it with "
        f"get_{kind}() and apply your change again, or save it with replace=True to replace "
        "the stored one.",
        stream_id=stream_id,
        expected=value.version,
        actual=stored,
    )


def _decoded(record: EventRecord, decode: Callable[[Any], Any]) -> Any:
    try:
        return decode(record.payload)
    except Exception as exc:  # a damaged record must surface as one of ours
        raise CorruptStoreError(
            f"Stream {record.stream_id!r} version {record.version} ({record.type}) cannot be "
            f"read: {short(str(exc))}"
        ) from None


def event_record(event: Event) -> EventRecord:
    """The record a store keeps for one opportunity event."""
    return EventRecord(
        event.opportunity_id,
        event.version,
        type(event).__name__,
        event.at.isoformat(),
        event.recorded_at.isoformat(),
        converter().unstructure(event),
    )


_SUFFIXES: dict[str, Callable[[str], EventStore]] = {
    ".jsonl": JsonEventStore,
    ".db": SqliteEventStore,
    ".sqlite": SqliteEventStore,
    ".sqlite3": SqliteEventStore,
}


_FORMS = (
    "open_repository accepts None (in memory), '*.jsonl' (JSON Lines), '*.db', '*.sqlite' "
    "or '*.sqlite3' (SQLite), or a 'postgresql://' URL (PostgreSQL)."
)


def open_repository(
    target: str | os.PathLike[str] | None = None, *, clock: _clock.Clock | None = None
) -> Repository:
    """A repository on the store ``target`` names.

    ``None``: in memory.  ``"*.jsonl"``: a JSON Lines journal.  ``"*.db"``, ``"*.sqlite"``,
    ``"*.sqlite3"``: an SQLite database.  Files are created (mode 0600) when absent.
    ``"postgresql://..."`` (or ``"postgres://..."``): a PostgreSQL database, its schema made
    on first use (needs the ``postgres`` extra).
    """
    if target is None:
        return Repository(MemoryEventStore(), clock=clock)
    text = os.fspath(target) if isinstance(target, (str, os.PathLike)) else None
    if not isinstance(text, str):
        raise ValidationError(
            f"open_repository takes a text path or None, not {short(target)}. {_FORMS}"
        )
    lowered = text.lower()
    if lowered.startswith(("postgresql://", "postgres://")):
        from oppcore.storage.postgres import PostgresEventStore

        return Repository(PostgresEventStore(text), clock=clock)
    for suffix, store in _SUFFIXES.items():
        if lowered.endswith(suffix):
            return Repository(store(text), clock=clock)
    if "=" in text or "@" in text:
        # Most likely a connection string of some other form: it may hold a password.
        from oppcore.storage.postgres import redacted

        raise ValidationError(
            f"Cannot tell what store {redacted(text)!r} is (the rest of the connection string "
            f"is not shown: it may hold a password). {_FORMS}"
        )
    raise ValidationError(f"Cannot tell what store {short(text)} is. {_FORMS}")

"""The opportunity: an immutable, event-sourced aggregate.

Every command validates its arguments first, then builds one event, then folds it in with
``_apply``, the single place state changes.  ``Opportunity.replay`` is the same fold over a
list of events, so ``Opportunity.replay(opp.events) == opp`` holds by construction.

The fold costs the same for the 100,000th event as for the second: each value reads its
events as the first ``version`` entries of a list it shares with the values it was folded
from (``_log``), so folding one more event appends instead of copying the history, and what
a deal keeps about its lines (``_Lines``) lets a line event check ids, parents and totals in
constant time.  Reading a deal (replay, history, the deal table, ``as_of``) is linear in its
events.
"""

from __future__ import annotations

import bisect
import gc
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Context, Decimal, Inexact, InvalidOperation
from typing import Any

import attrs

from oppcore import clock as _clock
from oppcore.domain import _checks
from oppcore.domain import versions as _versions
from oppcore.domain.events import (
    UPDATABLE_FIELDS,
    Event,
    FieldsChanged,
    LineItemAdded,
    LineItemChanged,
    LineItemRemoved,
    Lost,
    Opened,
    Reopened,
    StageChanged,
    Won,
)
from oppcore.domain.history import HistoryEntry, StageInterval
from oppcore.domain.line_items import LineItem
from oppcore.domain.money import EXACT, Money, as_money, currency_code
from oppcore.domain.stages import ForecastCategory, Outcome, Pipeline, Stage
from oppcore.domain.versions import DealVersion
from oppcore.exceptions import CurrencyMismatchError, TransitionError, ValidationError

_HUNDRED = Decimal(100)
_LINE_FIELDS = ("product", "unit_price", "quantity", "discount", "kind", "description", "parent_id")


# Millions of these live in memory at once: no weak-reference slot (8 bytes each).
# eq=False: ``__eq__`` below compares the events, which live in ``_log``.
@attrs.frozen(eq=False, repr=False, weakref_slot=False)
class Opportunity:
    """One chance to sell, and everything that happened to it.

    Build one with ``Opportunity.open(...)`` (or ``Lead.convert``), change it with its
    commands, each of which returns a new value with one more event.  Never construct it
    directly: its fields are the fold of its events.
    """

    id: str
    name: str
    type: str | None
    pipeline: Pipeline
    stage_key: str
    currency: str | None
    manual_amount: Money | None
    probability: Decimal
    manual_probability: bool
    expected_close: date | None
    campaign_id: str | None
    lead_id: str | None
    lead_source: str | None
    owner: str | None
    account: str | None
    description: str
    lost_reason: str | None
    created_at: datetime
    closed_at: datetime | None
    last_open_stage: str
    version: int
    # The events are the first ``version`` entries of ``_log``: a list shared along a chain
    # of values folded one from another (each fold appends to it when it is the newest
    # value of the list, and copies the prefix otherwise), or this value's own tuple.
    _log: list[Event] | tuple[Event, ...] = attrs.field(eq=False)
    # The lines, shared with the values folded before in the same way; None when there are none.
    _lines: _Lines | None = attrs.field(eq=False)

    # -- reading -------------------------------------------------------------------------

    @property
    def events(self) -> tuple[Event, ...]:
        """The deal's events, oldest first: ``Opportunity.replay(opp.events) == opp``."""
        log = self._log
        if type(log) is tuple:
            return log
        events = tuple(log[: self.version])
        # Keep the tuple, so that reading the events again costs nothing.
        object.__setattr__(self, "_log", events)
        return events

    @property
    def line_items(self) -> tuple[LineItem, ...]:
        """The deal's lines, in the order they were added (a changed line keeps its place)."""
        return () if self._lines is None else self._lines.items()

    @property
    def _last(self) -> Event:
        """The newest event, without building the events tuple."""
        return self._log[self.version - 1]

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Opportunity:
            return NotImplemented
        assert isinstance(other, Opportunity)  # for mypy: the class check above is exact
        if self is other:
            return True
        for _, slot in _COMPARED:
            if slot.__get__(self) != slot.__get__(other):
                return False
        if self.line_items != other.line_items:
            return False
        if self._log is other._log:  # one chain: the same prefix, the versions being equal
            return True
        return self.events == other.events

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    # Values hold a pipeline with read-only mappings: unhashable, as they were under attrs.
    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, Any]:
        # Pickle only this value's events, not what other values appended to a shared log.
        state = {name: slot.__get__(self) for name, slot in _SLOTS}
        state["_log"] = self.events
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, slot in _SLOTS:
            slot.__set__(self, state[name])

    def __repr__(self) -> str:
        amount = "None" if self.amount is None else str(self.amount)
        return (
            f"<Opportunity {self.id!r} {self.name!r} stage={self.stage_key!r} "
            f"amount={amount} probability={self.probability} version={self.version}>"
        )

    @property
    def stage(self) -> Stage:
        return self.pipeline.stage(self.stage_key)

    @property
    def amount(self) -> Money | None:
        """The hand-typed amount if there is one, else the total of the lines, else None."""
        if self.manual_amount is not None:
            return self.manual_amount
        if self._lines is not None:
            return self._lines.total()
        return None

    @property
    def line_total(self) -> Money | None:
        """The exact total of the line items; None when there are none."""
        if self._lines is None:
            return None
        return self._lines.total()

    @property
    def amount_is_manual(self) -> bool:
        return self.manual_amount is not None

    @property
    def expected_revenue(self) -> Money | None:
        """``amount x probability / 100``, exact; None while the amount is unknown."""
        amount = self.amount
        if amount is None:
            return None
        factor = EXACT.divide(self.probability, _HUNDRED)
        return Money._exact(EXACT.multiply(amount.amount, factor), amount.currency)

    @property
    def forecast_category(self) -> ForecastCategory:
        return self.stage.forecast_category

    @property
    def is_open(self) -> bool:
        return self.stage.outcome is Outcome.OPEN

    @property
    def is_won(self) -> bool:
        return self.stage.outcome is Outcome.WON

    @property
    def is_lost(self) -> bool:
        return self.stage.outcome is Outcome.LOST

    @property
    def is_closed(self) -> bool:
        return self.stage.outcome is not Outcome.OPEN

    def line_item(self, item_id: str) -> LineItem:
        """The line ``item_id``, or ``ValidationError``."""
        item = None if self._lines is None else self._lines.get(item_id)
        if item is None:
            raise ValidationError(
                f"Opportunity {self.id!r} has no line item {_checks.short(item_id)}."
            )
        return item

    def missing_for(self, stage: Stage) -> tuple[str, ...]:
        """The fields ``stage`` requires that this deal lacks."""
        return tuple(name for name in stage.required if _is_blank(self._field(name)))

    def _field(self, name: str) -> object:
        return self.amount if name == "amount" else getattr(self, name)

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        *,
        name: str,
        pipeline: Pipeline | None = None,
        stage: str | None = None,
        type: str | None = None,
        amount: Money | None = None,
        currency: str | None = None,
        probability: Decimal | int | str | None = None,
        expected_close: date | None = None,
        campaign_id: str | None = None,
        lead_id: str | None = None,
        lead_source: str | None = None,
        owner: str | None = None,
        account: str | None = None,
        description: str = "",
        line_items: Iterable[LineItem] = (),
        id: str | None = None,
        at: datetime | None = None,
        by: str | None = None,
        clock: _clock.Clock | None = None,
    ) -> Opportunity:
        """Open a new deal, by default in the pipeline's first stage at its probability."""
        name = _checks.text(name, "Opportunity name", allow_empty=False)
        if pipeline is None:
            pipeline = Pipeline.default()
        elif not isinstance(pipeline, Pipeline):
            raise ValidationError(f"pipeline must be a Pipeline, not {_checks.short(pipeline)}.")
        target = pipeline.first_stage if stage is None else pipeline.stage(stage)
        opp_id = (
            str(uuid.uuid4())
            if id is None
            else _checks.text(id, "Opportunity id", allow_empty=False)
        )
        manual = None if amount is None else as_money(amount, "Amount")
        items = _line_items(line_items)
        code = None if currency is None else currency_code(currency)
        code = _common_currency(code, manual, items)
        chance, hand_set = _opening_probability(target, probability)
        fields: dict[str, Any] = {
            "type": _checks.optional_text(type, "Type"),
            "expected_close": _checks.optional_day(expected_close, "Expected close"),
            "campaign_id": _checks.optional_text(campaign_id, "Campaign id"),
            "lead_id": _checks.optional_text(lead_id, "Lead id"),
            "lead_source": _checks.optional_text(lead_source, "Lead source"),
            "owner": _checks.optional_text(owner, "Owner"),
            "account": _checks.optional_text(account, "Account"),
            "description": _checks.text(description, "Description"),
        }
        when, recorded = _stamp(at, clock, previous=None)
        event = Opened._trusted(
            opportunity_id=opp_id,
            version=1,
            at=when,
            recorded_at=recorded,
            by=_checks.optional_text(by, "by"),
            name=name,
            pipeline=pipeline,
            stage=target.key,
            probability=chance,
            manual_probability=hand_set,
            currency=code,
            amount=manual,
            line_items=items,
            **fields,
        )
        opp = _opened(event)
        missing = opp.missing_for(target)
        if missing:
            raise TransitionError(
                f"Opportunity {opp_id!r} cannot open in {target.key!r}: it lacks "
                f"{', '.join(missing)}.",
                opportunity_id=opp_id,
                to_stage=target.key,
                missing=missing,
            )
        return opp

    # -- stage commands ------------------------------------------------------------------

    def move_to(
        self,
        stage_key: str,
        *,
        probability: Decimal | int | str | None = None,
        at: datetime | None = None,
        by: str | None = None,
        clock: _clock.Clock | None = None,
    ) -> Opportunity:
        """Move to ``stage_key``; the probability becomes the stage's unless given here."""
        target = self.pipeline.stage(stage_key)
        if target.key == self.stage_key:
            if probability is None:
                return self
            return self.update(probability=probability, at=at, by=by, clock=clock)
        return self._change_stage(target, probability, None, at, by, clock)

    def win(
        self,
        *,
        stage: str | None = None,
        at: datetime | None = None,
        by: str | None = None,
        clock: _clock.Clock | None = None,
    ) -> Opportunity:
        """Close as won, in the pipeline's first won stage unless ``stage`` names another."""
        target = self.pipeline.won_stages[0] if stage is None else self.pipeline.stage(stage)
        if not target.is_won:
            raise ValidationError(
                f"Stage {target.key!r} is not a won stage, so win() cannot use it."
            )
        if self.is_won and (stage is None or target.key == self.stage_key):
            return self
        return self._change_stage(target, None, None, at, by, clock)

    def lose(
        self,
        *,
        reason: str | None = None,
        stage: str | None = None,
        at: datetime | None = None,
        by: str | None = None,
        clock: _clock.Clock | None = None,
    ) -> Opportunity:
        """Close as lost, in the pipeline's first lost stage unless ``stage`` names another."""
        reason = _checks.optional_text(reason, "Lost reason")
        target = self.pipeline.lost_stages[0] if stage is None else self.pipeline.stage(stage)
        if not target.is_lost:
            raise ValidationError(
                f"Stage {target.key!r} is not a lost stage, so lose() cannot use it."
            )
        if self.is_lost:
            if reason is not None and reason != self.lost_reason:
                raise TransitionError(
                    f"Opportunity {self.id!r} is already lost ({self.lost_reason!r}); "
                    "reopen it to record another reason.",
                    opportunity_id=self.id,
                    from_stage=self.stage_key,
                    to_stage=target.key,
                )
            if stage is None or target.key == self.stage_key:
                return self
        return self._change_stage(target, None, reason, at, by, clock)

    def reopen(
        self,
        *,
        stage: str | None = None,
        at: datetime | None = None,
        by: str | None = None,
        clock: _clock.Clock | None = None,
    ) -> Opportunity:
        """Take a closed deal back to an open stage: by default the one it closed from."""
        if not self.is_closed:
            raise TransitionError(
                f"Opportunity {self.id!r} is open in {self.stage_key!r}; only a closed deal reopens.",
                opportunity_id=self.id,
                from_stage=self.stage_key,
            )
        target = self.pipeline.stage(self.last_open_stage if stage is None else stage)
        if not target.is_open:
            raise TransitionError(
                f"Opportunity {self.id!r} cannot reopen into closed stage {target.key!r}.",
                opportunity_id=self.id,
                from_stage=self.stage_key,
                to_stage=target.key,
            )
        self._check_required(target)
        when, recorded = _stamp(at, clock, previous=self)
        event = Reopened._trusted(
            opportunity_id=self.id,
            version=self.version + 1,
            at=when,
            recorded_at=recorded,
            by=_checks.optional_text(by, "by"),
            from_stage=self.stage_key,
            to_stage=target.key,
            probability=target.probability,
        )
        return self._apply(event)

    def _change_stage(
        self,
        target: Stage,
        probability: Decimal | int | str | None,
        reason: str | None,
        at: datetime | None,
        by: str | None,
        clock: _clock.Clock | None,
    ) -> Opportunity:
        source = self.stage
        if not source.is_open and target.outcome is not source.outcome:
            how = (
                "reopen it first"
                if target.is_open
                else f"reopen it before it can be {target.outcome.value}"
            )
            raise TransitionError(
                f"Can't move opportunity {self.id!r} from {source.key!r} to {target.key!r}: {how}.",
                opportunity_id=self.id,
                from_stage=source.key,
                to_stage=target.key,
            )
        if not self.pipeline.may_move(source.key, target.key):
            allowed = ", ".join(
                repr(key) for key in (self.pipeline.transitions or {}).get(source.key, ())
            )
            raise TransitionError(
                f"Pipeline {self.pipeline.id!r} does not allow a move from {source.key!r} to "
                f"{target.key!r}; from {source.key!r} a deal may go to {allowed}.",
                opportunity_id=self.id,
                from_stage=source.key,
                to_stage=target.key,
            )
        self._check_required(target)
        chance, hand_set = self._probability_after_move(target, probability)
        when, recorded = _stamp(at, clock, previous=self)
        common: dict[str, Any] = {
            "opportunity_id": self.id,
            "version": self.version + 1,
            "at": when,
            "recorded_at": recorded,
            "by": _checks.optional_text(by, "by"),
            "from_stage": source.key,
            "to_stage": target.key,
        }
        event: Event
        if source.is_open and target.is_won:
            event = Won._trusted(**common)
        elif source.is_open and target.is_lost:
            event = Lost._trusted(reason=reason, **common)
        else:
            event = StageChanged._trusted(probability=chance, manual_probability=hand_set, **common)
        return self._apply(event)

    def _probability_after_move(
        self, target: Stage, probability: Decimal | int | str | None
    ) -> tuple[Decimal, bool]:
        if probability is not None:
            chance = _checks.percentage(probability, "Probability")
            if not target.is_open and chance != target.probability:
                raise ValidationError(
                    f"A deal in {target.outcome.value} stage {target.key!r} has probability "
                    f"{target.probability}, not {chance}."
                )
            return chance, target.is_open
        if target.is_open and self.manual_probability and self.pipeline.keep_manual_probability:
            return self.probability, True
        return target.probability, False

    def _check_required(self, target: Stage) -> None:
        missing = self.missing_for(target)
        if missing:
            raise TransitionError(
                f"Opportunity {self.id!r} cannot enter {target.key!r}: it lacks {', '.join(missing)}.",
                opportunity_id=self.id,
                from_stage=self.stage_key,
                to_stage=target.key,
                missing=missing,
            )

    # -- field commands ------------------------------------------------------------------

    def update(
        self,
        *,
        at: datetime | None = None,
        by: str | None = None,
        clock: _clock.Clock | None = None,
        **changes: Any,
    ) -> Opportunity:
        """Change plain fields: name, type, amount, currency, probability, expected_close,
        campaign_id, lead_id, lead_source, owner, account, description.

        ``amount=Money(...)`` sets a hand-typed amount; ``amount=None`` goes back to the
        line total.  ``probability=None`` goes back to the stage's default.
        """
        unknown = sorted(set(changes) - set(UPDATABLE_FIELDS))
        if unknown:
            hint = " (use move_to, win, lose or reopen)" if unknown[0] == "stage" else ""
            raise ValidationError(
                f"update() cannot change {unknown[0]!r}{hint}; it changes "
                f"{', '.join(UPDATABLE_FIELDS)}."
            )
        new = {name: _clean_field(name, value) for name, value in changes.items()}
        changed: dict[str, Any] = {}
        for name in UPDATABLE_FIELDS:
            if name not in new:
                continue
            value = new[name]
            if name == "amount":
                if value != self.manual_amount:
                    changed[name] = value
            elif name == "probability":
                if value is None:
                    if self.manual_probability or self.probability != self.stage.probability:
                        changed[name] = None
                elif value != self.probability:
                    if not self.is_open:
                        raise ValidationError(
                            f"Opportunity {self.id!r} is {self.stage.outcome.value}, so its "
                            f"probability stays {self.probability}; it cannot be {value}."
                        )
                    changed[name] = value
            elif value != getattr(self, name):
                changed[name] = value
        currency = changed.get("currency", self.currency)
        amount = changed.get("amount", self.manual_amount)
        if amount is not None and currency is None:
            currency = changed["currency"] = amount.currency
        if currency == self.currency:
            changed.pop("currency", None)
        if amount is not None and amount.currency != currency:
            raise CurrencyMismatchError(
                f"Amount {amount!r} is not in the currency of opportunity {self.id!r}, {currency!r}."
            )
        lines = self._lines
        if "currency" in changed and lines is not None and lines.currency != currency:
            raise CurrencyMismatchError(
                f"Opportunity {self.id!r} has line items in {lines.currency!r}; "
                f"its currency cannot become {currency!r}."
            )
        if not changed:
            return self
        when, recorded = _stamp(at, clock, previous=self)
        ordered = tuple(name for name in UPDATABLE_FIELDS if name in changed)
        event = FieldsChanged._trusted(
            opportunity_id=self.id,
            version=self.version + 1,
            at=when,
            recorded_at=recorded,
            by=_checks.optional_text(by, "by"),
            fields=ordered,
            **changed,
        )
        return self._apply(event)

    def add_line_item(
        self,
        item: LineItem,
        *,
        at: datetime | None = None,
        by: str | None = None,
        clock: _clock.Clock | None = None,
    ) -> Opportunity:
        """Add a product, add-on or service line in the deal's currency."""
        if not isinstance(item, LineItem):
            raise ValidationError(f"add_line_item takes a LineItem, not {_checks.short(item)}.")
        # Every line is in the deal's currency already: the new one is all there is to check.
        _common_currency(self.currency, self.manual_amount, (item,))
        if self._lines is not None and self._lines.get(item.id) is not None:
            raise ValidationError(f"Opportunity {self.id!r} already has line item {item.id!r}.")
        self._check_parent(item)
        when, recorded = _stamp(at, clock, previous=self)
        event = LineItemAdded._trusted(
            opportunity_id=self.id,
            version=self.version + 1,
            at=when,
            recorded_at=recorded,
            by=_checks.optional_text(by, "by"),
            item=item,
        )
        return self._apply(event)

    def remove_line_item(
        self,
        item_id: str,
        *,
        at: datetime | None = None,
        by: str | None = None,
        clock: _clock.Clock | None = None,
    ) -> Opportunity:
        """Remove a line; a line with add-ons attached must lose its add-ons first."""
        item = self.line_item(item_id)
        children = self._children(item.id)
        if children:
            raise ValidationError(
                f"Line item {item.id!r} has add-ons {', '.join(map(repr, children))}; remove them first."
            )
        when, recorded = _stamp(at, clock, previous=self)
        event = LineItemRemoved._trusted(
            opportunity_id=self.id,
            version=self.version + 1,
            at=when,
            recorded_at=recorded,
            by=_checks.optional_text(by, "by"),
            item_id=item.id,
        )
        return self._apply(event)

    def update_line_item(
        self,
        item_id: str,
        *,
        at: datetime | None = None,
        by: str | None = None,
        clock: _clock.Clock | None = None,
        **changes: Any,
    ) -> Opportunity:
        """Change a line's product, unit_price, quantity, discount, kind, description or parent_id."""
        item = self.line_item(item_id)
        unknown = sorted(set(changes) - set(_LINE_FIELDS))
        if unknown:
            raise ValidationError(
                f"update_line_item() cannot change {unknown[0]!r}; it changes {', '.join(_LINE_FIELDS)}."
            )
        new_item = attrs.evolve(item, **changes)
        if new_item == item:
            return self
        _common_currency(self.currency, self.manual_amount, (new_item,))
        self._check_parent(new_item)
        if new_item.parent_id is not None:
            children = self._children(item.id)
            if children:
                raise ValidationError(
                    f"Line item {item.id!r} has add-ons {', '.join(map(repr, children))}, so it "
                    "cannot become an add-on itself."
                )
        when, recorded = _stamp(at, clock, previous=self)
        event = LineItemChanged._trusted(
            opportunity_id=self.id,
            version=self.version + 1,
            at=when,
            recorded_at=recorded,
            by=_checks.optional_text(by, "by"),
            item=new_item,
        )
        return self._apply(event)

    def _children(self, item_id: str) -> list[str]:
        """The ids of the add-ons of line ``item_id``; looked for only when it has any."""
        if self._lines is None or not self._lines.has_children(item_id):
            return []
        return [child.id for child in self.line_items if child.parent_id == item_id]

    def _check_parent(self, item: LineItem) -> None:
        if item.parent_id is None:
            return
        parent = None if self._lines is None else self._lines.get(item.parent_id)
        if parent is None:
            raise ValidationError(
                f"Line item {item.id!r} names parent {item.parent_id!r}, which opportunity "
                f"{self.id!r} does not have."
            )
        if parent.parent_id is not None:
            raise ValidationError(
                f"Line item {item.id!r} names parent {parent.id!r}, which is itself an add-on."
            )

    # -- the fold ------------------------------------------------------------------------

    @classmethod
    def replay(cls, events: Iterable[Event]) -> Opportunity:
        """Rebuild the opportunity from its events; ``replay(opp.events) == opp``."""
        if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Iterable):
            raise ValidationError(f"replay() takes a list of events, not {_checks.short(events)}.")
        iterator = iter(events)
        first = next(iterator, None)
        if not isinstance(first, Opened):
            raise ValidationError(
                f"An opportunity's history starts with Opened, not {_checks.short(first)}."
            )
        if first.version != 1:
            raise ValidationError(f"Opened must be version 1, not {_checks.short(first.version)}.")
        return _opened(first)._extended(iterator)

    def _extended(self, events: Iterable[Event]) -> Opportunity:
        """The deal after ``events``, its next ones: ``replay((*self.events, *events))``,
        folding only the new events (a repository catching up on a store)."""
        opp = self
        for event in events:
            opp = opp._apply(event)
        opp.events  # noqa: B018 - the value keeps its own tuple, not the fold's shared list
        return opp

    def _apply(self, event: Event) -> Opportunity:
        """Fold one event into a new value; checks that it is this deal's next event.

        Events may come from outside (a store, a file, a hand-built list), so the fold
        checks every field it uses rather than trusting them.
        """
        if not isinstance(event, _EVENT_CLASSES) or isinstance(event, Opened):
            raise ValidationError(f"{_checks.short(event)} cannot follow version {self.version}.")
        if event.opportunity_id != self.id:
            raise ValidationError(
                f"Event for {event.opportunity_id!r} cannot apply to opportunity {self.id!r}."
            )
        if event.version != self.version + 1:
            raise ValidationError(
                f"Event version {event.version!r} does not follow version {self.version} of "
                f"opportunity {self.id!r}."
            )
        previous = self._last
        if event.at < previous.at:
            raise ValidationError(
                f"Event at {event.at.isoformat()} is before the previous event at "
                f"{previous.at.isoformat()}."
            )
        updates: dict[str, Any] = {}
        if isinstance(event, (StageChanged, Won, Lost, Reopened)):
            if event.from_stage != self.stage_key:
                raise ValidationError(
                    f"Event moves from {event.from_stage!r}, but opportunity {self.id!r} is in "
                    f"{self.stage_key!r}."
                )
            target = self.pipeline.stage(event.to_stage)
            _check_stage_event(event, self.stage, target)
            updates["stage_key"] = target.key
            if target.is_open:
                updates["last_open_stage"] = target.key
            if isinstance(event, (StageChanged, Reopened)):
                updates["probability"] = event.probability
                updates["manual_probability"] = event.manual_probability
            else:
                updates["probability"] = target.probability
                updates["manual_probability"] = False
                updates["closed_at"] = event.at
            if isinstance(event, Lost):
                updates["lost_reason"] = event.reason
            if isinstance(event, Reopened):
                updates["closed_at"] = None
                updates["lost_reason"] = None
        elif isinstance(event, FieldsChanged):
            # The event checked its own fields when it was built.
            for name in event.fields:
                value = getattr(event, name)
                if name == "amount":
                    updates["manual_amount"] = value
                elif name == "probability":
                    updates["probability"] = self.stage.probability if value is None else value
                    updates["manual_probability"] = value is not None
                else:
                    updates[name] = value
        else:
            updates["_lines"] = self._lines_after(event)
        if {"currency", "manual_amount", "_lines"} & updates.keys():
            # The lines share the deal's currency already (the fold keeps it so): a changed
            # currency or amount is checked against the first line, a new line on its own.
            if isinstance(event, (LineItemAdded, LineItemChanged)):
                checked: Sequence[LineItem] = (event.item,)
            else:
                checked = () if self._lines is None else (self._lines.first,)
            updates["currency"] = _common_currency(
                updates.get("currency", self.currency),
                updates.get("manual_amount", self.manual_amount),
                checked,
            )
        updates["_log"] = _appended(self._log, self.version, event)
        updates["version"] = event.version
        # Not attrs.evolve: replay comes here once per event, and every field is already
        # checked, so copy the slots directly (measurably faster on large loads).
        new = object.__new__(Opportunity)
        for name, slot in _SLOTS:
            slot.__set__(new, updates[name] if name in updates else slot.__get__(self))
        return new

    def _lines_after(
        self, event: LineItemAdded | LineItemRemoved | LineItemChanged
    ) -> _Lines | None:
        """The lines after a line event, checked as ``_line_items`` checks a whole list."""
        lines = self._lines
        if isinstance(event, LineItemAdded):
            item = event.item
            if lines is not None and lines.get(item.id) is not None:
                raise ValidationError(f"Line item id {item.id!r} appears twice.")
            self._check_fold_parent(item)
            return _Lines.added(lines, item)
        if isinstance(event, LineItemRemoved):
            old = self.line_item(event.item_id)
            assert lines is not None  # line_item found the line
            if lines.has_children(old.id):
                child = next(i for i in lines.items() if i.parent_id == old.id)
                raise ValidationError(
                    f"Line item {child.id!r} names parent {old.id!r}, which is not among the lines."
                )
            return lines.removed(old)
        item = event.item
        old = self.line_item(item.id)
        assert lines is not None  # line_item found the line
        self._check_fold_parent(item)
        if item.parent_id is not None and lines.has_children(item.id):
            child = next(i for i in lines.items() if i.parent_id == item.id)
            raise ValidationError(
                f"Line item {child.id!r} names parent {item.id!r}, which is itself an add-on."
            )
        return lines.changed(old, item)

    def _check_fold_parent(self, item: LineItem) -> None:
        if item.parent_id is None:
            return
        parent = None if self._lines is None else self._lines.get(item.parent_id)
        if parent is None:
            raise ValidationError(
                f"Line item {item.id!r} names parent {item.parent_id!r}, which is not among the lines."
            )
        if parent.parent_id is not None:
            raise ValidationError(
                f"Line item {item.id!r} names parent {parent.id!r}, which is itself an add-on."
            )

    def _states(self) -> Iterator[Opportunity]:
        """The deal right after each of its events, oldest first: one fold, linear."""
        events = self.events
        state = _opened(events[0])  # type: ignore[arg-type]  # replay checked it
        yield state
        for event in events[1:]:
            state = state._apply(event)
            yield state

    # -- history -------------------------------------------------------------------------

    def history(self) -> tuple[HistoryEntry, ...]:
        """The state after each event, with what changed (knock-on changes included)."""
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._history()
        finally:
            # Several objects per event and no garbage cycles: the cyclic collector would walk
            # the growing result again and again (a third of the time at 100,000 events), so
            # it is paused, as Repository pauses it for bulk loads, and restored as it was.
            if collecting:
                gc.enable()

    def _history(self) -> tuple[HistoryEntry, ...]:
        entries = []
        before: dict[str, Any] | None = None
        for event, state in zip(self.events, self._states(), strict=True):
            after = state._snapshot()
            if before is None:
                before = dict.fromkeys(after)
            changes = {k: (before[k], v) for k, v in after.items() if _differs(before[k], v)}
            entries.append(
                HistoryEntry(
                    version=event.version,
                    at=event.at,
                    recorded_at=event.recorded_at,
                    by=event.by,
                    event=type(event).__name__,
                    stage=state.stage_key,
                    amount=state.amount,
                    probability=state.probability,
                    expected_revenue=state.expected_revenue,
                    expected_close=state.expected_close,
                    forecast_category=state.forecast_category,
                    changes=changes,
                )
            )
            before = after
        return tuple(entries)

    def _snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stage": self.stage_key,
            "currency": self.currency,
            "amount": self.amount,
            "amount_is_manual": self.amount_is_manual,
            "probability": self.probability,
            "expected_revenue": self.expected_revenue,
            "forecast_category": self.forecast_category,
            "expected_close": self.expected_close,
            "campaign_id": self.campaign_id,
            "lead_id": self.lead_id,
            "lead_source": self.lead_source,
            "owner": self.owner,
            "account": self.account,
            "description": self.description,
            "lost_reason": self.lost_reason,
            "closed_at": self.closed_at,
            "line_items": self.line_items,
        }

    def versions(self) -> tuple[DealVersion, ...]:
        """The deal's rows in the deal table: one per state, in valid and recorded time.

        See ``oppcore.domain.versions`` for the rule: the rows standing at ``t`` as known at
        ``k`` are exactly ``self.as_known_at(k).as_of(t)`` for every ``t <= k``.
        """
        return _versions.versions(self)

    def stage_timeline(self) -> tuple[StageInterval, ...]:
        """Each stretch of time in one stage, in order; the last is open-ended."""
        intervals: list[StageInterval] = []
        stage, entered = self.events[0].stage, self.events[0].at  # type: ignore[union-attr]
        for event in self.events[1:]:
            if isinstance(event, (StageChanged, Won, Lost, Reopened)):
                intervals.append(StageInterval(stage, entered, event.at))
                stage, entered = event.to_stage, event.at
        intervals.append(StageInterval(stage, entered, None))
        return tuple(intervals)

    def time_in_stage(
        self, now: datetime | None = None, clock: _clock.Clock | None = None
    ) -> dict[str, timedelta]:
        """Time spent in each stage up to ``now``, revisits added; the current stage counts to now."""
        end = _checks.aware(_clock.resolve(clock).now() if now is None else now, "now")
        totals: dict[str, timedelta] = {}
        for interval in self.stage_timeline():
            if interval.entered_at > end:
                break
            stop = end if interval.exited_at is None else min(interval.exited_at, end)
            totals[interval.stage] = totals.get(interval.stage, timedelta()) + (
                stop - interval.entered_at
            )
        return totals

    def as_of(self, t: datetime) -> Opportunity | None:
        """The deal as it was at valid time ``t``; None before it opened."""
        moment = _checks.aware(t, "as_of time")
        count = bisect.bisect_right([event.at for event in self.events], moment)
        return self._prefix(count)

    def as_known_at(self, t: datetime) -> Opportunity | None:
        """The deal as oppcore had recorded it by ``t``; None before it was recorded."""
        moment = _checks.aware(t, "known_at time")
        count = 0
        for event in self.events:
            if event.recorded_at > moment:
                break
            count += 1
        return self._prefix(count)

    def _prefix(self, count: int) -> Opportunity | None:
        if count == 0:
            return None
        if count == self.version:
            return self
        return Opportunity.replay(self.events[:count])


# The slot descriptors of every field, for the fold's direct copy, and of those ``==`` compares
# (cheap ones first; the events last, in ``__eq__``).
_SLOTS = tuple((field.name, vars(Opportunity)[field.name]) for field in attrs.fields(Opportunity))
_COMPARED = tuple((name, slot) for name, slot in _SLOTS if name not in ("_log", "_lines"))


def _appended(log: list[Event] | tuple[Event, ...], count: int, event: Event) -> list[Event]:
    """The log of the value after ``event``: ``log``'s first ``count`` events, then ``event``.

    When the value folding is the newest of a shared list, the event is appended in place
    (constant time); the other values on the list read only their own prefix, so they do
    not see it.  Otherwise (a second command on an older value, or a value that keeps its
    own tuple) the prefix is copied once.  ``list.append`` is atomic, and the slot is ours
    only if our event is the one that landed at ``count``: two threads folding onto one
    value each get a correct log, whoever appended first.
    """
    if type(log) is list and len(log) == count:
        log.append(event)
        if log[count] is event:
            return log
    fresh = list(log[:count])
    fresh.append(event)
    return fresh


class _LineLog:
    """The lines of a chain of values, shared and only ever appended to.

    Each value reads the first ``count`` lines of ``items`` (see ``_Lines``).  ``position``
    maps a line id to its index in ``items``; ``children`` a parent line's id to the indexes
    of its add-ons, in increasing order.  Only the value that appended a line writes its
    entries, after it has made sure the slot is its own (see ``_appended``).
    """

    __slots__ = ("children", "items", "position")

    def __init__(self, items: Iterable[LineItem]) -> None:
        self.items = list(items)
        self.position = {item.id: index for index, item in enumerate(self.items)}
        self.children: dict[str, list[int]] = {}
        for index, item in enumerate(self.items):
            if item.parent_id is not None:
                self.children.setdefault(item.parent_id, []).append(index)


class _Lines:
    """A deal's lines: the first ``count`` lines of a shared ``_LineLog``.

    Adding a line to the newest value of a log appends to it (constant time), as events are
    appended to ``_log``; removing or changing one copies the log (linear in the lines, in C
    where it can).  The tuple ``Opportunity.line_items`` is built on first use and kept.
    The total is kept as the exact sum with a count of the line totals' exponents: summing
    the line totals in order gives that exact value at the smallest exponent, so a removed
    or changed line is subtracted, not everything added up again.  Immutable from outside;
    the lazy parts fill in once (the same values whichever thread fills them).
    """

    __slots__ = ("_exponents", "_items", "_sum", "count", "log")

    def __init__(
        self, log: _LineLog, count: int, total: tuple[Decimal, dict[int, int]] | None = None
    ) -> None:
        self.log = log
        self.count = count
        self._items: tuple[LineItem, ...] | None = None
        self._sum: Decimal | None = None if total is None else total[0]
        self._exponents: dict[int, int] | None = None if total is None else total[1]

    @classmethod
    def of(cls, items: Sequence[LineItem]) -> _Lines | None:
        return _Lines(_LineLog(items), len(items)) if items else None

    def __reduce__(self) -> tuple[Callable[..., _Lines | None], tuple[tuple[LineItem, ...]]]:
        return (_Lines.of, (self.items(),))

    def items(self) -> tuple[LineItem, ...]:
        if self._items is None:
            self._items = tuple(self.log.items[: self.count])
        return self._items

    @property
    def first(self) -> LineItem:
        return self.log.items[0]

    @property
    def currency(self) -> str:
        return self.log.items[0].currency

    def get(self, item_id: object) -> LineItem | None:
        if not isinstance(item_id, str):
            return None
        index = self.log.position.get(item_id)
        if index is None or index >= self.count:
            return None
        return self.log.items[index]

    def has_children(self, item_id: str) -> bool:
        indexes = self.log.children.get(item_id)
        return bool(indexes) and indexes[0] < self.count  # type: ignore[index]

    def _total(self) -> tuple[Decimal, dict[int, int]]:
        if self._sum is None or self._exponents is None:
            items = self.items()
            result = items[0].total
            for item in items[1:]:
                result = result + item.total
            exponents: dict[int, int] = {}
            for item in items:
                exponent = _exponent(item.total.amount)
                exponents[exponent] = exponents.get(exponent, 0) + 1
            self._sum, self._exponents = result.amount, exponents
        return self._sum, self._exponents

    def total(self) -> Money:
        return Money._exact(self._total()[0], self.currency)

    def _known_total(self) -> tuple[Decimal, dict[int, int]] | None:
        if self._sum is None or self._exponents is None:
            return None
        return self._sum, self._exponents

    @staticmethod
    def added(lines: _Lines | None, item: LineItem) -> _Lines:
        if lines is None:
            return _Lines(_LineLog((item,)), 1)
        known = lines._known_total()
        total = None
        if known is not None:
            # The same sum as adding up all the lines again: the new line comes last.
            amount = (Money._exact(known[0], item.currency) + item.total).amount
            total = (amount, _counted(known[1], _exponent(item.total.amount), 1))
        log, count = lines.log, lines.count
        if len(log.items) == count:
            log.items.append(item)
            if log.items[count] is item:  # the slot is ours (see _appended)
                log.position[item.id] = count
                if item.parent_id is not None:
                    log.children.setdefault(item.parent_id, []).append(count)
                return _Lines(log, count + 1, total)
        return _Lines(_LineLog((*lines.items(), item)), count + 1, total)

    def removed(self, item: LineItem) -> _Lines | None:
        kept = [line for line in self.items() if line.id != item.id]
        if not kept:
            return None
        return _Lines(_LineLog(kept), len(kept), self._without(self._known_total(), item))

    def changed(self, old: LineItem, new: LineItem) -> _Lines:
        items = list(self.items())
        items[self.log.position[old.id]] = new
        total = self._without(self._known_total(), old)
        if total is not None:
            amount = (Money._exact(total[0], new.currency) + new.total).amount
            total = (amount, _counted(total[1], _exponent(new.total.amount), 1))
        return _Lines(_LineLog(items), len(items), total)

    @staticmethod
    def _without(
        known: tuple[Decimal, dict[int, int]] | None, item: LineItem
    ) -> tuple[Decimal, dict[int, int]] | None:
        """The total less ``item``'s, at the exponent summing the other lines gives."""
        if known is None:
            return None
        amount = (Money._exact(known[0], item.currency) - item.total).amount
        exponents = _counted(known[1], _exponent(item.total.amount), -1)
        if not exponents or amount.is_zero():
            return None  # the sign of a zero sum depends on the lines: add them up again
        quantum = Decimal(1).scaleb(min(exponents))
        return amount.quantize(quantum, context=_REQUANTIZE), exponents


# Re-expressing an exact sum at a larger exponent only drops trailing zeros (decimal signals
# Rounded for that): trap anything inexact.
_REQUANTIZE = Context(prec=3 * _checks.EXACT_DIGITS + 8, traps=[InvalidOperation, Inexact])


def _exponent(amount: Decimal) -> int:
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)  # line totals are finite
    return exponent


def _counted(counts: dict[int, int], key: int, step: int) -> dict[int, int]:
    result = dict(counts)
    value = result.get(key, 0) + step
    if value:
        result[key] = value
    else:
        del result[key]
    return result


_EVENT_CLASSES = (
    Opened,
    StageChanged,
    FieldsChanged,
    LineItemAdded,
    LineItemRemoved,
    LineItemChanged,
    Won,
    Lost,
    Reopened,
)


def _opened(event: Opened) -> Opportunity:
    if not isinstance(event, Opened):
        raise ValidationError(
            f"An opportunity's history starts with Opened, not {_checks.short(event)}."
        )
    stage = event.pipeline.stage(event.stage)
    closed = not stage.is_open
    probability = event.probability
    if closed and probability != stage.probability:
        raise ValidationError(
            f"Opened in {stage.key!r} with probability {probability}; that stage has "
            f"{stage.probability}."
        )
    manual = event.amount
    items = _line_items(event.line_items)
    currency = _common_currency(event.currency, manual, items)
    return Opportunity(
        id=event.opportunity_id,
        name=event.name,
        type=event.type,
        pipeline=event.pipeline,
        stage_key=stage.key,
        currency=currency,
        manual_amount=manual,
        probability=probability,
        manual_probability=event.manual_probability,
        expected_close=event.expected_close,
        campaign_id=event.campaign_id,
        lead_id=event.lead_id,
        lead_source=event.lead_source,
        owner=event.owner,
        account=event.account,
        description=event.description,
        lost_reason=None,
        created_at=event.at,
        closed_at=event.at if closed else None,
        last_open_stage=stage.key if stage.is_open else event.pipeline.first_stage.key,
        version=1,
        log=[event],
        lines=_Lines.of(items),
    )


def _check_stage_event(
    event: StageChanged | Won | Lost | Reopened, source: Stage, target: Stage
) -> None:
    """A stage event's class must match the move it records, so replay keeps the invariants."""
    if isinstance(event, Won):
        fits = source.is_open and target.is_won
    elif isinstance(event, Lost):
        fits = source.is_open and target.is_lost
    elif isinstance(event, Reopened):
        fits = not source.is_open and target.is_open
    else:
        fits = source.key != target.key and source.outcome is target.outcome
    if not fits:
        raise ValidationError(
            f"{type(event).__name__} cannot record a move from {source.key!r} to {target.key!r}."
        )
    if (
        isinstance(event, (StageChanged, Reopened))
        and not target.is_open
        and event.probability != target.probability
    ):
        raise ValidationError(
            f"{target.key!r} has probability {target.probability}, not {event.probability}."
        )


def _stamp(
    at: datetime | None, clock: _clock.Clock | None, *, previous: Opportunity | None
) -> tuple[datetime, datetime]:
    """``(at, recorded_at)`` for a new event, checked against the clock and the last event."""
    recorded = _checks.aware(_clock.resolve(clock).now(), "The clock's time")
    when = recorded if at is None else _checks.aware(at, "Event time")
    if when > recorded:
        raise ValidationError(
            f"Event time {when.isoformat()} is in the future (the clock says {recorded.isoformat()})."
        )
    if previous is not None and when < previous._last.at:
        raise ValidationError(
            f"Event time {when.isoformat()} is before the previous event of opportunity "
            f"{previous.id!r}, at {previous._last.at.isoformat()}."
        )
    return when, recorded


def _opening_probability(stage: Stage, probability: object) -> tuple[Decimal, bool]:
    if probability is None:
        return stage.probability, False
    chance = _checks.percentage(probability, "Probability")
    if not stage.is_open:
        if chance != stage.probability:
            raise ValidationError(
                f"A deal in {stage.outcome.value} stage {stage.key!r} has probability "
                f"{stage.probability}, not {chance}."
            )
        return chance, False
    return chance, True


def _line_items(value: object) -> tuple[LineItem, ...]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ValidationError(f"line_items must be a list of LineItem, not {_checks.short(value)}.")
    items = tuple(value)
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, LineItem):
            raise ValidationError(f"Line item {_checks.short(item)} is not a LineItem.")
        if item.id in seen:
            raise ValidationError(f"Line item id {item.id!r} appears twice.")
        seen.add(item.id)
    by_id = {item.id: item for item in items}
    for item in items:
        if item.parent_id is not None:
            parent = by_id.get(item.parent_id)
            if parent is None:
                raise ValidationError(
                    f"Line item {item.id!r} names parent {item.parent_id!r}, which is not among the lines."
                )
            if parent.parent_id is not None:
                raise ValidationError(
                    f"Line item {item.id!r} names parent {parent.id!r}, which is itself an add-on."
                )
    return items


def _common_currency(
    currency: str | None, amount: Money | None, items: Sequence[LineItem]
) -> str | None:
    """The one currency of a deal's money, or ``CurrencyMismatchError`` naming the odd one."""
    found = currency
    for money, what in [(amount, "Amount")] + [
        (i.unit_price, f"Line item {i.product!r}") for i in items
    ]:
        if money is None:
            continue
        if found is None:
            found = money.currency
        elif money.currency != found:
            raise CurrencyMismatchError(
                f"{what} is in {money.currency!r}, but the opportunity's money is in {found!r}."
            )
    return found


def _clean_field(name: str, value: Any) -> Any:
    if name == "name":
        return _checks.text(value, "Opportunity name", allow_empty=False)
    if name == "amount":
        return None if value is None else as_money(value, "Amount")
    if name == "currency":
        return None if value is None else currency_code(value)
    if name == "probability":
        return None if value is None else _checks.percentage(value, "Probability")
    if name == "expected_close":
        return _checks.optional_day(value, "Expected close")
    if name == "description":
        return _checks.text(value, "Description")
    return _checks.optional_text(value, name.replace("_", " ").capitalize())


def _is_blank(value: object) -> bool:
    return value is None or value == "" or value == ()


def _differs(old: Any, new: Any) -> bool:
    if old is new:  # the same lines tuple, event after event: no need to compare its items
        return False
    if old is None:
        return not _is_blank(new) and new is not False
    return bool(old != new)


__all__ = ["Opportunity"]

"""The opportunity: an immutable, event-sourced aggregate.

Every command validates its arguments first, then builds one event, then folds it in with
``_apply``, the single place state changes.  ``Opportunity.replay`` is the same fold over a
list of events, so ``Opportunity.replay(opp.events) == opp`` holds by construction.
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs

from oppcore import clock as _clock
from oppcore.domain import _checks
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
from oppcore.exceptions import CurrencyMismatchError, TransitionError, ValidationError

_HUNDRED = Decimal(100)
_LINE_FIELDS = ("product", "unit_price", "quantity", "discount", "kind", "description", "parent_id")


# Millions of these live in memory at once: no weak-reference slot (8 bytes each).
@attrs.frozen(eq=True, repr=False, weakref_slot=False)
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
    line_items: tuple[LineItem, ...]
    created_at: datetime
    closed_at: datetime | None
    last_open_stage: str
    events: tuple[Event, ...]
    version: int

    # -- reading -------------------------------------------------------------------------

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
        if self.line_items:
            return self.line_total
        return None

    @property
    def line_total(self) -> Money | None:
        """The exact total of the line items; None when there are none."""
        if not self.line_items:
            return None
        result = self.line_items[0].total
        for item in self.line_items[1:]:
            result = result + item.total
        return result

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
        for item in self.line_items:
            if item.id == item_id:
                return item
        raise ValidationError(f"Opportunity {self.id!r} has no line item {_checks.short(item_id)}.")

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
        if "currency" in changed and self.line_items and self.line_items[0].currency != currency:
            raise CurrencyMismatchError(
                f"Opportunity {self.id!r} has line items in {self.line_items[0].currency!r}; "
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
        _common_currency(self.currency, self.manual_amount, (*self.line_items, item))
        if any(existing.id == item.id for existing in self.line_items):
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
        children = [child.id for child in self.line_items if child.parent_id == item.id]
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
        others = tuple(line for line in self.line_items if line.id != item.id)
        _common_currency(self.currency, self.manual_amount, (*others, new_item))
        self._check_parent(new_item)
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

    def _check_parent(self, item: LineItem) -> None:
        if item.parent_id is None:
            return
        parent = next((line for line in self.line_items if line.id == item.parent_id), None)
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
        opp = _opened(first)
        for event in iterator:
            opp = opp._apply(event)
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
        if event.at < self.events[-1].at:
            raise ValidationError(
                f"Event at {event.at.isoformat()} is before the previous event at "
                f"{self.events[-1].at.isoformat()}."
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
        elif isinstance(event, LineItemAdded):
            updates["line_items"] = _line_items((*self.line_items, event.item))
        elif isinstance(event, LineItemRemoved):
            self.line_item(event.item_id)
            updates["line_items"] = _line_items(i for i in self.line_items if i.id != event.item_id)
        else:
            self.line_item(event.item.id)
            updates["line_items"] = _line_items(
                event.item if i.id == event.item.id else i for i in self.line_items
            )
        if {"currency", "manual_amount", "line_items"} & updates.keys():
            updates["currency"] = _common_currency(
                updates.get("currency", self.currency),
                updates.get("manual_amount", self.manual_amount),
                updates.get("line_items", self.line_items),
            )
        updates["events"] = (*self.events, event)
        updates["version"] = event.version
        # Not attrs.evolve: replay comes here once per event, and every field is already
        # checked, so copy the slots directly (measurably faster on large loads).
        new = object.__new__(Opportunity)
        for name, slot in _SLOTS:
            slot.__set__(new, updates[name] if name in updates else slot.__get__(self))
        return new

    # -- history -------------------------------------------------------------------------

    def history(self) -> tuple[HistoryEntry, ...]:
        """The state after each event, with what changed (knock-on changes included)."""
        entries = []
        state = Opportunity.replay(self.events[:1])
        before: dict[str, Any] = dict.fromkeys(state._snapshot())
        for event in self.events:
            if event.version > 1:
                state = state._apply(event)
            after = state._snapshot()
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
        if count == len(self.events):
            return self
        return Opportunity.replay(self.events[:count])


# The slot descriptors of every field, for the fold's direct copy.
_SLOTS = tuple((field.name, vars(Opportunity)[field.name]) for field in attrs.fields(Opportunity))

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
        line_items=items,
        created_at=event.at,
        closed_at=event.at if closed else None,
        last_open_stage=stage.key if stage.is_open else event.pipeline.first_stage.key,
        events=(event,),
        version=1,
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
    if previous is not None and when < previous.events[-1].at:
        raise ValidationError(
            f"Event time {when.isoformat()} is before the previous event of opportunity "
            f"{previous.id!r}, at {previous.events[-1].at.isoformat()}."
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
    if old is None:
        return not _is_blank(new) and new is not False
    return bool(old != new)


__all__ = ["Opportunity"]

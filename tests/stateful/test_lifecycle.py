"""An opportunity's whole lifecycle, driven at random and checked against a small reference model.

The model knows only what the design states: stage key and outcome, the hand-typed amount and
the lines (whose totals give the amount otherwise), the probability and whether it was set by
hand, whether and when the deal closed, the lost reason, and the version.  After every step the
real ``Opportunity`` must agree with it; commands the model refuses must raise the error it
names and change nothing.  The machine runs on ``Pipeline.default()`` and on a custom Thai
pipeline with transitions, a required field and ``keep_manual_probability=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Context, Decimal, localcontext
from functools import partial
from typing import Any, ClassVar

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from oppcore import (
    CurrencyMismatchError,
    FixedClock,
    LineItem,
    LineKind,
    Money,
    OppcoreError,
    Opportunity,
    Outcome,
    Pipeline,
    Stage,
    TransitionError,
    ValidationError,
)
from tests.strategies import (
    CLOCK_STEPS,
    CURRENCIES,
    dates,
    line_items,
    money,
    nonblank_texts,
    optional,
    percentages,
    positive_amounts,
    texts,
)

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone(timedelta(hours=7)))
EXACT = Context(prec=500)
OPEN, WON, LOST = Outcome.OPEN, Outcome.WON, Outcome.LOST


# -- the reference model ------------------------------------------------------------------


@attrs.frozen
class StageSpec:
    """What the model knows of a stage."""

    key: str
    outcome: Outcome
    probability: Decimal
    required: tuple[str, ...] = ()


@attrs.frozen
class PipelineSpec:
    """What the model knows of a pipeline, and the real pipeline it stands for."""

    stages: tuple[StageSpec, ...]
    transitions: Mapping[str, tuple[str, ...]] | None
    keep_manual_probability: bool
    pipeline: Pipeline

    def stage(self, key: object) -> StageSpec | None:
        return next((spec for spec in self.stages if spec.key == key), None)

    def keys(self, outcome: Outcome | None = None) -> tuple[str, ...]:
        return tuple(s.key for s in self.stages if outcome is None or s.outcome is outcome)


DEFAULT_SPEC = PipelineSpec(
    stages=(
        StageSpec("wait", OPEN, Decimal(10)),
        StageSpec("in_progress", OPEN, Decimal(50)),
        StageSpec("closed_won", WON, Decimal(100)),
        StageSpec("closed_lost", LOST, Decimal(0)),
    ),
    transitions=None,
    keep_manual_probability=False,
    pipeline=Pipeline.default(),
)

_THAI_STAGES = (
    StageSpec("ติดต่อ", OPEN, Decimal(20)),
    StageSpec("เสนอราคา", OPEN, Decimal("62.5")),
    StageSpec("ต่อรอง", OPEN, Decimal(80), required=("amount",)),
    StageSpec("won", WON, Decimal(100)),
    StageSpec("won_paid", WON, Decimal(100)),
    StageSpec("lost_price", LOST, Decimal(0)),
    StageSpec("lost_silent", LOST, Decimal(0)),
)
_THAI_TRANSITIONS = {
    "ติดต่อ": ("เสนอราคา", "lost_silent"),
    "เสนอราคา": ("ติดต่อ", "ต่อรอง", "won", "lost_price", "lost_silent"),
    "ต่อรอง": ("เสนอราคา", "won", "won_paid", "lost_price"),
}
THAI_SPEC = PipelineSpec(
    stages=_THAI_STAGES,
    transitions=_THAI_TRANSITIONS,
    keep_manual_probability=True,
    pipeline=Pipeline(
        id="ขายส่ง",
        name="ขายส่ง (wholesale)",
        stages=tuple(
            Stage(
                spec.key,
                spec.key.upper(),
                spec.probability,
                spec.outcome,
                labels={"th": f"ขั้น {spec.key}", "en": spec.key},
                required=spec.required,
            )
            for spec in _THAI_STAGES
        ),
        transitions=_THAI_TRANSITIONS,
        keep_manual_probability=True,
    ),
)


#: An invalid command: its label, the call, the model's prediction (None: the model does not
#: model the value, such as a probability of 1000) and the error the deal must raise.
Refused = tuple[
    str,
    Callable[[Opportunity], object],
    Callable[["Model"], object] | None,
    type[OppcoreError],
]

ABSURD_PROBABILITIES: tuple[object, ...] = (
    "1000",
    1000,
    "-1",
    "100.0000001",
    "NaN",
    "Infinity",
    50.5,
    True,
)


def _move(opp: Opportunity, *, key: str, probability: Decimal | None, clock: FixedClock) -> object:
    return opp.move_to(key, probability=probability, clock=clock)


def _win(opp: Opportunity, *, key: str, clock: FixedClock) -> object:
    return opp.win(stage=key, clock=clock)


def _lose(opp: Opportunity, *, key: str, clock: FixedClock) -> object:
    return opp.lose(stage=key, clock=clock)


class Refusal(Exception):
    """The model's prediction that a command fails with ``error``."""

    def __init__(self, error: type[OppcoreError]) -> None:
        super().__init__(error.__name__)
        self.error = error


def line_total(item: LineItem) -> Decimal:
    """quantity x unit price x (1 - discount / 100), exact."""
    with localcontext(EXACT):
        return item.quantity * item.unit_price.amount * (1 - item.discount / 100)


@attrs.frozen
class Model:
    """The deal as the design describes it, with every rule written out plainly."""

    spec: PipelineSpec
    stage: str
    currency: str | None
    manual_amount: Money | None
    lines: Mapping[str, LineItem]
    probability: Decimal
    manual_probability: bool
    closed_at: datetime | None
    lost_reason: str | None
    last_open: str | None
    version: int
    name: str
    expected_close: date | None

    @property
    def current(self) -> StageSpec:
        spec = self.spec.stage(self.stage)
        assert spec is not None
        return spec

    @property
    def outcome(self) -> Outcome:
        return self.current.outcome

    @property
    def amount(self) -> tuple[Decimal, str] | None:
        """(amount, currency): the hand-typed one, else the total of the lines, else None."""
        if self.manual_amount is not None:
            return self.manual_amount.amount, self.manual_amount.currency
        if self.lines:
            with localcontext(EXACT):
                total = sum((line_total(line) for line in self.lines.values()), Decimal(0))
            assert self.currency is not None
            return total, self.currency
        return None

    def _known(self, key: object) -> StageSpec:
        spec = self.spec.stage(key)
        if spec is None:
            raise Refusal(ValidationError)
        return spec

    def _lacks(self, target: StageSpec) -> bool:
        assert set(target.required) <= {"amount"}, "the model knows only required amounts"
        return "amount" in target.required and self.amount is None

    def _next(self, **changes: Any) -> Model:
        return attrs.evolve(self, version=self.version + 1, **changes)

    # -- stage commands ---------------------------------------------------------------

    def move_to(self, key: object, probability: Decimal | None, now: datetime) -> Model:
        target = self._known(key)
        if target.key == self.stage:
            return self if probability is None else self.update({"probability": probability})
        return self._change(target, probability, None, now)

    def win(self, stage: str | None, now: datetime) -> Model:
        target = self.spec.stage(self.spec.keys(WON)[0]) if stage is None else self._known(stage)
        assert target is not None
        if target.outcome is not WON:
            raise Refusal(ValidationError)
        if self.outcome is WON and (stage is None or target.key == self.stage):
            return self
        return self._change(target, None, None, now)

    def lose(self, reason: str | None, stage: str | None, now: datetime) -> Model:
        target = self.spec.stage(self.spec.keys(LOST)[0]) if stage is None else self._known(stage)
        assert target is not None
        if target.outcome is not LOST:
            raise Refusal(ValidationError)
        if self.outcome is LOST:
            if reason is not None and reason != self.lost_reason:
                raise Refusal(TransitionError)  # another reason needs a reopen first
            if stage is None or target.key == self.stage:
                return self
        return self._change(target, None, reason, now)

    def _change(
        self, target: StageSpec, probability: Decimal | None, reason: str | None, now: datetime
    ) -> Model:
        source = self.current
        if source.outcome is not OPEN and target.outcome is not source.outcome:
            raise Refusal(TransitionError)  # closed stages are left only by reopen
        transitions = self.spec.transitions
        if (
            source.outcome is OPEN
            and transitions is not None
            and target.key not in transitions.get(source.key, ())
        ):
            raise Refusal(TransitionError)
        if self._lacks(target):
            raise Refusal(TransitionError)
        if target.outcome is not OPEN:
            if probability is not None and probability != target.probability:
                raise Refusal(ValidationError)
            chance, by_hand = target.probability, False  # won forces 100, lost 0
        elif probability is not None:
            chance, by_hand = probability, True
        elif self.manual_probability and self.spec.keep_manual_probability:
            chance, by_hand = self.probability, True
        else:
            chance, by_hand = target.probability, False
        closed_at, lost_reason = self.closed_at, self.lost_reason
        if source.outcome is OPEN and target.outcome is not OPEN:
            closed_at = now
            lost_reason = reason if target.outcome is LOST else None
        return self._next(
            stage=target.key,
            probability=chance,
            manual_probability=by_hand,
            closed_at=closed_at,
            lost_reason=lost_reason,
            last_open=target.key if target.outcome is OPEN else self.last_open,
        )

    def reopen(self, stage: str | None) -> Model:
        if self.outcome is OPEN:
            raise Refusal(TransitionError)
        target = self._known(self.last_open if stage is None else stage)
        if target.outcome is not OPEN or self._lacks(target):
            raise Refusal(TransitionError)
        return self._next(
            stage=target.key,
            probability=target.probability,
            manual_probability=False,
            closed_at=None,
            lost_reason=None,
            last_open=target.key,
        )

    # -- field and line commands ------------------------------------------------------

    def update(self, changes: Mapping[str, Any]) -> Model:
        new: dict[str, Any] = {}
        for name in ("name", "expected_close"):
            if name in changes and changes[name] != getattr(self, name):
                new[name] = changes[name]
        if "probability" in changes:
            chance = changes["probability"]
            if chance is None:
                if self.manual_probability or self.probability != self.current.probability:
                    new["probability"] = self.current.probability
                    new["manual_probability"] = False
            elif chance != self.probability:
                if self.outcome is not OPEN:
                    raise Refusal(ValidationError)
                new["probability"] = chance
                new["manual_probability"] = True
        if "amount" in changes and changes["amount"] != self.manual_amount:
            amount: Money | None = changes["amount"]
            new["manual_amount"] = amount
            if amount is not None:
                if self.currency is None:
                    new["currency"] = amount.currency
                elif amount.currency != self.currency:
                    raise Refusal(CurrencyMismatchError)
        return self._next(**new) if new else self

    def add_line(self, item: LineItem) -> Model:
        if self.currency is not None and item.currency != self.currency:
            raise Refusal(CurrencyMismatchError)
        if item.id in self.lines:
            raise Refusal(ValidationError)
        self._check_parent(item)
        return self._next(lines={**self.lines, item.id: item}, currency=item.currency)

    def remove_line(self, item_id: str) -> Model:
        if item_id not in self.lines:
            raise Refusal(ValidationError)
        if any(line.parent_id == item_id for line in self.lines.values()):
            raise Refusal(ValidationError)  # its add-ons go first
        return self._next(lines={k: v for k, v in self.lines.items() if k != item_id})

    def update_line(self, item_id: str, changed: LineItem) -> Model:
        if item_id not in self.lines:
            raise Refusal(ValidationError)
        if changed == self.lines[item_id]:
            return self
        if changed.currency != self.currency:
            raise Refusal(CurrencyMismatchError)
        self._check_parent(changed)
        return self._next(lines={**self.lines, item_id: changed})

    def _check_parent(self, item: LineItem) -> None:
        if item.parent_id is None:
            return
        parent = self.lines.get(item.parent_id)
        if parent is None or parent.parent_id is not None or parent.id == item.id:
            raise Refusal(ValidationError)
        if any(line.parent_id == item.id for line in self.lines.values()):
            raise Refusal(ValidationError)  # an add-on cannot have add-ons of its own


# -- the machine --------------------------------------------------------------------------


class LifecycleMachine(RuleBasedStateMachine):
    """Random commands on one deal; after each, the deal and the model must agree."""

    spec: ClassVar[PipelineSpec]

    def __init__(self) -> None:
        super().__init__()
        self.clock = FixedClock(T0)
        self._opp: Opportunity | None = None
        self._model: Model | None = None
        self.lines_made = 0
        self.renamed = 0

    @property
    def opp(self) -> Opportunity:
        assert self._opp is not None
        return self._opp

    @property
    def model(self) -> Model:
        assert self._model is not None
        return self._model

    def next_line_id(self) -> str:
        self.lines_made += 1
        return f"รายการ-{self.lines_made}"

    def currency(self) -> str:
        return self.model.currency or "THB"

    def other_currency(self) -> str:
        return next(code for code in CURRENCIES if code != self.model.currency)

    def model_accepts(self, key: str, now: datetime) -> bool:
        """Whether the model lets the deal ``move_to(key)`` now."""
        try:
            self.model.move_to(key, None, now)
        except Refusal:
            return False
        return True

    def run(
        self,
        label: str,
        command: Callable[[Opportunity], Opportunity],
        predict: Callable[[Model], Model],
    ) -> None:
        """Run ``command`` and check it against the model's prediction, success or refusal."""
        try:
            predicted = predict(self.model)
        except Refusal as refusal:
            self.refused(label, command, refusal.error)
            return
        after = command(self.opp)
        if predicted is self.model:
            assert after == self.opp, f"{label} changed nothing, yet gave a different value"
            assert after.version == self.opp.version, label
        else:
            assert after.version == self.opp.version + 1, f"{label} did not add exactly one event"
            assert after.events[:-1] == self.opp.events, f"{label} rewrote earlier events"
        self._opp, self._model = after, predicted

    def refused(
        self, label: str, command: Callable[[Opportunity], object], error: type[OppcoreError]
    ) -> None:
        """``command`` must raise exactly ``error`` and leave the deal as it was."""
        before = self.opp
        snapshot = Opportunity.replay(before.events)  # an equal value built apart
        with pytest.raises(OppcoreError) as caught:
            command(before)
        assert type(caught.value) is error, (
            f"{label}: expected {error.__name__}, got {caught.value!r}"
        )
        assert before == snapshot, f"{label} changed the value it refused"
        assert before.version == snapshot.version == len(before.events)

    def refuse(self, refused: Refused) -> None:
        """An invalid command: the model (where it has a say) and the deal both refuse it."""
        label, command, predict, error = refused
        if predict is not None:
            with pytest.raises(Refusal) as refusal:
                predict(self.model)
            assert refusal.value.error is error, f"the model refuses {label} with {refusal.value}"
        self.refused(label, command, error)

    # -- opening ----------------------------------------------------------------------

    @initialize(data=st.data())
    def open_deal(self, data: st.DataObject) -> None:
        spec = self.spec
        stage: str | None = data.draw(optional(st.sampled_from(spec.keys())), label="stage")
        target = spec.stage(stage or spec.keys()[0])
        assert target is not None
        code = data.draw(st.sampled_from(CURRENCIES), label="code")
        currency = data.draw(st.sampled_from([None, code, code.lower()]), label="currency")
        amount = data.draw(optional(money(code, non_negative=True)), label="amount")
        lines = [
            attrs.evolve(item, id=self.next_line_id())
            for item in data.draw(st.lists(line_items(code), max_size=2), label="lines")
        ]
        if "amount" in target.required and amount is None and not lines:
            amount = Money("150000.00", code)
        if target.outcome is OPEN:
            probability = data.draw(optional(percentages()), label="probability")
        else:
            probability = data.draw(st.sampled_from([None, target.probability]), label="chance")
        name = data.draw(nonblank_texts(), label="name")
        self._opp = Opportunity.open(
            name=name,
            pipeline=spec.pipeline,
            stage=stage,
            currency=currency,
            amount=amount,
            probability=probability,
            line_items=lines,
            id="ดีล-1",
            clock=self.clock,
        )
        closed = target.outcome is not OPEN
        self._model = Model(
            spec=spec,
            stage=target.key,
            currency=code if (currency or amount or lines) else None,
            manual_amount=amount,
            lines={line.id: line for line in lines},
            probability=target.probability if probability is None else probability,
            manual_probability=probability is not None and not closed,
            closed_at=self.clock.now() if closed else None,
            lost_reason=None,
            last_open=None if closed else target.key,
            version=1,
            name=name,
            expected_close=None,
        )

    # -- valid and invalid commands, as the model predicts them ---------------------------

    @rule(step=CLOCK_STEPS, data=st.data())
    def move_to(self, step: timedelta, data: st.DataObject) -> None:
        self.clock.advance(step)
        key = data.draw(st.sampled_from(self.spec.keys()), label="stage")
        target = self.spec.stage(key)
        assert target is not None
        if target.outcome is OPEN:
            probability = data.draw(optional(percentages()), label="probability")
        else:  # a closed stage's probability is fixed: a wrong one is refuse_a_stage_command's
            probability = data.draw(st.sampled_from([None, target.probability]), label="chance")
        now = self.clock.now()
        self.run(
            f"move_to({key!r}, probability={probability})",
            lambda opp: opp.move_to(key, probability=probability, clock=self.clock),
            lambda model: model.move_to(key, probability, now),
        )

    @rule(step=CLOCK_STEPS, data=st.data())
    def win(self, step: timedelta, data: st.DataObject) -> None:
        self.clock.advance(step)
        stage = data.draw(optional(st.sampled_from(self.spec.keys(WON))), label="stage")
        now = self.clock.now()
        self.run(
            f"win(stage={stage!r})",
            lambda opp: opp.win(stage=stage, clock=self.clock),
            lambda model: model.win(stage, now),
        )

    @rule(step=CLOCK_STEPS, data=st.data())
    def lose(self, step: timedelta, data: st.DataObject) -> None:
        self.clock.advance(step)
        stage = data.draw(optional(st.sampled_from(self.spec.keys(LOST))), label="stage")
        reason = data.draw(optional(nonblank_texts()), label="reason")
        if self.model.outcome is LOST and data.draw(st.booleans(), label="same reason"):
            reason = self.model.lost_reason
        now = self.clock.now()
        self.run(
            f"lose(reason={reason!r}, stage={stage!r})",
            lambda opp: opp.lose(reason=reason, stage=stage, clock=self.clock),
            lambda model: model.lose(reason, stage, now),
        )

    @rule(step=CLOCK_STEPS, data=st.data())
    def reopen(self, step: timedelta, data: st.DataObject) -> None:
        self.clock.advance(step)
        stage = data.draw(optional(st.sampled_from(self.spec.keys(OPEN))), label="stage")
        if stage is None and self.model.last_open is None:
            stage = self.spec.keys(OPEN)[0]  # opened closed: no stage it closed from
        self.run(
            f"reopen(stage={stage!r})",
            lambda opp: opp.reopen(stage=stage, clock=self.clock),
            lambda model: model.reopen(stage),
        )

    @rule(step=CLOCK_STEPS, data=st.data())
    def update(self, step: timedelta, data: st.DataObject) -> None:
        self.clock.advance(step)
        model = self.model
        changes: dict[str, Any] = data.draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "amount": optional(money(self.currency(), non_negative=True)),
                    "probability": st.one_of(st.none(), st.just(model.probability), percentages()),
                    "expected_close": optional(dates()),
                    "name": st.just(model.name) | nonblank_texts(),
                },
            ),
            label="changes",
        )
        self.run(
            f"update(**{changes!r})",
            lambda opp: opp.update(**changes, clock=self.clock),
            lambda model: model.update(changes),
        )

    @rule(step=CLOCK_STEPS, data=st.data())
    def add_line_item(self, step: timedelta, data: st.DataObject) -> None:
        self.clock.advance(step)
        item = attrs.evolve(
            data.draw(line_items(self.currency()), label="item"), id=self.next_line_id()
        )
        parents = [line.id for line in self.model.lines.values() if line.parent_id is None]
        if parents and bool(data.draw(st.booleans(), label="add-on")):
            parent = data.draw(st.sampled_from(parents), label="parent")
            item = attrs.evolve(item, parent_id=parent, kind=LineKind.ADD_ON)
        self.run(
            f"add_line_item({item!r})",
            lambda opp: opp.add_line_item(item, clock=self.clock),
            lambda model: model.add_line(item),
        )

    @precondition(lambda self: bool(self.model.lines))
    @rule(step=CLOCK_STEPS, data=st.data())
    def remove_line_item(self, step: timedelta, data: st.DataObject) -> None:
        self.clock.advance(step)
        item_id = data.draw(st.sampled_from(sorted(self.model.lines)), label="line")
        self.run(
            f"remove_line_item({item_id!r})",
            lambda opp: opp.remove_line_item(item_id, clock=self.clock),
            lambda model: model.remove_line(item_id),
        )

    @precondition(lambda self: bool(self.model.lines))
    @rule(step=CLOCK_STEPS, data=st.data())
    def update_line_item(self, step: timedelta, data: st.DataObject) -> None:
        self.clock.advance(step)
        item_id = data.draw(st.sampled_from(sorted(self.model.lines)), label="line")
        item = self.model.lines[item_id]
        changes: dict[str, Any] = data.draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "quantity": st.just(item.quantity) | positive_amounts(),
                    "discount": st.just(item.discount) | percentages(),
                    "unit_price": st.just(item.unit_price)
                    | money(item.currency, non_negative=True),
                    "description": st.just(item.description) | texts(),
                    # any other line: the model refuses add-ons of add-ons
                    "parent_id": st.sampled_from(
                        [None, *sorted(key for key in self.model.lines if key != item_id)]
                    ),
                },
            ),
            label="changes",
        )
        self.run(
            f"update_line_item({item_id!r}, **{changes!r})",
            lambda opp: opp.update_line_item(item_id, **changes, clock=self.clock),
            lambda model: model.update_line(item_id, attrs.evolve(item, **changes)),
        )

    # -- commands that must be refused ------------------------------------------------

    @rule(data=st.data())
    def refuse_a_stage_command(self, data: st.DataObject) -> None:
        """One invalid stage command that fits the deal now; both model and deal refuse it."""
        model, clock, now = self.model, self.clock, self.clock.now()
        keys = self.spec.keys
        unknown = data.draw(
            nonblank_texts().filter(lambda k: self.spec.stage(k) is None), label="unknown"
        )
        choices: list[Refused] = [
            (
                f"move_to({unknown!r})",
                lambda opp: opp.move_to(unknown, clock=clock),
                lambda m: m.move_to(unknown, None, now),
                ValidationError,
            ),
            (
                f"win(stage={unknown!r})",
                lambda opp: opp.win(stage=unknown, clock=clock),
                lambda m: m.win(unknown, now),
                ValidationError,
            ),
            (
                f"lose(stage={unknown!r})",
                lambda opp: opp.lose(stage=unknown, clock=clock),
                lambda m: m.lose(None, unknown, now),
                ValidationError,
            ),
        ]
        for key in keys(OPEN) + keys(LOST):
            choices.append(
                (
                    f"win(stage={key!r})",
                    partial(_win, key=key, clock=clock),
                    partial(Model.win, stage=key, now=now),
                    ValidationError,
                )
            )
        for key in keys(OPEN) + keys(WON):
            choices.append(
                (
                    f"lose(stage={key!r})",
                    partial(_lose, key=key, clock=clock),
                    partial(Model.lose, reason=None, stage=key, now=now),
                    ValidationError,
                )
            )
        if model.outcome is OPEN:
            choices.append(
                (
                    "reopen() on an open deal",
                    lambda opp: opp.reopen(clock=clock),
                    lambda m: m.reopen(None),
                    TransitionError,
                )
            )
            for key in keys():
                if key == model.stage or not self.model_accepts(key, now):
                    continue
                wrong = Decimal(1000) if key in keys(OPEN) else Decimal(50)
                choices.append(
                    (
                        f"move_to({key!r}, probability={wrong})",
                        partial(_move, key=key, probability=wrong, clock=clock),
                        None,  # 1000 is no percentage; 50 is not a closed stage's probability
                        ValidationError,
                    )
                )
        else:
            for key in keys(OPEN):
                choices.append(
                    (
                        f"move_to({key!r}) from closed {model.stage!r}",
                        partial(_move, key=key, probability=None, clock=clock),
                        partial(Model.move_to, key=key, probability=None, now=now),
                        TransitionError,
                    )
                )
            if model.outcome is LOST:
                choices.append(
                    (
                        "win() on a lost deal",
                        lambda opp: opp.win(clock=clock),
                        lambda m: m.win(None, now),
                        TransitionError,
                    )
                )
            else:
                choices.append(
                    (
                        "lose() on a won deal",
                        lambda opp: opp.lose(clock=clock),
                        lambda m: m.lose(None, None, now),
                        TransitionError,
                    )
                )
        self.refuse(data.draw(st.sampled_from(choices), label="refused"))

    @rule(data=st.data())
    def refuse_a_field_command(self, data: st.DataObject) -> None:
        """One invalid update or line command that fits the deal now; both refuse it."""
        model, clock, now = self.model, self.clock, self.clock.now()
        absurd = data.draw(st.sampled_from(ABSURD_PROBABILITIES), label="absurd")
        self.renamed += 1
        name = f"{model.name} ({self.renamed})"  # a real change: only the time is wrong
        choices: list[Refused] = [
            (
                f"update(probability={absurd!r})",
                lambda opp: opp.update(probability=absurd, clock=clock),
                None,
                ValidationError,
            ),
            (
                "update(at=<naive>)",
                lambda opp: opp.update(name=name, at=now.replace(tzinfo=None), clock=clock),
                None,
                ValidationError,
            ),
            (
                "update(at=<after the clock>)",
                lambda opp: opp.update(name=name, at=now + timedelta(microseconds=1), clock=clock),
                None,
                ValidationError,
            ),
            (
                "update(at=<before the previous event>)",
                lambda opp: opp.update(
                    name=name, at=opp.events[-1].at - timedelta(microseconds=1), clock=clock
                ),
                None,
                ValidationError,
            ),
        ]
        if model.outcome is not OPEN:
            chance = data.draw(percentages().filter(lambda p: p != model.probability))
            choices.append(
                (
                    f"update(probability={chance}) on a closed deal",
                    lambda opp: opp.update(probability=chance, clock=clock),
                    lambda m: m.update({"probability": chance}),
                    ValidationError,
                )
            )
        if model.currency is not None:
            other = self.other_currency()
            amount = data.draw(money(other, non_negative=True), label="foreign amount")
            item = attrs.evolve(data.draw(line_items(other), label="foreign line"), id="ต่างสกุล")
            choices += [
                (
                    f"update(amount={amount!r})",
                    lambda opp: opp.update(amount=amount, clock=clock),
                    lambda m: m.update({"amount": amount}),
                    CurrencyMismatchError,
                ),
                (
                    f"add_line_item({item!r})",
                    lambda opp: opp.add_line_item(item, clock=clock),
                    lambda m: m.add_line(item),
                    CurrencyMismatchError,
                ),
            ]
        self.refuse(data.draw(st.sampled_from(choices), label="refused"))

    # -- what must hold after every step ----------------------------------------------

    @invariant()
    def the_deal_agrees_with_the_model(self) -> None:
        if self._opp is None:
            return
        opp, model = self.opp, self.model
        assert opp.stage_key == opp.stage.key == model.stage
        assert opp.stage.outcome is model.outcome
        assert opp.is_open == (model.outcome is OPEN)
        assert opp.is_won == (model.outcome is WON)
        assert opp.is_lost == (model.outcome is LOST)
        assert opp.is_closed == (model.outcome is not OPEN)
        assert opp.currency == model.currency
        assert opp.probability == model.probability
        assert opp.amount_is_manual == (model.manual_amount is not None)
        expected = model.amount
        if expected is None:
            assert opp.amount is None
            assert opp.expected_revenue is None
        else:
            assert opp.amount is not None
            assert (opp.amount.amount, opp.amount.currency) == expected
            revenue = opp.expected_revenue
            assert revenue is not None
            with localcontext(EXACT):
                assert revenue.amount == expected[0] * model.probability / 100
            assert revenue.currency == expected[1]
        assert opp.closed_at == model.closed_at
        assert opp.lost_reason == model.lost_reason
        assert opp.version == model.version == len(opp.events)
        assert opp.name == model.name
        assert opp.expected_close == model.expected_close
        assert {line.id: line for line in opp.line_items} == dict(model.lines)

    @invariant()
    def replay_rebuilds_the_deal(self) -> None:
        if self._opp is not None:
            assert Opportunity.replay(self.opp.events) == self.opp


class DefaultPipelineLifecycle(LifecycleMachine):
    """The lifecycle on ``Pipeline.default()``."""

    spec = DEFAULT_SPEC


class ThaiKeepManualLifecycle(LifecycleMachine):
    """The lifecycle on a Thai pipeline with transitions and ``keep_manual_probability=True``."""

    spec = THAI_SPEC


RUN = settings(stateful_step_count=30)


def test_the_model_pipelines_match_the_real_ones() -> None:
    """Each model table names the real pipeline's stages, outcomes, probabilities and rules."""
    for spec in (DEFAULT_SPEC, THAI_SPEC):
        real = spec.pipeline
        assert [(s.key, s.outcome, s.probability, s.required) for s in real.stages] == [
            (s.key, s.outcome, s.probability, s.required) for s in spec.stages
        ]
        assert real.keep_manual_probability is spec.keep_manual_probability
        assert real.transitions == spec.transitions
    assert DEFAULT_SPEC.pipeline == Pipeline.default()


def test_a_deal_on_the_default_pipeline_agrees_with_the_model_at_every_step() -> None:
    """Random valid and invalid commands on Pipeline.default() behave as the model says."""
    run_state_machine_as_test(DefaultPipelineLifecycle, settings=RUN)


def test_a_deal_that_keeps_manual_probabilities_agrees_with_the_model_at_every_step() -> None:
    """Random commands on a Thai pipeline with transitions and keep_manual_probability agree with the model."""
    run_state_machine_as_test(ThaiKeepManualLifecycle, settings=RUN)

"""Hypothesis strategies for oppcore's domain, in one place.

Money amounts, currencies, line items, stages, valid pipelines (custom ones with checked
``transitions`` included), aware datetimes, and valid opportunities built by running a random
sequence of valid commands against a ``FixedClock`` that only moves forward.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar

import attrs
from hypothesis import strategies as st

from oppcore import (
    FixedClock,
    ForecastCategory,
    LineItem,
    LineKind,
    Money,
    Opportunity,
    Outcome,
    Pipeline,
    Stage,
)
from oppcore.domain.stages import REQUIRABLE_FIELDS

#: The currencies the strategies price things in: two-place, zero-place and three-place ones.
CURRENCIES: tuple[str, ...] = ("THB", "USD", "JPY", "KWD", "EUR")

#: Minor units of ``CURRENCIES`` as the design states them (DESIGN.md section 3, Money).
MINOR_UNITS: dict[str, int] = {"THB": 2, "USD": 2, "JPY": 0, "KWD": 3, "EUR": 2}

#: Fixed UTC offsets, from the far west to the far east, odd quarter hours included.
OFFSETS: tuple[timezone, ...] = (
    timezone.utc,
    timezone(timedelta(hours=7)),  # Bangkok
    timezone(timedelta(hours=-5)),
    timezone(timedelta(hours=5, minutes=45)),  # Kathmandu
    timezone(timedelta(hours=-3, minutes=-30)),  # Newfoundland
    timezone(timedelta(hours=14)),
    timezone(timedelta(hours=-12)),
)

THAI_NAMES: tuple[str, ...] = (
    "เครื่องปรับอากาศ",
    "ชุดโซลาร์เซลล์",
    "บริการติดตั้ง",
    "สัญญาบำรุงรักษา 3 ปี",
    "ซอฟต์แวร์บัญชี",
    "กาแฟดอยช้าง 1 กก.",
    "ค่าขนส่ง",
    "บริษัท สยามเทรดดิ้ง จำกัด",
)
OTHER_NAMES: tuple[str, ...] = (
    "GTX Pro",
    "Café crème",
    "Überweisung-Service",
    "東京オフィス",
    "Ναυτιλία",
    "MG Advanced",
)
STAGE_KEYS: tuple[str, ...] = (
    "ติดต่อ",
    "เสนอราคา",
    "ต่อรอง",
    "qualify",
    "demo",
    "won",
    "won_paid",
    "lost",
    "lost_silent",
)

#: The fields ``Opportunity.update`` changes (DESIGN.md section 3).
UPDATE_FIELDS: tuple[str, ...] = (
    "name",
    "type",
    "amount",
    "currency",
    "probability",
    "expected_close",
    "campaign_id",
    "lead_id",
    "lead_source",
    "owner",
    "account",
    "description",
)
_OPTIONAL_TEXT_FIELDS = ("type", "campaign_id", "lead_id", "lead_source", "owner", "account")

_TEXT_CHARS: st.SearchStrategy[str] = st.one_of(
    st.characters(min_codepoint=0x0E01, max_codepoint=0x0E5B),  # Thai
    st.sampled_from("abcXYZ019 -./"),
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
)

#: How far the clock moves before a command: often not at all, so events share an ``at``.
CLOCK_STEPS: st.SearchStrategy[timedelta] = st.one_of(
    st.just(timedelta(0)),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=20)),
)


T = TypeVar("T")


def pick(draw: st.DrawFn, options: Sequence[T]) -> T:
    """One of ``options``, shrinking towards the first (``sampled_from`` without a new strategy)."""
    return options[draw(st.integers(0, len(options) - 1))]


@functools.cache
def optional(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    """``strategy`` or None, built once per strategy."""
    return st.one_of(st.none(), strategy)


# -- text -------------------------------------------------------------------------------


@functools.cache
def texts(*, max_size: int = 30) -> st.SearchStrategy[str]:
    """Any text, possibly empty, mostly non-ASCII."""
    return st.text(_TEXT_CHARS, max_size=max_size)


@functools.cache
def nonblank_texts(*, max_size: int = 20) -> st.SearchStrategy[str]:
    """Text with something other than white space: names, owners, reasons."""
    return st.one_of(
        st.sampled_from(THAI_NAMES + OTHER_NAMES),
        st.text(_TEXT_CHARS, min_size=1, max_size=max_size).filter(lambda s: bool(s.strip())),
    )


@functools.cache
def thai_texts() -> st.SearchStrategy[str]:
    """Thai text, possibly with spaces and digits."""
    return st.one_of(
        st.sampled_from(THAI_NAMES),
        st.text(
            st.one_of(
                st.characters(min_codepoint=0x0E01, max_codepoint=0x0E5B), st.sampled_from(" 0")
            ),
            min_size=1,
            max_size=15,
        ),
    )


# -- numbers and money --------------------------------------------------------------------


@st.composite
def _amounts(
    draw: st.DrawFn,
    *,
    non_negative: bool = False,
    max_integer_digits: int = 15,
    max_places: int = 6,
) -> Decimal:
    whole = draw(st.integers(0, 10**max_integer_digits - 1))
    places = draw(st.integers(0, max_places))
    text = str(whole)
    if places:
        text += "." + str(draw(st.integers(0, 10**places - 1))).zfill(places)
    if not non_negative and draw(st.booleans()):
        text = "-" + text
    return Decimal(text)


@functools.cache
def amounts(
    *, non_negative: bool = False, max_integer_digits: int = 15, max_places: int = 6
) -> st.SearchStrategy[Decimal]:
    """A Decimal parsed from a string, with at most 15 integer digits and 6 places."""
    return _amounts(
        non_negative=non_negative, max_integer_digits=max_integer_digits, max_places=max_places
    )


@functools.cache
def positive_amounts(*, max_integer_digits: int = 6) -> st.SearchStrategy[Decimal]:
    """A Decimal above zero, such as a quantity or an exchange rate."""
    return amounts(non_negative=True, max_integer_digits=max_integer_digits).filter(lambda d: d > 0)


@st.composite
def _percentages(draw: st.DrawFn) -> Decimal:
    whole = draw(st.integers(0, 100))
    places = 0 if whole == 100 else draw(st.integers(0, 6))
    if not places:
        return Decimal(whole)
    return Decimal(f"{whole}.{str(draw(st.integers(0, 10**places - 1))).zfill(places)}")


@functools.cache
def percentages() -> st.SearchStrategy[Decimal]:
    """A percentage from 0 to 100 with up to 6 places (``"12.5"``, ``"100"``, ``"0.000001"``)."""
    return _percentages()


@functools.cache
def currencies() -> st.SearchStrategy[str]:
    """An ISO 4217 code from ``CURRENCIES``."""
    return st.sampled_from(CURRENCIES)


@st.composite
def _money(draw: st.DrawFn, currency: str | None, non_negative: bool) -> Money:
    code = draw(currencies()) if currency is None else currency
    amount = draw(amounts(non_negative=non_negative))
    return Money(str(amount) if draw(st.booleans()) else amount, code)


@functools.cache
def money(currency: str | None = None, *, non_negative: bool = False) -> st.SearchStrategy[Money]:
    """Money in ``currency`` (any of ``CURRENCIES`` when None), built from str or Decimal."""
    return _money(currency, non_negative)


@functools.cache
def dates() -> st.SearchStrategy[date]:
    """A calendar date, such as an expected close."""
    return st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31))


@functools.cache
def offsets() -> st.SearchStrategy[timezone]:
    """A fixed UTC offset from ``OFFSETS``."""
    return st.sampled_from(OFFSETS)


@functools.cache
def aware_datetimes() -> st.SearchStrategy[datetime]:
    """An aware datetime between 2000 and 2090 at one of ``OFFSETS``."""
    return st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2090, 12, 31), timezones=offsets()
    )


# -- line items -------------------------------------------------------------------------


@st.composite
def _line_items(draw: st.DrawFn, currency: str | None) -> LineItem:
    code = draw(currencies()) if currency is None else currency
    return LineItem(
        product=draw(nonblank_texts()),
        unit_price=draw(money(code, non_negative=True)),
        quantity=draw(positive_amounts()),
        discount=draw(percentages()),
        kind=pick(draw, tuple(LineKind)),
        description=draw(texts()),
        id=str(draw(st.uuids())),
    )


@functools.cache
def line_items(currency: str | None = None) -> st.SearchStrategy[LineItem]:
    """A line of any kind, Thai or other non-ASCII product name, in ``currency``."""
    return _line_items(currency)


# -- stages and pipelines ---------------------------------------------------------------


@functools.cache
def stage_keys() -> st.SearchStrategy[str]:
    """A stage key: a familiar one or any non-blank text."""
    return st.one_of(st.sampled_from(STAGE_KEYS), nonblank_texts(max_size=10))


_REQUIRED = st.lists(st.sampled_from(sorted(REQUIRABLE_FIELDS)), max_size=2, unique=True)
_CATEGORIES = st.one_of(st.none(), st.sampled_from(ForecastCategory))
_STALE_DAYS = st.one_of(st.none(), st.integers(1, 36_500))


def draw_stage(
    draw: st.DrawFn, *, key: str | None, outcome: Outcome | None, with_required: bool
) -> Stage:
    """Draw one valid stage; ``stages()`` and ``pipelines()`` share it."""
    outcome = pick(draw, tuple(Outcome)) if outcome is None else outcome
    if outcome is Outcome.WON:
        chance = Decimal(100)
    elif outcome is Outcome.LOST:
        chance = Decimal(0)
    else:
        chance = draw(percentages())
    # Stage takes int, str or Decimal for its probability and keeps a Decimal.
    forms: list[Decimal | int | str] = [chance, str(chance)]
    if chance == int(chance):
        forms.append(int(chance))
    probability = pick(draw, forms)
    label = draw(texts(max_size=15))
    labels = {"en": label, "th": draw(thai_texts())} if draw(st.booleans()) else {}
    required: tuple[str, ...] = ()
    if with_required and draw(st.integers(0, 3)) == 0:
        required = tuple(draw(_REQUIRED))
    return Stage(
        draw(stage_keys()) if key is None else key,
        label,
        probability,
        outcome,
        forecast_category=draw(_CATEGORIES),
        labels=labels,
        required=required,
        stale_after_days=draw(_STALE_DAYS),
    )


@st.composite
def stages(
    draw: st.DrawFn,
    *,
    key: str | None = None,
    outcome: Outcome | None = None,
    with_required: bool = True,
) -> Stage:
    """A valid stage: won at 100, lost at 0, open at any percentage, labelled in en and th."""
    return draw_stage(draw, key=key, outcome=outcome, with_required=with_required)


def _reaches_closed(start: str, edges: dict[str, list[str]], closed: set[str]) -> bool:
    seen, frontier = {start}, [start]
    while frontier:
        for target in edges.get(frontier.pop(), []):
            if target in closed:
                return True
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    return False


@st.composite
def pipelines(
    draw: st.DrawFn,
    *,
    with_transitions: bool | None = None,
    keep_manual_probability: bool | None = None,
    with_required: bool = True,
) -> Pipeline:
    """A valid custom pipeline: 1-4 open, 1-2 won and 1-2 lost stages, maybe with transitions.

    The transitions, when drawn, pass the pipeline's checks by construction: every stage is
    reached along a random tree from the first stage, and every open stage can reach a
    closed one; random extra edges are added on top.
    """
    n_open, n_won, n_lost = (
        draw(st.integers(1, 4)),
        draw(st.integers(1, 2)),
        draw(st.integers(1, 2)),
    )
    total = n_open + n_won + n_lost
    keys = draw(st.lists(stage_keys(), min_size=total, max_size=total, unique=True))
    outcomes = [Outcome.OPEN] * n_open + [Outcome.WON] * n_won + [Outcome.LOST] * n_lost
    order = [0, *draw(st.permutations(range(1, total)))]  # the first stage stays open
    built = tuple(
        draw_stage(draw, key=keys[i], outcome=outcomes[i], with_required=with_required)
        for i in order
    )
    transitions: dict[str, list[str]] | None = None
    if with_transitions is None:
        with_transitions = draw(st.booleans())
    if with_transitions:
        open_keys = [s.key for s in built if s.is_open]
        closed_keys = [s.key for s in built if not s.is_open]
        edges: dict[str, list[str]] = {key: [] for key in open_keys}
        reached = [open_keys[0]]
        for key in open_keys[1:]:
            edges[pick(draw, reached)].append(key)
            reached.append(key)
        for key in closed_keys:
            edges[pick(draw, open_keys)].append(key)
        all_keys = [s.key for s in built]
        for key in open_keys:
            for _ in range(draw(st.integers(0, 2))):  # a few random extra moves
                extra = pick(draw, all_keys)
                if extra != key and extra not in edges[key]:
                    edges[key].append(extra)
        for key in open_keys:
            if not _reaches_closed(key, edges, set(closed_keys)):
                edges[key].append(pick(draw, closed_keys))
        transitions = edges
    return Pipeline(
        id=draw(nonblank_texts(max_size=10)),
        name=draw(texts(max_size=15)),
        stages=built,
        transitions=transitions,
        keep_manual_probability=(
            draw(st.booleans()) if keep_manual_probability is None else keep_manual_probability
        ),
    )


def any_pipelines() -> st.SearchStrategy[Pipeline]:
    """The stock pipelines or a custom one."""
    return st.one_of(
        st.just(Pipeline.default()),
        st.just(Pipeline.salesforce()),
        pipelines(),
    )


def graph_allows(pipeline: Pipeline, source: Stage, target: Stage) -> bool:
    """Whether ``move_to`` may go from ``source`` to ``target`` (required fields aside).

    Written from the design, not from the source: from a closed stage only to another stage
    of the same outcome; from an open stage anywhere, or where ``transitions`` allows.
    """
    if source.key == target.key:
        return False
    if not source.is_open:
        return target.outcome is source.outcome
    if pipeline.transitions is None:
        return True
    return target.key in pipeline.transitions.get(source.key, ())


def is_blank(value: object) -> bool:
    """Whether a field counts as missing for a stage's ``required``."""
    return value is None or value == "" or value == ()


def missing_for(opp: Opportunity, stage: Stage) -> list[str]:
    """The fields ``stage`` requires that ``opp`` lacks."""
    return [
        name
        for name in stage.required
        if is_blank(opp.amount if name == "amount" else getattr(opp, name))
    ]


@functools.cache
def _line_changes(currency: str) -> st.SearchStrategy[dict[str, Any]]:
    """Valid changes to a line in ``currency`` (``update_line_item`` keyword arguments)."""
    return st.fixed_dictionaries(
        {},
        optional={
            "product": nonblank_texts(),
            "unit_price": money(currency, non_negative=True),
            "quantity": positive_amounts(),
            "discount": percentages(),
            "kind": st.sampled_from(LineKind),
            "description": texts(),
        },
    )


# -- opportunities built by valid commands -------------------------------------------------


@attrs.frozen
class Built:
    """An opportunity and how it came about.

    ``states[i]`` is the value right after the event of version ``i + 1``; ``log`` names the
    commands in order; ``clock`` is the clock every command used, left at the last command's time.
    """

    opp: Opportunity
    states: tuple[Opportunity, ...] = attrs.field(repr=False)
    clock: FixedClock
    log: tuple[str, ...]


class _Builder:
    """Runs random valid commands on an opportunity, keeping the value after each event."""

    def __init__(
        self, draw: st.DrawFn, opp: Opportunity, clock: FixedClock, currency: str, log: list[str]
    ) -> None:
        self.draw = draw
        self.opp = opp
        self.clock = clock
        self.fallback_currency = currency
        self.log = log
        self.states = [opp]
        self.last_open: str | None = opp.stage_key if opp.is_open else None
        self.lines_made = len(opp.line_items)

    # -- plumbing ---------------------------------------------------------------------

    @property
    def currency(self) -> str:
        return self.opp.currency or self.fallback_currency

    def next_line_id(self) -> str:
        self.lines_made += 1
        return f"รายการ-{self.lines_made}"

    def event_time(self) -> datetime | None:
        """None (the clock's now), the previous event's time, or a time between the two."""
        how = pick(self.draw, ("clock", "previous", "between"))
        if how == "clock":
            return None
        previous = self.opp.events[-1].at
        zone = self.draw(offsets())
        if how == "previous":
            return previous.astimezone(zone)
        span = (self.clock.now() - previous) // timedelta(microseconds=1)
        step = timedelta(microseconds=self.draw(st.integers(0, span)))
        return (previous + step).astimezone(zone)

    def run(self, label: str, command: Callable[..., Opportunity], **kwargs: Any) -> None:
        """Run ``command`` with a drawn ``at`` and ``by`` and the builder's clock."""
        at = self.event_time()
        by = self.draw(optional(nonblank_texts()))
        self.log.append(f"{label} {kwargs!r} at={at!r}")
        after = command(**kwargs, at=at, by=by, clock=self.clock)
        if after.version != self.opp.version:
            self.states.append(after)
        self.opp = after
        if after.is_open:
            self.last_open = after.stage_key

    def update(self, **changes: Any) -> None:
        self.run("update", self.opp.update, **changes)

    def add_line(self) -> None:
        item = attrs.evolve(self.draw(line_items(self.currency)), id=self.next_line_id())
        parents = [line for line in self.opp.line_items if line.parent_id is None]
        if parents and bool(self.draw(st.booleans())):
            parent = pick(self.draw, parents)
            item = attrs.evolve(item, parent_id=parent.id, kind=LineKind.ADD_ON)
        self.run("add_line_item", self.opp.add_line_item, item=item)

    def satisfy(self, stage: Stage) -> None:
        """Fill whatever ``stage`` requires and the deal lacks, each fill a command of its own."""
        for name in stage.required:
            if name not in missing_for(self.opp, stage):
                continue
            if name == "line_items" or (name == "amount" and self.draw(st.booleans())):
                self.add_line()
            elif name == "amount":
                self.update(amount=self.draw(money(self.currency, non_negative=True)))
            elif name == "currency":
                self.update(currency=self.currency)
            elif name == "expected_close":
                self.update(expected_close=self.draw(dates()))
            else:
                self.update(**{name: self.draw(nonblank_texts())})

    # -- the commands -----------------------------------------------------------------

    def move_targets(self) -> list[Stage]:
        source = self.opp.stage
        return [s for s in self.opp.pipeline.stages if graph_allows(self.opp.pipeline, source, s)]

    def closing_targets(self, outcome: Outcome) -> list[Stage]:
        opp = self.opp
        candidates = [s for s in opp.pipeline.stages if s.outcome is outcome]
        if opp.is_open:
            return [s for s in candidates if graph_allows(opp.pipeline, opp.stage, s)]
        return candidates if opp.stage.outcome is outcome else []

    def do_move(self) -> None:
        target = pick(self.draw, self.move_targets())
        self.satisfy(target)
        if target.is_open:
            probability = self.draw(optional(percentages()))
        else:
            probability = pick(self.draw, [None, target.probability])
        self.run("move_to", self.opp.move_to, stage_key=target.key, probability=probability)

    def do_win(self) -> None:
        target = pick(self.draw, self.closing_targets(Outcome.WON))
        if target.key != self.opp.stage_key:
            self.satisfy(target)
        first = self.opp.pipeline.won_stages[0]
        stage = None if target == first and self.draw(st.booleans()) else target.key
        self.run("win", self.opp.win, stage=stage)

    def do_lose(self) -> None:
        target = pick(self.draw, self.closing_targets(Outcome.LOST))
        if target.key != self.opp.stage_key:
            self.satisfy(target)
        first = self.opp.pipeline.lost_stages[0]
        stage = None if target == first and self.draw(st.booleans()) else target.key
        if self.opp.is_open:
            reason = self.draw(optional(nonblank_texts()))
        else:  # already lost: another reason needs a reopen first
            reason = pick(self.draw, [None, self.opp.lost_reason])
        self.run("lose", self.opp.lose, reason=reason, stage=stage)

    def do_reopen(self) -> None:
        target = pick(self.draw, self.opp.pipeline.open_stages)
        self.satisfy(target)
        default = target.key == self.last_open and self.draw(st.booleans())
        self.run("reopen", self.opp.reopen, stage=None if default else target.key)

    def do_update(self) -> None:
        opp = self.opp
        names = self.draw(st.lists(st.sampled_from(UPDATE_FIELDS), unique=True, max_size=4))
        changes: dict[str, Any] = {}
        for name in names:
            if name == "name":
                changes[name] = self.draw(nonblank_texts())
            elif name in _OPTIONAL_TEXT_FIELDS:
                changes[name] = self.draw(optional(nonblank_texts()))
            elif name == "description":
                changes[name] = self.draw(texts())
            elif name == "expected_close":
                changes[name] = self.draw(optional(dates()))
            elif name == "amount":
                changes[name] = self.draw(optional(money(self.currency, non_negative=True)))
            elif name == "probability":
                if opp.is_open:
                    changes[name] = self.draw(optional(percentages()))
                else:
                    changes[name] = pick(self.draw, [None, opp.probability])
            elif name == "currency":
                code = self.currency
                changes[name] = pick(self.draw, [code, code.lower()])
        self.update(**changes)

    def do_remove_line(self) -> None:
        parents = {line.parent_id for line in self.opp.line_items}
        leaves = [line for line in self.opp.line_items if line.id not in parents]
        item = pick(self.draw, leaves)
        self.run("remove_line_item", self.opp.remove_line_item, item_id=item.id)

    def do_update_line(self) -> None:
        item = pick(self.draw, self.opp.line_items)
        changes: dict[str, Any] = self.draw(_line_changes(item.currency))
        has_addons = any(line.parent_id == item.id for line in self.opp.line_items)
        if not has_addons and self.draw(st.booleans()):
            # re-parent: to no line, or to another line that is not an add-on itself
            parents = [
                line.id
                for line in self.opp.line_items
                if line.parent_id is None and line.id != item.id
            ]
            changes["parent_id"] = pick(self.draw, [None, *parents])
        self.run("update_line_item", self.opp.update_line_item, item_id=item.id, **changes)

    def step(self) -> None:
        """Advance the clock, then run one random valid command."""
        self.clock.advance(self.draw(CLOCK_STEPS))
        opp = self.opp
        commands: dict[str, Callable[[], None]] = {
            "update": self.do_update,
            "add_line_item": self.add_line,
        }
        if self.move_targets():
            commands["move_to"] = self.do_move
        if self.closing_targets(Outcome.WON):
            commands["win"] = self.do_win
        if self.closing_targets(Outcome.LOST):
            commands["lose"] = self.do_lose
        if opp.is_closed:
            commands["reopen"] = self.do_reopen
        if opp.line_items:
            commands["remove_line_item"] = self.do_remove_line
            commands["update_line_item"] = self.do_update_line
        commands[pick(self.draw, sorted(commands))]()

    def close(self) -> None:
        """Walk the shortest path of allowed moves to a closed stage."""
        pipeline = self.opp.pipeline
        start = self.opp.stage
        came_from: dict[str, str | None] = {start.key: None}
        queue = deque([start])
        end: Stage | None = None
        while queue and end is None:
            here = queue.popleft()
            for there in pipeline.stages:
                if there.key not in came_from and graph_allows(pipeline, here, there):
                    came_from[there.key] = here.key
                    if not there.is_open:
                        end = there
                        break
                    queue.append(there)
        assert end is not None, "a valid pipeline lets every open stage reach a closed one"
        path: list[str] = []
        key: str | None = end.key
        while key is not None and key != start.key:
            path.append(key)
            key = came_from[key]
        for step in reversed(path):
            self.clock.advance(self.draw(CLOCK_STEPS))
            stage = pipeline.stage(step)
            self.satisfy(stage)
            if stage.is_won:
                self.run("win", self.opp.win, stage=stage.key)
            elif stage.is_lost:
                self.run("lose", self.opp.lose, reason=None, stage=stage.key)
            else:
                self.run("move_to", self.opp.move_to, stage_key=stage.key)


@st.composite
def built_opportunities(
    draw: st.DrawFn,
    *,
    pipeline_strategy: st.SearchStrategy[Pipeline] | None = None,
    max_commands: int = 12,
    closed: bool | None = None,
) -> Built:
    """A valid opportunity made by ``Opportunity.open`` and a random run of valid commands.

    Every command passes ``clock=`` a ``FixedClock`` that only moves forward (often by zero,
    so several events share a time); some commands are back-dated between the previous event
    and the clock's now.  ``closed=True`` ends in a closed stage, ``closed=False`` in an open one.
    """
    pipeline = draw(any_pipelines() if pipeline_strategy is None else pipeline_strategy)
    code = draw(currencies())
    clock = FixedClock(draw(aware_datetimes()))
    stage = pick(draw, (None, *pipeline.stages))
    target = pipeline.first_stage if stage is None else stage
    fields: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "type": optional(nonblank_texts()),
                "currency": st.sampled_from([code, code.lower()]),
                "amount": optional(money(code, non_negative=True)),
                "expected_close": optional(dates()),
                "campaign_id": optional(nonblank_texts()),
                "lead_id": optional(nonblank_texts()),
                "lead_source": optional(nonblank_texts()),
                "owner": optional(nonblank_texts()),
                "account": optional(nonblank_texts()),
                "description": texts(),
            },
        )
    )
    items: list[LineItem] = []
    for index, item in enumerate(draw(st.lists(line_items(code), max_size=3)), start=1):
        item = attrs.evolve(item, id=f"รายการ-{index}")
        parents = [line for line in items if line.parent_id is None]
        if parents and bool(draw(st.booleans())):
            item = attrs.evolve(item, parent_id=pick(draw, parents).id)
        items.append(item)
    for name in target.required:  # open where the deal can be: give what the stage needs
        if name == "line_items" and not items:
            items.append(attrs.evolve(draw(line_items(code)), id=f"รายการ-{len(items) + 1}"))
        elif name == "amount" and fields.get("amount") is None and not items:
            fields["amount"] = draw(money(code, non_negative=True))
        elif name == "currency" and fields.get("currency") is None:
            fields["currency"] = code
        elif name == "expected_close" and fields.get("expected_close") is None:
            fields["expected_close"] = draw(dates())
        elif name not in ("line_items", "amount", "currency", "expected_close") and is_blank(
            fields.get(name)
        ):
            fields[name] = draw(nonblank_texts())
    if target.is_open:
        probability = draw(optional(percentages()))
    else:
        probability = pick(draw, [None, target.probability])
    at = draw(
        st.none()
        | st.timedeltas(timedelta(0), timedelta(days=30)).map(lambda back: clock.now() - back)
    )
    opened: dict[str, Any] = {
        "name": draw(nonblank_texts()),
        "pipeline": pipeline,
        "stage": None if stage is None else stage.key,
        "probability": probability,
        "line_items": tuple(items),
        "id": draw(nonblank_texts(max_size=12)),
        "at": at,
        "by": draw(optional(nonblank_texts())),
        **fields,
    }
    log = [f"open {opened!r}"]
    opp = Opportunity.open(**opened, clock=clock)
    builder = _Builder(draw, opp, clock, code, log)
    for _ in range(draw(st.integers(0, max_commands))):
        builder.step()
    if closed is True and builder.opp.is_open:
        builder.close()
    elif closed is False and builder.opp.is_closed:
        builder.clock.advance(draw(CLOCK_STEPS))
        builder.do_reopen()
    return Built(builder.opp, tuple(builder.states), clock, tuple(log))


def opportunities(
    *,
    pipeline_strategy: st.SearchStrategy[Pipeline] | None = None,
    max_commands: int = 12,
    closed: bool | None = None,
) -> st.SearchStrategy[Opportunity]:
    """A valid opportunity, as ``built_opportunities`` makes it."""
    return built_opportunities(
        pipeline_strategy=pipeline_strategy, max_commands=max_commands, closed=closed
    ).map(lambda built: built.opp)

"""Fuzzing with bad input: only an OppcoreError comes out, a failed command changes nothing,
and nothing hangs.

Every call under test runs inside ``_outcome``: under an alarm (a hang raises ``Hang``, a
``BaseException`` that no ``except Exception`` in the library can swallow) and with a trap
installed as the process default clock, so a test that reached the wall clock would fail.
"""

from __future__ import annotations

import copy
import json
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import oppcore
from oppcore import (
    Campaign,
    DeserializationError,
    Event,
    ExchangeRates,
    FieldsChanged,
    FixedClock,
    ForecastCategory,
    Lead,
    LineItem,
    LineKind,
    MissingRateError,
    Money,
    OppcoreError,
    Opportunity,
    Outcome,
    Pipeline,
    Stage,
    SystemClock,
    serialization,
    using,
)
from oppcore.domain.events import EVENT_TYPES, UPDATABLE_FIELDS

if TYPE_CHECKING:
    from types import FrameType

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=30)
BANGKOK = timezone(timedelta(hours=7))
#: Seconds one call may take before it counts as a hang (the machine is shared and slow).
LIMIT = 10.0
#: ``Event`` is a union, not a class: loads accepts it, mypy needs telling.
EVENT_UNION: Any = Event
LINE_FIELDS = ("product", "unit_price", "quantity", "discount", "kind", "description", "parent_id")


# -- the harness -----------------------------------------------------------------------


class Hang(BaseException):
    """A call ran past its time limit: counted as a hang."""


class WallClockUsed(BaseException):
    """A call reached the process default clock; tests pass ``clock=`` everywhere."""


class _TrapClock:
    def now(self) -> datetime:
        raise WallClockUsed("a call fell back on the process default clock")


TRAP = _TrapClock()


@contextmanager
def _time_limit(seconds: float = LIMIT) -> Iterator[None]:
    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"the call ran longer than {seconds} seconds")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _check_message(error: OppcoreError) -> None:
    message = str(error)
    assert message.strip(), f"{type(error).__name__} has an empty message"
    first = message.splitlines()[0].rstrip()
    assert first.endswith("."), f"message is not a sentence ending with a period: {first!r}"


def _outcome(call: Callable[[], object], seconds: float = LIMIT) -> object:
    """The call's result, or the OppcoreError it raised; any other exception fails the test."""
    with _time_limit(seconds), using(TRAP):
        try:
            return call()
        except OppcoreError as error:
            _check_message(error)
            return error


def _escaped(call: Callable[[], object], seconds: float = LIMIT) -> str | None:
    """None when the call succeeds or raises an OppcoreError; else what escaped."""
    try:
        _outcome(call, seconds)
    except Exception as error:
        return f"{type(error).__name__}: {str(error).splitlines()[0][:100]}"
    return None


def _assert_nothing_escaped(escapes: dict[str, str | None]) -> None:
    """Fail listing every entry point that let a non-OppcoreError out."""
    escaped = [f"{name}: {what}" for name, what in escapes.items() if what]
    assert not escaped, f"{len(escaped)} entry points let another error out:\n" + "\n".join(escaped)


def _assert_round_trips(value: object) -> None:
    """An accepted value serialises and comes back equal."""
    assert serialization.loads(serialization.dumps(value), type(value)) == value


def _check_command(opp: Opportunity, command: Callable[[], object]) -> object:
    """Run a command or query on ``opp``; ``opp`` must come out exactly as it went in.

    The copy taken before is independent of ``opp`` (it went through JSON), and every field
    must still be the very object it was, so neither a mutation nor a rebinding goes unseen.
    """
    text = serialization.dumps(opp)
    before = serialization.loads(text, Opportunity)
    fields = {field.name: getattr(opp, field.name) for field in attrs.fields(Opportunity)}
    version = opp.version

    result = _outcome(command)

    assert opp == before
    assert opp.version == version
    assert serialization.dumps(opp) == text
    for name, value in fields.items():
        assert getattr(opp, name) is value, f"opp.{name} was rebound"
    return result


def _check_new_version(opp: Opportunity, result: object) -> None:
    """A command either failed, or returned the same deal or one with exactly one new event."""
    if isinstance(result, OppcoreError):
        return
    assert isinstance(result, Opportunity)
    assert result.version in (opp.version, opp.version + 1)
    assert result.events[: opp.version] == opp.events
    assert len(result.events) == result.version
    assert Opportunity.replay(result.events) == result
    _assert_round_trips(result)


# -- the pipelines, deals and values used as targets and as valid arguments ---------

GATED = Pipeline(
    id="gated",
    name="ขายองค์กร",
    stages=(
        Stage("lead", "Lead", 5, labels={"th": "ผู้สนใจ"}),
        Stage("qualified", "Qualified", 25, stale_after_days=30),
        Stage(
            "proposal",
            "Proposal",
            60,
            forecast_category=ForecastCategory.COMMIT,
            required=("amount", "expected_close"),
        ),
        Stage("won", "Won", 100, Outcome.WON),
        Stage("won_renewal", "Won renewal", 100, Outcome.WON),
        Stage("lost", "Lost", 0, Outcome.LOST),
        Stage("lost_no_budget", "No budget", 0, Outcome.LOST),
    ),
    transitions={
        "lead": ("qualified", "lost"),
        "qualified": ("proposal", "lost", "lost_no_budget"),
        "proposal": ("won", "won_renewal", "lost"),
    },
    keep_manual_probability=True,
)
PIPELINES = (Pipeline.default(), Pipeline.salesforce(), GATED)
STAGE_KEYS = sorted({stage.key for pipeline in PIPELINES for stage in pipeline.stages})

WIDGET = LineItem("Widget", Money("10.50", "USD"), quantity="2", id="li-1")
SUPPORT = LineItem("Support", Money("99", "USD"), kind=LineKind.ADD_ON, parent_id="li-1", id="li-2")
VALID_ITEMS = (
    LineItem("Gadget", Money("3.25", "USD"), quantity="1.5", discount="10", id="li-3"),
    LineItem("Setup", Money("100", "USD"), kind=LineKind.SERVICE, id="li-4"),
    LineItem("Add-on", Money("5", "USD"), kind=LineKind.ADD_ON, parent_id="li-1", id="li-5"),
    LineItem("Orphan add-on", Money("5", "USD"), parent_id="nope", id="li-6"),
    LineItem("Duplicate id", Money("1", "USD"), id="li-1"),
    LineItem("ซอฟต์แวร์", Money("5100.00", "THB"), id="li-th"),
    LineItem("Yen", Money("500", "JPY"), id="li-jp"),
)


def _bases() -> tuple[Opportunity, ...]:
    clock = FixedClock(T0)
    plain = Opportunity.open(name="Plain", id="plain", clock=clock)
    lined = Opportunity.open(
        name="บริษัท ก — widgets",
        id="lined",
        currency="USD",
        probability="35",
        line_items=[WIDGET, SUPPORT],
        owner="somchai",
        clock=clock,
    )
    clock.advance(timedelta(hours=1))
    lined = lined.move_to("in_progress", clock=clock)
    gated = Opportunity.open(
        name="Gated",
        id="gated",
        pipeline=GATED,
        amount=Money("5000", "THB"),
        expected_close=date(2026, 3, 31),
        clock=clock,
    )
    clock.advance(timedelta(hours=1))
    gated = gated.move_to("qualified", clock=clock).move_to("proposal", clock=clock)
    clock.advance(timedelta(hours=1))
    won = lined.win(clock=clock)
    lost = gated.lose(reason="Budget", clock=clock)
    return plain, lined, gated, won, lost


BASES = _bases()
LINED = BASES[1]


def _story() -> Opportunity:
    """A deal whose events cover all nine event classes."""
    clock = FixedClock(T0)
    opp = Opportunity.open(name="Story", id="story", line_items=[WIDGET], clock=clock)
    steps: list[Callable[[Opportunity], Opportunity]] = [
        lambda o: o.move_to("in_progress", clock=clock),
        lambda o: o.update(owner="somying", expected_close=date(2026, 2, 1), clock=clock),
        lambda o: o.add_line_item(SUPPORT, clock=clock),
        lambda o: o.update_line_item("li-2", quantity="3", clock=clock),
        lambda o: o.remove_line_item("li-2", clock=clock),
        lambda o: o.lose(reason="Price", clock=clock),
        lambda o: o.reopen(clock=clock),
        lambda o: o.win(clock=clock),
    ]
    for step in steps:
        clock.advance(timedelta(minutes=7, microseconds=1))
        opp = step(opp)
    return opp


STORY = _story()
REAL_EVENTS = tuple(event for opp in (*BASES, STORY) for event in opp.events)
RATES = ExchangeRates(
    [("USD", "THB", date(2026, 1, 1), "35.5"), ("EUR", "USD", date(2026, 1, 1), "1.08")]
)

#: Real values whose JSON documents the mutation tests damage: (class to load as, value).
SAMPLES: tuple[tuple[Any, object], ...] = (
    (Money, Money("5.10", "THB")),
    (LineItem, SUPPORT),
    (Stage, GATED.stages[2]),
    (Pipeline, GATED),
    (Pipeline, Pipeline.default()),
    (Lead, Lead("lead-1", "สมหญิง", company="ACME", source="web", created_at=T0)),
    (
        Campaign,
        Campaign(
            "c1",
            "Fair",
            start=date(2026, 1, 1),
            end=date(2026, 1, 31),
            budgeted_cost=Money("1000", "THB"),
            actual_cost=Money("900.50", "THB"),
        ),
    ),
    (Opportunity, STORY),
    (Opportunity, BASES[4]),
    *((type(event), event) for event in STORY.events),
)
TARGETS: tuple[Any, ...] = (
    Money,
    LineItem,
    Stage,
    Pipeline,
    Lead,
    Campaign,
    Opportunity,
    EVENT_UNION,
    *EVENT_TYPES,
)
LOADERS = (oppcore.loads, serialization.loads)


# -- garbage ---------------------------------------------------------------------------

NASTY_TEXT = (
    "",
    " ",
    "\t\n",
    "\x00",
    "\ud800",
    "9" * 5000,
    "1e999999999",
    "-1e999999999",
    "NaN",
    "sNaN",
    "-sNaN",
    "Infinity",
    "-0",
    "0",
    "-1",
    "101",
    "1000",
    "1e-7",
    "0.1234567",
    "1_000",
    "١٢٣",
    "USD",
    "usd",
    "XYZ",
    "wait",
    "closed_won",
    "lost",
    "proposal",
    "li-1",
    "li-2",
    "product",
    "add_on",
    "won",
    "2026-01-05",
    "2026-01-05T09:00:00",
    "2026-01-05T09:00:00+07:00",
    "ปิดการขายได้",
    "x" * 100_001,
)
NASTY_DECIMALS = (
    Decimal("NaN"),
    Decimal("-NaN"),
    Decimal("sNaN"),
    Decimal("-sNaN"),
    Decimal("Infinity"),
    Decimal("-Infinity"),
    Decimal("1e999999999"),
    Decimal("-1e999999999"),
    Decimal("1e-999999999"),
    Decimal("0E+999999999"),
    Decimal("-0"),
    Decimal("-1"),
    Decimal("100.0000001"),
    Decimal("9" * 40),
)
WRONG_OBJECTS: tuple[object, ...] = (
    object(),
    Money("1", "USD"),
    Money("-5", "THB"),
    Money("0", "JPY"),
    WIDGET,
    Pipeline.default(),
    GATED.stages[0],
    Lead("lead-x", "X"),
    Outcome.WON,
    LineKind.SERVICE,
    ForecastCategory.COMMIT,
    Fraction(1, 3),
    complex(1, 2),
    bytearray(b"USD"),
    frozenset({"amount"}),
    range(3),
    {"amount": "1", "currency": "USD"},
    [("USD", "THB", date(2026, 1, 1), "35")],
    int,
    str,
    Decimal,
    datetime,
    NotImplemented,
    Ellipsis,
    time(9, 0),
    T0.date(),
    NOW,
    T0 - timedelta(days=3650),
    datetime(1, 1, 1, tzinfo=BANGKOK),
    datetime.max.replace(tzinfo=timezone(timedelta(hours=-14))),
    datetime(2026, 1, 5, 9, 0),
    timedelta(days=-1),
    timedelta.max,
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, -(2**63), 10**15, 10**15 - 1, -1, 0, 1, 100, 101, 36_501]),
    st.floats(),
    st.decimals(),
    st.sampled_from(NASTY_DECIMALS),
    st.text(max_size=12),
    st.sampled_from(NASTY_TEXT),
    st.binary(max_size=8),
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=st.sampled_from([timezone.utc, BANGKOK])),
    st.timedeltas(),
    st.sampled_from(WRONG_OBJECTS),
)
garbage: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=3),
    ),
    max_leaves=6,
)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid value or garbage."""
    return st.one_of(valid, garbage)


names = st.text(min_size=1, max_size=12)
optional_names = st.none() | names
codes = st.sampled_from(["USD", "THB", "jpy", "EUR", "KWD"])
probabilities = st.integers(0, 100) | st.sampled_from(["12.5", Decimal("50"), "100", "0"])
amounts = st.sampled_from(["10", "5.10", 0, 7, Decimal("999999999999999.999999"), "-3"])
moneys = st.sampled_from([Money("10", "USD"), Money("5000", "THB"), Money("1", "JPY")])
days = st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 12, 31))
recent = st.datetimes(
    min_value=(T0 + timedelta(days=1)).replace(tzinfo=None),
    max_value=NOW.replace(tzinfo=None),
    timezones=st.sampled_from([timezone.utc, BANGKOK]),
)
stage_keys = st.sampled_from(STAGE_KEYS)
items = st.sampled_from((WIDGET, SUPPORT, *VALID_ITEMS))
item_ids = st.sampled_from(["li-1", "li-2", "li-3", "nope"])


def _nested_list(depth: int) -> list[Any]:
    root: list[Any] = []
    node = root
    for _ in range(depth):
        child: list[Any] = []
        node.append(child)
        node = child
    return root


def _nested_dict(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth):
        child: dict[str, Any] = {}
        node["a"] = child
        node = child
    return root


# -- Money and exchange rates ----------------------------------------------------------


@given(maybe(amounts), maybe(codes))
def test_money_accepts_good_input_and_refuses_the_rest_with_an_oppcore_error(
    amount: Any, currency: Any
) -> None:
    """Money(amount, currency) either builds a value that round-trips or raises OppcoreError."""
    result = _outcome(lambda: Money(amount, currency))

    if not isinstance(result, OppcoreError):
        assert isinstance(result, Money)
        _assert_round_trips(result)


@pytest.mark.parametrize(
    "amount",
    ["9" * 5000, "1e999999999", Decimal("1e999999999"), "9" * 10_000_000, "NaN", "sNaN"],
    ids=["5000 nines", "1e999999999", "Decimal 1e999999999", "10 MB of digits", "NaN", "sNaN"],
)
def test_money_refuses_absurd_amounts_quickly(amount: str | Decimal) -> None:
    """Absurd amounts are refused with a ValidationError well inside the time limit."""
    assert isinstance(_outcome(lambda: Money(amount, "USD"), seconds=5), OppcoreError)


rate_rows = st.tuples(maybe(codes), maybe(codes), maybe(days), maybe(amounts))


@given(maybe(st.lists(maybe(rate_rows), max_size=4)))
def test_exchange_rates_refuse_a_bad_table_with_an_oppcore_error(rates: Any) -> None:
    """ExchangeRates(rows) builds or raises OppcoreError, whatever the rows hold."""
    result = _outcome(lambda: ExchangeRates(rates))

    assert isinstance(result, (ExchangeRates, OppcoreError))


@given(maybe(codes), maybe(codes), maybe(days | recent))
def test_exchange_rate_lookups_refuse_bad_input_with_an_oppcore_error(
    base: Any, quote: Any, on: Any
) -> None:
    """rates.rate(base, quote, on=) gives a Decimal, MissingRateError or another OppcoreError."""
    result = _outcome(lambda: RATES.rate(base, quote, on=on))

    assert isinstance(result, (Decimal, OppcoreError))
    if isinstance(result, Decimal):
        assert result.is_finite()
        assert result > 0


@given(maybe(moneys), maybe(codes), maybe(days | recent))
def test_exchange_rate_conversions_refuse_bad_input_with_an_oppcore_error(
    money: Any, to: Any, on: Any
) -> None:
    """rates.convert(money, to, on=) gives Money or an OppcoreError (MissingRateError included)."""
    result = _outcome(lambda: RATES.convert(money, to, on=on))

    assert isinstance(result, (Money, OppcoreError))
    if isinstance(result, MissingRateError):
        assert isinstance(result, LookupError)


# -- stages and pipelines --------------------------------------------------------------

STAGE_VALID: dict[str, st.SearchStrategy[Any]] = {
    "key": names,
    "label": st.text(max_size=12),
    "probability": probabilities,
    "outcome": st.sampled_from([*Outcome, "open", "won", "lost"]),
    "forecast_category": st.none() | st.sampled_from([*ForecastCategory, "commit"]),
    "labels": st.dictionaries(st.sampled_from(["en", "th"]), st.text(max_size=8), max_size=2),
    "required": st.lists(st.sampled_from(["amount", "owner", "expected_close"]), max_size=2),
    "stale_after_days": st.none() | st.integers(1, 36_500),
}


@pytest.mark.parametrize("keyword", sorted(STAGE_VALID))
@given(value=garbage)
def test_stage_refuses_a_bad_value_in_any_argument(keyword: str, value: Any) -> None:
    """Stage(...) with one bad argument builds a round-tripping stage or raises OppcoreError."""
    arguments: dict[str, Any] = {"key": "s", "label": "S", "probability": 10, keyword: value}

    result = _outcome(lambda: Stage(**arguments))

    if not isinstance(result, OppcoreError):
        assert isinstance(result, Stage)
        _assert_round_trips(result)


@given(st.fixed_dictionaries({name: maybe(valid) for name, valid in STAGE_VALID.items()}))
def test_stage_with_any_mix_of_arguments_builds_or_raises_an_oppcore_error(
    arguments: dict[str, Any],
) -> None:
    """Any mix of good and bad Stage arguments builds a valid stage or raises OppcoreError."""
    result = _outcome(lambda: Stage(**arguments))

    if not isinstance(result, OppcoreError):
        assert isinstance(result, Stage)
        _assert_round_trips(result)


stage_lists = st.lists(
    st.sampled_from([stage for p in PIPELINES for stage in p.stages]), max_size=6
)
transition_maps = st.dictionaries(stage_keys, st.lists(stage_keys, max_size=3), max_size=4)
PIPELINE_VALID: dict[str, st.SearchStrategy[Any]] = {
    "id": names,
    "name": st.text(max_size=12),
    "stages": stage_lists | st.sampled_from([p.stages for p in PIPELINES]),
    "transitions": st.none() | transition_maps | st.just(GATED.transitions),
    "keep_manual_probability": st.booleans(),
}


@pytest.mark.parametrize("keyword", sorted(PIPELINE_VALID))
@given(value=garbage)
def test_pipeline_refuses_a_bad_value_in_any_argument(keyword: str, value: Any) -> None:
    """Pipeline(...) with one bad argument builds or raises OppcoreError."""
    arguments: dict[str, Any] = {
        "id": "p",
        "name": "P",
        "stages": GATED.stages,
        "transitions": GATED.transitions,
        keyword: value,
    }

    result = _outcome(lambda: Pipeline(**arguments))

    if not isinstance(result, OppcoreError):
        assert isinstance(result, Pipeline)
        _assert_round_trips(result)


@given(st.fixed_dictionaries({name: maybe(valid) for name, valid in PIPELINE_VALID.items()}))
def test_pipeline_with_any_mix_of_arguments_builds_or_raises_an_oppcore_error(
    arguments: dict[str, Any],
) -> None:
    """Random stages and transitions give a checked pipeline or an OppcoreError."""
    result = _outcome(lambda: Pipeline(**arguments))

    if not isinstance(result, OppcoreError):
        assert isinstance(result, Pipeline)
        _assert_round_trips(result)


@given(garbage)
def test_pipeline_from_dict_refuses_garbage_with_an_oppcore_error(data: Any) -> None:
    """Pipeline.from_dict(anything) gives a pipeline or an OppcoreError."""
    result = _outcome(lambda: Pipeline.from_dict(data))

    assert isinstance(result, (Pipeline, OppcoreError))


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into a tree of dicts and lists, the root included."""
    yield path
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, (*path, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _paths(child, (*path, index))


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = node[step]
    return node


@st.composite
def mutated(draw: st.DrawFn, document: Any, values: st.SearchStrategy[Any]) -> Any:
    """A deep copy of ``document`` with one node replaced, removed, or given an extra key."""
    document = copy.deepcopy(document)
    path = draw(st.sampled_from(list(_paths(document))))
    if not path:
        return draw(values)
    parent, last = _at(document, path[:-1]), path[-1]
    operation = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
    if operation == "delete":
        del parent[last]
    elif operation == "add" and isinstance(parent[last], dict):
        parent[last][draw(st.text(max_size=8) | st.sampled_from(["id", "event", "amount"]))] = draw(
            values
        )
    elif operation == "add" and isinstance(parent[last], list):
        parent[last].append(draw(values))
    else:
        parent[last] = draw(values)
    return document


@given(mutated(GATED.to_dict(), garbage | st.integers()))
@example(
    {
        "id": "p",
        "name": "P",
        "stages": [
            {"key": "a", "label": "A", "probability": "10", 1: "x", "colour": "y"},
            {"key": "w", "label": "W", "probability": "100", "outcome": "won"},
            {"key": "l", "label": "L", "probability": "0", "outcome": "lost"},
        ],
    }
)
def test_pipeline_from_dict_refuses_a_damaged_config_with_an_oppcore_error(data: Any) -> None:
    """A real pipeline config with one part damaged loads or raises OppcoreError."""
    result = _outcome(lambda: Pipeline.from_dict(data))

    if not isinstance(result, OppcoreError):
        assert isinstance(result, Pipeline)
        assert Pipeline.from_dict(result.to_dict()) == result


# -- line items, leads, campaigns ------------------------------------------------------

LINE_VALID: dict[str, st.SearchStrategy[Any]] = {
    "product": names,
    "unit_price": moneys,
    "quantity": st.sampled_from(["1", "2.5", 3, Decimal("0.000001")]),
    "discount": probabilities,
    "kind": st.sampled_from([*LineKind, "service"]),
    "description": st.text(max_size=12),
    "parent_id": st.none() | item_ids,
    "id": st.none() | item_ids,
}


@pytest.mark.parametrize("keyword", sorted(LINE_VALID))
@given(value=garbage)
def test_line_item_refuses_a_bad_value_in_any_argument(keyword: str, value: Any) -> None:
    """LineItem(...) with one bad argument builds a round-tripping line or raises OppcoreError."""
    arguments: dict[str, Any] = {
        "product": "Widget",
        "unit_price": Money("1", "USD"),
        "id": "li-9",
        keyword: value,
    }

    result = _outcome(lambda: LineItem(**arguments))

    if not isinstance(result, OppcoreError):
        assert isinstance(result, LineItem)
        _assert_round_trips(result)


@pytest.mark.parametrize(
    "quantity", ["1e999999999", Decimal("1e999999999"), "9" * 5000, "9" * 10_000_000]
)
def test_line_item_refuses_an_absurd_quantity_quickly(quantity: str | Decimal) -> None:
    """quantity='1e999999999' and 5000 nines are refused well inside the time limit."""
    result = _outcome(lambda: LineItem("Widget", Money("1", "USD"), quantity=quantity), 5)

    assert isinstance(result, OppcoreError)


LEAD_VALID: dict[str, st.SearchStrategy[Any]] = {
    "id": names,
    "name": names,
    "company": optional_names,
    "source": optional_names,
    "campaign_id": optional_names,
    "created_at": st.none() | recent,
}


@pytest.mark.parametrize("keyword", sorted(LEAD_VALID))
@given(value=garbage)
def test_lead_refuses_a_bad_value_in_any_argument(keyword: str, value: Any) -> None:
    """Lead(...) with one bad argument builds a round-tripping lead or raises OppcoreError."""
    arguments: dict[str, Any] = {"id": "lead-1", "name": "Somchai", keyword: value}

    result = _outcome(lambda: Lead(**arguments))

    if not isinstance(result, OppcoreError):
        assert isinstance(result, Lead)
        _assert_round_trips(result)


CAMPAIGN_VALID: dict[str, st.SearchStrategy[Any]] = {
    "id": names,
    "name": names,
    "type": optional_names,
    "start": st.none() | days,
    "end": st.none() | days,
    "budgeted_cost": st.none() | moneys,
    "actual_cost": st.none() | moneys,
}


@pytest.mark.parametrize("keyword", sorted(CAMPAIGN_VALID))
@given(value=garbage)
def test_campaign_refuses_a_bad_value_in_any_argument(keyword: str, value: Any) -> None:
    """Campaign(...) with one bad argument builds a round-tripping campaign or raises OppcoreError."""
    arguments: dict[str, Any] = {"id": "c1", "name": "Fair", keyword: value}

    result = _outcome(lambda: Campaign(**arguments))

    if not isinstance(result, OppcoreError):
        assert isinstance(result, Campaign)
        _assert_round_trips(result)


@given(st.fixed_dictionaries({name: maybe(valid) for name, valid in CAMPAIGN_VALID.items()}))
def test_campaign_with_any_mix_of_arguments_builds_or_raises_an_oppcore_error(
    arguments: dict[str, Any],
) -> None:
    """Dates out of order and costs in two currencies are OppcoreErrors too."""
    result = _outcome(lambda: Campaign(**arguments))

    assert isinstance(result, (Campaign, OppcoreError))


# -- the clock -------------------------------------------------------------------------


@given(maybe(recent))
def test_fixed_clock_refuses_anything_but_an_aware_datetime(at: Any) -> None:
    """FixedClock(at) tells that time back, or raises OppcoreError."""
    result = _outcome(lambda: FixedClock(at))

    if not isinstance(result, OppcoreError):
        assert isinstance(result, FixedClock)
        assert result.now() == at


@given(maybe(recent))
def test_fixed_clock_set_refuses_bad_input_and_keeps_its_time(at: Any) -> None:
    """A refused set() leaves the clock where it was."""
    clock = FixedClock(NOW)

    result = _outcome(lambda: clock.set(at))

    assert clock.now() == (NOW if isinstance(result, OppcoreError) else at)


@given(maybe(st.timedeltas()))
def test_fixed_clock_advance_refuses_bad_input_and_keeps_its_time(delta: Any) -> None:
    """A refused advance() (a non-timedelta, or one that leaves the calendar) changes nothing."""
    clock = FixedClock(NOW)

    result = _outcome(lambda: clock.advance(delta))

    assert clock.now() == (NOW if isinstance(result, OppcoreError) else NOW + delta)


# -- opening a deal --------------------------------------------------------------------

OPEN_VALID: dict[str, st.SearchStrategy[Any]] = {
    "name": names,
    "pipeline": st.none() | st.sampled_from(PIPELINES),
    "stage": st.none() | stage_keys,
    "type": optional_names,
    "amount": st.none() | moneys,
    "currency": st.none() | codes,
    "probability": st.none() | probabilities,
    "expected_close": st.none() | days,
    "campaign_id": optional_names,
    "lead_id": optional_names,
    "lead_source": optional_names,
    "owner": optional_names,
    "account": optional_names,
    "description": st.text(max_size=12),
    "line_items": st.lists(items, max_size=3) | st.tuples(items, items),
    "id": st.none() | names,
    "at": st.none() | recent,
    "by": optional_names,
}


def _check_opened(result: object) -> None:
    if not isinstance(result, OppcoreError):
        assert isinstance(result, Opportunity)
        assert result.version == 1
        assert Opportunity.replay(result.events) == result
        _assert_round_trips(result)


@pytest.mark.parametrize("keyword", sorted(OPEN_VALID))
@given(value=garbage)
def test_opening_a_deal_refuses_a_bad_value_in_any_keyword(keyword: str, value: Any) -> None:
    """Opportunity.open with one bad keyword opens a sound deal or raises OppcoreError."""
    arguments: dict[str, Any] = {"name": "Deal", keyword: value}

    _check_opened(_outcome(lambda: Opportunity.open(clock=FixedClock(NOW), **arguments)))


@given(
    st.fixed_dictionaries(
        {"name": maybe(names)},
        optional={name: maybe(valid) for name, valid in OPEN_VALID.items() if name != "name"},
    )
)
def test_opening_a_deal_with_any_mix_of_keywords_opens_or_raises_an_oppcore_error(
    arguments: dict[str, Any],
) -> None:
    """Stages, currencies, amounts and lines that disagree give an OppcoreError, never another."""
    _check_opened(_outcome(lambda: Opportunity.open(clock=FixedClock(NOW), **arguments)))


@given(
    st.fixed_dictionaries(
        {},
        optional={
            name: maybe(valid)
            for name, valid in OPEN_VALID.items()
            if name not in ("at", "by", "id")
        }
        | {"lead_id": garbage, "lead_source": garbage},
    )
)
def test_converting_a_lead_with_any_fields_opens_or_raises_an_oppcore_error(
    fields: dict[str, Any],
) -> None:
    """lead.convert(**fields) opens a deal that carries the lead, or raises OppcoreError."""
    lead = Lead("lead-1", "Somchai", company="ACME", source="web", campaign_id="c1")

    result = _outcome(lambda: lead.convert(clock=FixedClock(NOW), **fields))

    _check_opened(result)
    if isinstance(result, Opportunity):
        assert (result.lead_id, result.lead_source) == ("lead-1", "web")


@pytest.mark.parametrize("keyword", ["colour", "stage_key"])
def test_converting_a_lead_with_an_unknown_keyword_raises_an_oppcore_error(keyword: str) -> None:
    """lead.convert(colour=...) is refused like update(colour=...): with a ValidationError."""
    lead = Lead("lead-1", "Somchai")

    fields: dict[str, Any] = {keyword: "red"}

    result = _outcome(lambda: lead.convert(clock=FixedClock(NOW), **fields))

    assert isinstance(result, OppcoreError)


# -- commands on a deal ----------------------------------------------------------------

deals = st.sampled_from(BASES)
clock_at_now = st.builds(FixedClock, st.just(NOW))


@given(
    deals,
    maybe(stage_keys),
    maybe(st.none() | probabilities),
    maybe(st.none() | recent),
    maybe(optional_names),
)
def test_move_to_refuses_bad_input_and_leaves_the_deal_unchanged(
    opp: Opportunity, stage_key: Any, probability: Any, at: Any, by: Any
) -> None:
    """move_to with any arguments returns one new version or raises OppcoreError, opp untouched."""
    result = _check_command(
        opp,
        lambda: opp.move_to(
            stage_key, probability=probability, at=at, by=by, clock=FixedClock(NOW)
        ),
    )

    _check_new_version(opp, result)


@given(deals, maybe(st.none() | stage_keys), maybe(st.none() | recent), maybe(optional_names))
def test_win_refuses_bad_input_and_leaves_the_deal_unchanged(
    opp: Opportunity, stage: Any, at: Any, by: Any
) -> None:
    """win(stage=, at=, by=) returns one new version or raises OppcoreError, opp untouched."""
    result = _check_command(opp, lambda: opp.win(stage=stage, at=at, by=by, clock=FixedClock(NOW)))

    _check_new_version(opp, result)


@given(deals, maybe(optional_names), maybe(st.none() | stage_keys), maybe(st.none() | recent))
def test_lose_refuses_bad_input_and_leaves_the_deal_unchanged(
    opp: Opportunity, reason: Any, stage: Any, at: Any
) -> None:
    """lose(reason=, stage=, at=) returns one new version or raises OppcoreError, opp untouched."""
    result = _check_command(
        opp, lambda: opp.lose(reason=reason, stage=stage, at=at, clock=FixedClock(NOW))
    )

    _check_new_version(opp, result)


@given(deals, maybe(st.none() | stage_keys), maybe(st.none() | recent), maybe(optional_names))
def test_reopen_refuses_bad_input_and_leaves_the_deal_unchanged(
    opp: Opportunity, stage: Any, at: Any, by: Any
) -> None:
    """reopen(stage=, at=, by=) returns one new version or raises OppcoreError, opp untouched."""
    result = _check_command(
        opp, lambda: opp.reopen(stage=stage, at=at, by=by, clock=FixedClock(NOW))
    )

    _check_new_version(opp, result)


UPDATE_VALID: dict[str, st.SearchStrategy[Any]] = {
    "name": names,
    "type": optional_names,
    "amount": st.none() | moneys,
    "currency": st.none() | codes,
    "probability": st.none() | probabilities,
    "expected_close": st.none() | days,
    "campaign_id": optional_names,
    "lead_id": optional_names,
    "lead_source": optional_names,
    "owner": optional_names,
    "account": optional_names,
    "description": st.text(max_size=12),
}
UNKNOWN_KEYWORDS = (
    "stage",
    "version",
    "id",
    "pipeline",
    "line_items",
    "manual_amount",
    "closed_at",
    "lost_reason",
    "events",
    "expected_revenue",
    "",
    "ชื่อ",
)
assert set(UPDATE_VALID) == set(UPDATABLE_FIELDS)


@st.composite
def changes(
    draw: st.DrawFn, valid: dict[str, st.SearchStrategy[Any]], unknown: tuple[str, ...]
) -> dict[str, Any]:
    """Keyword arguments: some known fields with good or bad values, sometimes an unknown one."""
    chosen = draw(st.lists(st.sampled_from(sorted(valid)), max_size=4, unique=True))
    result = {name: draw(maybe(valid[name])) for name in chosen}
    if draw(st.integers(0, 4)) == 0:
        result[draw(st.sampled_from(unknown))] = draw(garbage)
    return result


@pytest.mark.parametrize("keyword", sorted(UPDATE_VALID))
@given(opp=deals, value=garbage)
def test_update_refuses_a_bad_value_for_each_field_and_leaves_the_deal_unchanged(
    keyword: str, opp: Opportunity, value: Any
) -> None:
    """update(<field>=garbage) returns one new version or raises OppcoreError, opp untouched."""
    result = _check_command(opp, lambda: opp.update(clock=FixedClock(NOW), **{keyword: value}))

    _check_new_version(opp, result)


@given(deals, changes(UPDATE_VALID, UNKNOWN_KEYWORDS), maybe(st.none() | recent))
def test_update_with_any_mix_of_changes_leaves_the_deal_unchanged_when_it_fails(
    opp: Opportunity, fields: dict[str, Any], at: Any
) -> None:
    """update(**changes) with good, bad and unknown keywords never corrupts the deal."""
    result = _check_command(opp, lambda: opp.update(at=at, clock=FixedClock(NOW), **fields))

    _check_new_version(opp, result)
    if set(fields) - set(UPDATABLE_FIELDS):
        assert isinstance(result, OppcoreError)


@given(deals, maybe(items), maybe(st.none() | recent), maybe(optional_names))
def test_add_line_item_refuses_bad_input_and_leaves_the_deal_unchanged(
    opp: Opportunity, item: Any, at: Any, by: Any
) -> None:
    """add_line_item with a non-line, a duplicate id or a foreign currency raises OppcoreError."""
    result = _check_command(
        opp, lambda: opp.add_line_item(item, at=at, by=by, clock=FixedClock(NOW))
    )

    _check_new_version(opp, result)


@given(deals, maybe(item_ids), maybe(st.none() | recent))
def test_remove_line_item_refuses_bad_input_and_leaves_the_deal_unchanged(
    opp: Opportunity, item_id: Any, at: Any
) -> None:
    """remove_line_item of an unknown id or a parent with add-ons raises OppcoreError."""
    result = _check_command(
        opp, lambda: opp.remove_line_item(item_id, at=at, clock=FixedClock(NOW))
    )

    _check_new_version(opp, result)


@given(
    deals,
    maybe(item_ids),
    changes(LINE_VALID, ("id", "total", "currency", "amount", "colour")),
    maybe(st.none() | recent),
)
def test_update_line_item_refuses_bad_input_and_leaves_the_deal_unchanged(
    opp: Opportunity, item_id: Any, fields: dict[str, Any], at: Any
) -> None:
    """update_line_item(id, **changes) returns one new version or raises OppcoreError."""
    result = _check_command(
        opp,
        lambda: opp.update_line_item(item_id, at=at, clock=FixedClock(NOW), **fields),
    )

    _check_new_version(opp, result)
    if set(fields) - set(LINE_FIELDS):
        assert isinstance(result, OppcoreError)


@given(deals, maybe(st.none() | recent), maybe(clock_at_now).filter(lambda c: c is not None))
def test_time_in_stage_refuses_bad_input_and_leaves_the_deal_unchanged(
    opp: Opportunity, now: Any, clock: Any
) -> None:
    """time_in_stage(now=, clock=) gives a dict of timedeltas or raises OppcoreError."""
    result = _check_command(opp, lambda: opp.time_in_stage(now=now, clock=clock))

    if not isinstance(result, OppcoreError):
        assert isinstance(result, dict)
        assert all(isinstance(spent, timedelta) for spent in result.values())
        assert set(result) <= {stage.key for stage in opp.pipeline.stages}


@given(deals, maybe(recent | st.just(T0)))
def test_as_of_refuses_bad_input_and_leaves_the_deal_unchanged(opp: Opportunity, t: Any) -> None:
    """as_of(t) gives None, or the deal as it was, or raises OppcoreError."""
    result = _check_command(opp, lambda: opp.as_of(t))

    if result is not None and not isinstance(result, OppcoreError):
        assert isinstance(result, Opportunity)
        assert result.events == opp.events[: result.version]


@given(deals, maybe(recent | st.just(T0)))
def test_as_known_at_refuses_bad_input_and_leaves_the_deal_unchanged(
    opp: Opportunity, t: Any
) -> None:
    """as_known_at(t) gives None, or the deal as recorded by then, or raises OppcoreError."""
    result = _check_command(opp, lambda: opp.as_known_at(t))

    if result is not None and not isinstance(result, OppcoreError):
        assert isinstance(result, Opportunity)
        assert result.events == opp.events[: result.version]


BAD_CLOCKS = (type(None), FixedClock, SystemClock, datetime, NOW.isoformat(), NOW, 0, object())
BAD_CLOCK_IDS = [
    "NoneType",
    "the FixedClock class",
    "the SystemClock class",
    "the datetime class",
    "text",
    "a datetime",
    "zero",
    "object()",
]


@pytest.mark.parametrize("clock", BAD_CLOCKS, ids=BAD_CLOCK_IDS)
def test_every_command_refuses_something_that_is_not_a_clock(clock: Any) -> None:
    """clock= given a class, a datetime or text raises OppcoreError from every command."""
    opp = LINED
    calls: dict[str, Callable[[], object]] = {
        "open": lambda: Opportunity.open(name="Deal", clock=clock),
        "move_to": lambda: opp.move_to("wait", clock=clock),
        "win": lambda: opp.win(clock=clock),
        "lose": lambda: opp.lose(clock=clock),
        "update": lambda: opp.update(owner="x", clock=clock),
        "add_line_item": lambda: opp.add_line_item(VALID_ITEMS[0], clock=clock),
        "remove_line_item": lambda: opp.remove_line_item("li-2", clock=clock),
        "update_line_item": lambda: opp.update_line_item("li-1", quantity=5, clock=clock),
        "time_in_stage": lambda: opp.time_in_stage(clock=clock),
        "convert": lambda: Lead("l", "L").convert(clock=clock),
    }

    escapes = {name: _escaped(call) for name, call in calls.items()}

    _assert_nothing_escaped(escapes)


# -- replay ----------------------------------------------------------------------------


@given(maybe(st.lists(maybe(st.sampled_from(REAL_EVENTS)), max_size=5)))
@example(None)
@example(5)
def test_replay_refuses_a_garbage_event_list_with_an_oppcore_error(events: Any) -> None:
    """Opportunity.replay(anything) rebuilds a deal or raises OppcoreError."""
    result = _outcome(lambda: Opportunity.replay(events))

    assert isinstance(result, (Opportunity, OppcoreError))


@given(
    st.one_of(
        st.lists(st.sampled_from(REAL_EVENTS), max_size=10),
        st.sampled_from([*BASES, STORY]).flatmap(lambda opp: st.permutations(opp.events)),
    )
)
def test_replay_of_real_events_in_any_order_rebuilds_exactly_or_refuses(events: list[Any]) -> None:
    """Shuffled, repeated or mixed events from real deals replay exactly or raise OppcoreError."""
    result = _outcome(lambda: Opportunity.replay(events))

    if not isinstance(result, OppcoreError):
        assert isinstance(result, Opportunity)
        assert result.events == tuple(events)
        _assert_round_trips(result)


FIELD_LISTS = st.sampled_from(
    [("foo",), ("at",), ("version",), ("name", "name"), ["name"], (), ("pipeline",), ("fields",)]
)


@st.composite
def damaged_events(draw: st.DrawFn, event: Any) -> Any:
    """``event`` with one field replaced by garbage (events are plain attrs classes)."""
    field = draw(st.sampled_from([f.name for f in attrs.fields(type(event))]))
    value: Any = draw(garbage | FIELD_LISTS if field == "fields" else garbage)
    return _with(event, **{field: value})


@st.composite
def damaged_histories(draw: st.DrawFn) -> list[Any]:
    """A real deal's events with one field of one event replaced by garbage."""
    opp = draw(st.sampled_from([*BASES, STORY]))
    events = list(opp.events)
    index = draw(st.integers(0, len(events) - 1))
    events[index] = draw(damaged_events(events[index]))
    return events


def _with(event: Any, **changes: Any) -> Any:
    """``event`` rebuilt with ``changes``, or the OppcoreError the event raised on being built
    (events check their own fields)."""
    return _outcome(lambda: attrs.evolve(event, **changes))


STORY_CHANGE = next(e for e in STORY.events if isinstance(e, FieldsChanged))


@given(damaged_histories())
@example(  # name is not among the fields this event changes, so replay never looks at it
    [_with(e, name=True) if e is STORY_CHANGE else e for e in STORY.events]
)
@example([_with(BASES[0].events[0], line_items=[])])  # a list where a tuple belongs
def test_replay_refuses_events_with_a_garbage_field_with_an_oppcore_error(
    events: list[Any],
) -> None:
    """A wrong-typed field is refused when the event is built, or replay raises OppcoreError."""
    if any(isinstance(event, OppcoreError) for event in events):
        return  # the damaged event refused its garbage with an OppcoreError (see _with)
    result = _outcome(lambda: Opportunity.replay(events))

    if not isinstance(result, OppcoreError):
        assert isinstance(result, Opportunity)
        _assert_round_trips(result)


@given(st.sampled_from(REAL_EVENTS).flatmap(damaged_events))
@example(_with(STORY_CHANGE, amount=True))
@example(_with(STORY.events[0], line_items=[1]))
def test_dumps_of_an_event_with_a_garbage_field_gives_text_or_an_oppcore_error(event: Any) -> None:
    """A hand-built event with a wrong-typed value is refused, or dumps() writes JSON that loads."""
    if isinstance(event, OppcoreError):
        return  # refused when built (see _with)
    result = _outcome(lambda: serialization.dumps(event))

    if isinstance(result, str):
        _check_loaded(_outcome(lambda: oppcore.loads(result, EVENT_UNION)), EVENT_UNION)


# -- loads -----------------------------------------------------------------------------


def _check_loaded(result: object, target: Any) -> None:
    """loads gave a value of the target class that round-trips, or a DeserializationError
    whose errors each carry a path."""
    if isinstance(result, OppcoreError):
        assert isinstance(result, DeserializationError), f"loads raised {type(result).__name__}"
        assert result.errors, "DeserializationError without any error lines"
        for line in result.errors:
            assert " @ $" in line, f"error line without a path: {line!r}"
        return
    if target is EVENT_UNION:
        assert isinstance(result, EVENT_TYPES)
    else:
        assert isinstance(result, target)
    assert serialization.loads(serialization.dumps(result), target) == result


targets = st.sampled_from(TARGETS)
loaders = st.sampled_from(LOADERS)


@given(loaders, st.text() | st.sampled_from(NASTY_TEXT), targets)
def test_loads_of_arbitrary_text_gives_a_value_or_a_deserialization_error(
    load: Callable[[Any, Any], object], text: str, target: Any
) -> None:
    """Any text read as any class is a value or a DeserializationError with paths."""
    _check_loaded(_outcome(lambda: load(text, target)), target)


@given(st.binary(max_size=64), targets)
def test_loads_of_arbitrary_bytes_gives_a_value_or_a_deserialization_error(
    data: bytes, target: Any
) -> None:
    """Bytes that are not UTF-8 JSON are a DeserializationError, not a UnicodeDecodeError."""
    _check_loaded(_outcome(lambda: oppcore.loads(data, target)), target)


JSON_NASTY = st.sampled_from(
    [
        "9" * 5000,
        "1e999999999",
        "-1",
        "0",
        "NaN",
        "",
        "USD",
        "2026-01-05T09:00:00",
        "2026-01-05T09:00:00+07:00",
        "2026-01-05",
        "2026-W02-1",
        "Opened",
        "Won",
        "product",
        "wait",
        10**20,
        -1,
        0,
        {"amount": "1", "currency": "USD"},
        {"event": "Opened"},
    ]
)
FIELD_NAMES = sorted(
    {f.name for cls in (LineItem, Lead, Campaign, *EVENT_TYPES) for f in attrs.fields(cls)}
    | {"amount", "currency", "key", "label", "probability", "stages", "events", "event"}
)
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
    | JSON_NASTY,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=6) | st.sampled_from(FIELD_NAMES), inner, max_size=4)
    ),
    max_leaves=10,
)


@given(loaders, json_values, targets)
def test_loads_of_arbitrary_json_gives_a_value_or_a_deserialization_error(
    load: Callable[[Any, Any], object], document: Any, target: Any
) -> None:
    """Any JSON document read as any class is a value or a DeserializationError with paths."""
    text = json.dumps(document)

    _check_loaded(_outcome(lambda: load(text, target)), target)


@given(
    st.sampled_from(SAMPLES).flatmap(
        lambda sample: st.tuples(
            st.just(sample[0]),
            mutated(json.loads(serialization.dumps(sample[1])), json_values),
        )
    ),
    st.booleans(),
)
def test_loads_of_a_real_document_with_one_part_damaged_gives_a_value_or_a_listed_error(
    sample: tuple[Any, Any], ascii_only: bool
) -> None:
    """A dumps() document with one leaf replaced, removed or added loads or lists its errors."""
    target, document = sample
    text = json.dumps(document, ensure_ascii=ascii_only)

    _check_loaded(_outcome(lambda: oppcore.loads(text, target)), target)
    if target in EVENT_TYPES:
        _check_loaded(_outcome(lambda: oppcore.loads(text, EVENT_UNION)), EVENT_UNION)


def _line_document(quantity: str) -> str:
    document = json.loads(serialization.dumps(WIDGET))
    document["quantity"] = "QUANTITY"
    return json.dumps(document).replace('"QUANTITY"', quantity)


PATHOLOGICAL = {
    "100000 open brackets": "[" * 100_000,
    "50000 nested objects": '{"a":' * 50_000,
    "900 nested lists": "[" * 900 + "]" * 900,
    "10 MB of digits": "9" * 10_000_000,
    "a 10 MB string of digits": '"' + "9" * 10_000_000 + '"',
    "a 10 MB fraction": "0." + "1" * 10_000_000,
    "1e999999999": "1e999999999",
    "amount of 5000 nines": '{"amount": "' + "9" * 5000 + '", "currency": "USD"}',
    "amount 1e999999999": '{"amount": "1e999999999", "currency": "USD"}',
    "quantity 1e999999999": _line_document("1e999999999"),
    "quantity '1e999999999'": _line_document('"1e999999999"'),
    "quantity of 5000 nines": _line_document("9" * 5000),
    "quantity of a 10 MB fraction": _line_document("0." + "1" * 10_000_000),
    "quantity 4300 digits": _line_document("9" * 4300),
    "a 10 MB product name": json.dumps(
        {**json.loads(serialization.dumps(WIDGET)), "product": "p" * 10_000_000}
    ),
}


@pytest.mark.parametrize("text", PATHOLOGICAL.values(), ids=list(PATHOLOGICAL))
def test_loads_of_a_pathological_document_is_refused_quickly_for_every_class(text: str) -> None:
    """Deep nesting, huge numbers and huge strings are DeserializationErrors within seconds."""
    for target in TARGETS:
        result = _outcome(lambda: oppcore.loads(text, target), seconds=5)  # noqa: B023
        assert isinstance(result, DeserializationError), f"{target} gave {result!r:.200}"
        _check_loaded(result, target)


def test_loads_of_a_long_chain_of_stages_finishes_quickly() -> None:
    """10000 stages in a chain, only the last reaching a close, load (or not) within 3 s."""
    count = 10_000
    stages = [{"key": f"s{i}", "label": "S", "probability": "10"} for i in range(count)]
    stages += [
        {"key": "won", "label": "Won", "probability": "100", "outcome": "won"},
        {"key": "lost", "label": "Lost", "probability": "0", "outcome": "lost"},
    ]
    transitions = {f"s{i}": [f"s{i + 1}"] for i in range(count - 1)}
    transitions[f"s{count - 1}"] = ["won", "lost"]
    text = json.dumps({"id": "long", "name": "Long", "stages": stages, "transitions": transitions})

    result = _outcome(lambda: oppcore.loads(text, Pipeline), seconds=3)

    assert isinstance(result, (Pipeline, DeserializationError))


# -- one root cause, every entry point -------------------------------------------------


def _call_sites(value: Any) -> dict[str, Callable[[], object]]:
    """Every public constructor and command, with ``value`` in one argument."""
    opp = LINED

    def clock() -> FixedClock:
        return FixedClock(NOW)

    return {
        "Money(amount)": lambda: Money(value, "USD"),
        "Money(currency)": lambda: Money("1", value),
        "ExchangeRates(rates)": lambda: ExchangeRates(value),
        "ExchangeRates(rate)": lambda: ExchangeRates([("USD", "THB", date(2026, 1, 1), value)]),
        "rates.rate(on=)": lambda: RATES.rate("USD", "THB", on=value),
        "rates.convert(money)": lambda: RATES.convert(value, "THB", on=date(2026, 2, 1)),
        "Stage(key)": lambda: Stage(value, "S", 10),
        "Stage(probability)": lambda: Stage("s", "S", value),
        "Stage(outcome)": lambda: Stage("s", "S", 10, outcome=value),
        "Stage(labels)": lambda: Stage("s", "S", 10, labels=value),
        "Stage(required)": lambda: Stage("s", "S", 10, required=value),
        "Stage(stale_after_days)": lambda: Stage("s", "S", 10, stale_after_days=value),
        "Pipeline(id)": lambda: Pipeline(value, "P", GATED.stages),
        "Pipeline(stages)": lambda: Pipeline("p", "P", value),
        "Pipeline(transitions)": lambda: Pipeline("p", "P", GATED.stages, transitions=value),
        "Pipeline.from_dict": lambda: Pipeline.from_dict(value),
        "LineItem(product)": lambda: LineItem(value, Money("1", "USD")),
        "LineItem(quantity)": lambda: LineItem("p", Money("1", "USD"), quantity=value),
        "LineItem(kind)": lambda: LineItem("p", Money("1", "USD"), kind=value),
        "Lead(id)": lambda: Lead(value, "L"),
        "Lead(created_at)": lambda: Lead("l", "L", created_at=value),
        "Lead.convert(name=)": lambda: Lead("l", "L").convert(name=value, clock=clock()),
        "Campaign(start)": lambda: Campaign("c", "C", start=value),
        "Campaign(budgeted_cost)": lambda: Campaign("c", "C", budgeted_cost=value),
        "FixedClock(at)": lambda: FixedClock(value),
        "FixedClock.set": lambda: clock().set(value),
        "FixedClock.advance": lambda: clock().advance(value),
        "Opportunity.open(name)": lambda: Opportunity.open(name=value, clock=clock()),
        "Opportunity.open(probability)": lambda: Opportunity.open(
            name="D", probability=value, clock=clock()
        ),
        "Opportunity.open(line_items)": lambda: Opportunity.open(
            name="D", line_items=value, clock=clock()
        ),
        "Opportunity.open(at)": lambda: Opportunity.open(name="D", at=value, clock=clock()),
        "Opportunity.open(clock)": lambda: Opportunity.open(name="D", clock=value),
        "move_to(stage_key)": lambda: opp.move_to(value, clock=clock()),
        "move_to(probability)": lambda: opp.move_to("wait", probability=value, clock=clock()),
        "win(stage)": lambda: opp.win(stage=value, clock=clock()),
        "lose(reason)": lambda: opp.lose(reason=value, clock=clock()),
        "reopen(stage)": lambda: BASES[3].reopen(stage=value, clock=clock()),
        "update(name)": lambda: opp.update(name=value, clock=clock()),
        "update(probability)": lambda: opp.update(probability=value, clock=clock()),
        "update(at)": lambda: opp.update(owner="x", at=value, clock=clock()),
        "add_line_item": lambda: opp.add_line_item(value, clock=clock()),
        "remove_line_item": lambda: opp.remove_line_item(value, clock=clock()),
        "update_line_item(id)": lambda: opp.update_line_item(value, quantity=2, clock=clock()),
        "update_line_item(quantity)": lambda: opp.update_line_item(
            "li-1", quantity=value, clock=clock()
        ),
        "time_in_stage(now)": lambda: opp.time_in_stage(now=value),
        "as_of": lambda: opp.as_of(value),
        "as_known_at": lambda: opp.as_known_at(value),
        "Opportunity.replay": lambda: Opportunity.replay(value),
        "Opportunity.replay([value])": lambda: Opportunity.replay([value]),
        "loads(value)": lambda: oppcore.loads(value, Money),
        "dumps(value)": lambda: serialization.dumps(value),
        "dumps(an event holding value)": lambda: serialization.dumps(
            _with(opp.events[-1], by=value)
        ),
    }


@pytest.mark.parametrize(
    "value",
    [10**5000, {"amount": [-(10**5000)]}],
    ids=["10**5000", "-10**5000 inside a dict"],
)
def test_a_huge_integer_is_refused_with_an_oppcore_error_everywhere(value: object) -> None:
    """An int too long to print (over 4300 digits) is refused, not a ValueError from repr()."""
    escapes = {name: _escaped(call) for name, call in _call_sites(value).items()}

    _assert_nothing_escaped(escapes)


@pytest.mark.parametrize(
    "value",
    [_nested_list(100_000), _nested_dict(100_000)],
    ids=["a list nested 100000 deep", "a dict nested 100000 deep"],
)
def test_deeply_nested_input_is_refused_with_an_oppcore_error_everywhere(value: object) -> None:
    """A structure too deep to repr() is refused, not a RecursionError, and nothing hangs."""
    escapes = {name: _escaped(call) for name, call in _call_sites(value).items()}

    _assert_nothing_escaped(escapes)


@pytest.mark.parametrize(
    "value",
    ["9" * 10_000_000, "1e999999999", Decimal("1e999999999"), "x" * 100_001],
    ids=["10 MB of digits", "'1e999999999'", "Decimal 1e999999999", "100001 characters"],
)
def test_huge_text_and_numbers_are_refused_quickly_everywhere(value: object) -> None:
    """Every entry point answers a 10 MB string or a 1e999999999 within the time limit."""
    escapes = {name: _escaped(call, seconds=5) for name, call in _call_sites(value).items()}

    _assert_nothing_escaped(escapes)

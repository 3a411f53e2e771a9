"""JSON for every domain value and event, through one cattrs converter that oppcore owns.

``dumps(value)`` and ``loads(text, cls)`` round-trip exactly: ``loads(dumps(x), type(x)) == x``,
Decimal digits, time zones and non-ASCII text included.  ``loads`` checks everything it reads
with the same rules as the constructors, and a malformed document raises one
``DeserializationError`` that lists each problem with its path, such as
``invalid value: Quantity '-1' must be more than zero. @ $.line_items[2].quantity``.

``parse_json(text)`` is oppcore's one JSON entrance: ``loads``, ``oppcore.io.load_json`` and
the stores' records all parse through it, with one set of limits (``MAX_DOCUMENT``,
``MAX_DEPTH``, ``MAX_NUMBER_LENGTH``, ``MAX_EXPONENT``) and one error for what they refuse.
"""

from __future__ import annotations

import copy
import enum
import json
import re
import typing
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeVar

import attrs
from cattrs import Converter
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.strategies import configure_tagged_union
from cattrs.v import format_exception, transform_error

from oppcore.domain import _checks
from oppcore.domain.events import EVENT_TYPES, Event
from oppcore.domain.lead import Campaign, Lead
from oppcore.domain.line_items import LineItem
from oppcore.domain.money import Money, currency_code
from oppcore.domain.opportunity import Opportunity
from oppcore.domain.stages import Pipeline, Stage
from oppcore.exceptions import DeserializationError, OppcoreError, ValidationError

T = TypeVar("T")

#: The key that names an event's class in its JSON object.
EVENT_TAG = "event"

# The limits of every JSON text oppcore reads (see parse_json and docs/concepts/serialization.md).
#: The longest JSON text read: characters of a ``str``, bytes of UTF-8.
MAX_DOCUMENT = 256 * 1024 * 1024
#: How deep arrays and objects may nest (oppcore's own documents nest fewer than 12 levels).
MAX_DEPTH = 64
#: The longest number literal, in characters (digits, sign, point and exponent).
MAX_NUMBER_LENGTH = 100
#: The largest power of ten a number may have, either way: ``1e100`` is read, ``1e101`` not.
MAX_EXPONENT = 100
#: A report of what parse_json refused stops after this many lines.
MAX_PROBLEMS = 20

_ATTRS_CLASSES: tuple[type, ...] = (LineItem, Lead, Campaign, *EVENT_TYPES)


def make_converter() -> Converter:
    """A new converter configured for oppcore's values; register nothing on the global one."""
    converter = Converter(detailed_validation=True)

    converter.register_structure_hook(str, _strict(str, "text"))
    converter.register_structure_hook(bool, _strict(bool, "true or false"))
    converter.register_structure_hook(int, _structure_int)
    converter.register_unstructure_hook(Decimal, str)
    # str-based enums would otherwise pass through as enum members: write plain values.
    converter.register_unstructure_hook_func(
        lambda kind: isinstance(kind, type) and issubclass(kind, enum.Enum),
        lambda member: member.value,
    )
    converter.register_structure_hook(Decimal, _structure_decimal)
    converter.register_unstructure_hook(datetime, datetime.isoformat)
    converter.register_structure_hook(datetime, _structure_datetime)
    converter.register_unstructure_hook(date, date.isoformat)
    converter.register_structure_hook(date, _structure_date)
    converter.register_unstructure_hook(Money, _unstructure_money)
    converter.register_structure_hook(Money, _structure_money)
    converter.register_unstructure_hook(Stage, Stage.to_dict)
    converter.register_structure_hook(Stage, lambda data, _: _from_dict(Stage, data))
    converter.register_unstructure_hook(Pipeline, Pipeline._shared_dict)
    converter.register_structure_hook(Pipeline, _pipeline_hook())
    converter.register_structure_hook_factory(_is_variadic_tuple, _variadic_tuple_hook)
    for cls in _ATTRS_CLASSES:
        converter.register_structure_hook(cls, _attrs_hook(converter, cls))
    configure_tagged_union(
        Event, converter, tag_generator=lambda cls: cls.__name__, tag_name=EVENT_TAG
    )
    # Structure the union ourselves, so that a missing or unknown tag is named as such.
    converter.register_structure_hook(Event, _event_hook(converter))
    converter.register_unstructure_hook(
        Opportunity,
        lambda opp: {
            "events": [converter.unstructure(e, unstructure_as=Event) for e in opp.events]
        },
    )
    converter.register_structure_hook(Opportunity, _opportunity_hook(converter))
    return converter


# -- scalar hooks ----------------------------------------------------------------------


def _strict(kind: type, what: str) -> Callable[[Any, Any], Any]:
    def structure(value: Any, _: Any) -> Any:
        if type(value) is not kind:
            raise ValidationError(f"Expected {what}, not {_checks.short(value)}.")
        return value

    return structure


def _structure_int(value: Any, _: Any) -> int:
    if type(value) is not int:
        raise ValidationError(f"Expected a whole number, not {_checks.short(value)}.")
    return value


def _structure_decimal(value: Any, _: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise ValidationError(f"Expected a number written as a string, not {_checks.short(value)}.")
    return _checks.decimal(value, "Number")


def _structure_datetime(value: Any, _: Any) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise ValidationError(f"Expected an ISO 8601 date and time, not {_checks.short(value)}.")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{_checks.short(value)} is not an ISO 8601 date and time.") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValidationError(f"Time {value!r} is naive: it needs a UTC offset.")
    return parsed


def _structure_date(value: Any, _: Any) -> date:
    if not isinstance(value, str) or len(value) != 10:
        raise ValidationError(
            f"Expected an ISO 8601 date (YYYY-MM-DD), not {_checks.short(value)}."
        )
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{value!r} is not an ISO 8601 date.") from None


def _unstructure_money(money: Money) -> dict[str, str]:
    return {"amount": str(money.amount), "currency": money.currency}


def _structure_money(value: Any, _: Any) -> Money:
    if not isinstance(value, Mapping) or set(value) != {"amount", "currency"}:
        raise ValidationError(
            f'Expected money as {{"amount": "1.00", "currency": "USD"}}, not {_checks.short(value)}.'
        )
    if not isinstance(value["amount"], str):
        raise ValidationError(
            f"Money amount must be a string, not {_checks.short(value['amount'])}."
        )
    # Any exact amount reads back, as oppcore's own arithmetic may have made it; the limits on
    # typed-in amounts are checked where money joins a deal (and so again by replay).
    amount = _checks.decimal(value["amount"], "Money amount", exact=True)
    return Money._exact(amount, currency_code(value["currency"]))


def _pipeline_hook() -> Callable[[Any, Any], Pipeline]:
    """Pipelines are immutable and every ``Opened`` carries one: equal documents share one
    value, which saves most of the time and memory of loading many deals."""
    cache: dict[object, list[tuple[Any, Pipeline]]] = {}

    def structure(data: Any, _: Any) -> Pipeline:
        key = data.get("id") if isinstance(data, dict) else None
        if not isinstance(key, str):
            return _from_dict(Pipeline, data)  # type: ignore[no-any-return]
        known = cache.setdefault(key, [])
        for document, cached in known:
            if document == data:  # plain dict comparison, far cheaper than building
                return cached
        pipeline: Pipeline = _from_dict(Pipeline, data)
        if len(known) < 8:
            known.append((copy.deepcopy(data), pipeline))
        return pipeline

    return structure


def _from_dict(cls: Any, data: Any) -> Any:
    if not isinstance(data, Mapping):
        raise ValidationError(f"Expected an object for {cls.__name__}, not {_checks.short(data)}.")
    return cls.from_dict(data)


# -- containers and attrs classes ------------------------------------------------------


def _is_variadic_tuple(kind: Any) -> bool:
    args = typing.get_args(kind)
    return typing.get_origin(kind) is tuple and len(args) == 2 and args[1] is Ellipsis


def _variadic_tuple_hook(kind: Any, converter: Converter) -> Callable[[Any, Any], Any]:
    item_type = typing.get_args(kind)[0]

    def structure(value: Any, _: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise ValidationError(f"Expected a list, not {_checks.short(value)}.")
        result, errors = [], []
        for index, item in enumerate(value):
            try:
                result.append(converter.structure(item, item_type))
            except Exception as exc:
                _note(
                    exc,
                    IterableValidationNote(f"Structuring {kind} @ index {index}", index, item_type),
                )
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"While structuring {kind}", errors, kind)
        return tuple(result)

    return structure


def _note(exc: BaseException, note: str) -> None:
    # Set directly rather than add_note(): cattrs reads __notes__ on Python 3.10 too.
    exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined]


def _attrs_hook(converter: Converter, cls: Any) -> Callable[[Any, Any], Any]:
    """Structure ``cls`` field by field, so that a bad value is reported at its path.

    The fast path structures each field by its type and builds the instance (whose field
    converters validate).  Only when that fails are the converters run one by one, to say
    which field was wrong.
    """
    attrs.resolve_types(cls)
    plan = [
        (
            field.alias or field.name,
            field.type,
            converter.get_structure_hook(field.type),
            field.converter,
            field.default is attrs.NOTHING,
            AttributeValidationNote(
                f"Structuring class {cls.__qualname__} @ attribute {field.alias or field.name}",
                field.alias or field.name,
                field.type,
            ),
        )
        for field in attrs.fields(cls)
        if field.init
    ]
    allowed = {name for name, *_ in plan} | ({EVENT_TAG} if cls in EVENT_TYPES else set())

    def structure(data: Any, _: Any) -> Any:
        if not isinstance(data, Mapping):
            raise ValidationError(
                f"Expected an object for {cls.__name__}, not {_checks.short(data)}."
            )
        errors: list[Exception] = []
        if not data.keys() <= allowed:
            extra = {str(key) for key in data.keys() - allowed}
            errors.append(ForbiddenExtraKeysError("", cls, extra))
        kwargs: dict[str, Any] = {}
        for name, kind, hook, _, required, note in plan:
            if name not in data:
                if required:
                    missing = KeyError(name)
                    _note(missing, note)
                    errors.append(missing)
                continue
            try:
                kwargs[name] = hook(data[name], kind)
            except Exception as exc:
                _note(exc, note)
                errors.append(exc)
        if not errors:
            try:
                return cls(**kwargs)
            except OppcoreError as exc:
                errors.extend(_field_errors(plan, kwargs) or [exc])
        else:
            errors.extend(_field_errors(plan, kwargs))
        raise ClassValidationError(f"While structuring {cls.__name__}", errors, cls)

    return structure


def _field_errors(plan: list[Any], kwargs: dict[str, Any]) -> list[Exception]:
    """Run each field's converter alone to find which fields the constructor refused."""
    errors: list[Exception] = []
    for name, _, _, field_converter, _, note in plan:
        if field_converter is None or name not in kwargs:
            continue
        try:
            field_converter(kwargs[name])
        except OppcoreError as exc:
            _note(exc, note)
            errors.append(exc)
    return errors


def _event_hook(converter: Converter) -> Callable[[Any, Any], Any]:
    by_name = {cls.__name__: cls for cls in EVENT_TYPES}

    def structure(data: Any, _: Any) -> Any:
        if not isinstance(data, Mapping):
            raise ValidationError(f"Expected an event object, not {_checks.short(data)}.")
        tag = data.get(EVENT_TAG)
        cls = by_name.get(tag) if isinstance(tag, str) else None
        if cls is None:
            raise ValidationError(
                f"Event type {_checks.short(tag)} in {EVENT_TAG!r} is not one of "
                f"{', '.join(by_name)}."
            )
        return converter.structure(data, cls)

    return structure


def _opportunity_hook(converter: Converter) -> Callable[[Any, Any], Opportunity]:
    def structure(data: Any, _: Any) -> Opportunity:
        if not isinstance(data, Mapping) or set(data) != {"events"}:
            raise ValidationError(
                f'Expected an opportunity as {{"events": [...]}}, not {_checks.short(data)}.'
            )
        try:
            events = converter.structure(data["events"], tuple[Event, ...])
        except Exception as exc:
            _note(exc, AttributeValidationNote("Structuring Opportunity @ events", "events", list))
            raise ClassValidationError(
                "While structuring Opportunity", [exc], Opportunity
            ) from None
        return Opportunity.replay(events)

    return structure


# -- the one JSON entrance ---------------------------------------------------------------


_UTF8_BOM = b"\xef\xbb\xbf"
_JSON_WHITESPACE = " \t\n\r"
#: A surrogate in decoded text, and the JSON escape that can make one (\\uD800 to \\uDFFF).
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class _Refused:
    """A number or constant the parser refused, left in its place so its path can be named."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _KeyedTwice(dict[str, Any]):
    """An object in which some key appears more than once (``twice`` lists them)."""

    __slots__ = ("twice",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        seen: set[str] = set()
        twice: dict[str, None] = {}
        for key, _ in pairs:
            if key in seen:
                twice[key] = None
            seen.add(key)
        self.twice = list(twice)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json would keep the last of two equal keys without a word: a hand-edited document whose
    # second "amount" silently wins is refused instead.
    value = dict(pairs)
    return value if len(value) == len(pairs) else _KeyedTwice(pairs)


def _long(text: str) -> _Refused | None:
    if len(text) <= MAX_NUMBER_LENGTH:
        return None
    return _Refused(
        f"the number {_checks.short(text)} is {len(text):,} characters long; "
        f"the limit is {MAX_NUMBER_LENGTH}"
    )


def _integer(text: str) -> int | _Refused:
    # Checked before int() runs: int() of 100,000 digits is slow, and over 4,300 it raises.
    return _long(text) or int(text)


def _number(text: str) -> Decimal | _Refused:
    refused = _long(text)
    if refused is not None:
        return refused
    number = Decimal(text)  # never a float: every digit is kept
    if not -MAX_EXPONENT <= number.adjusted() <= MAX_EXPONENT:
        return _Refused(
            f"the number {text!r} is out of range (powers of ten from -{MAX_EXPONENT} "
            f"to {MAX_EXPONENT})"
        )
    return number


def _constant(text: str) -> _Refused:
    return _Refused(f"{text} is not a number JSON allows")


def parse_json(text: str | bytes | bytearray, *, what: str = "The document") -> Any:
    """The data in JSON ``text``, or ``DeserializationError`` naming each problem's path.

    Every JSON text oppcore reads comes through here, with one set of limits: at most
    ``MAX_DOCUMENT`` characters (bytes of UTF-8 when ``text`` is bytes; one leading byte order
    mark is skipped), arrays and objects nested at most ``MAX_DEPTH`` deep, numbers of at most
    ``MAX_NUMBER_LENGTH`` characters and powers of ten within ``MAX_EXPONENT`` (read as
    ``Decimal`` or ``int``, never float).  Refused: ``NaN`` and ``Infinity``, a key twice in
    one object, and a lone surrogate in any text (``"\\ud83d"``, half an escaped emoji), which
    no store can write.  ``what`` starts the message (``"The document"``, ``"Line 7 of
    'deals.jsonl'"``).  Each line of ``errors`` ends with where the problem is:
    ``invalid JSON: key 'name' appears twice in one object @ $.opportunities[3].name``.
    """
    if not isinstance(text, (str, bytes, bytearray)):
        raise DeserializationError(
            f"{what} must be JSON text (str or UTF-8 bytes), not {_checks.short(text)}."
        )
    if len(text) > MAX_DOCUMENT:  # before anything is decoded or parsed
        unit = "characters" if isinstance(text, str) else "bytes"
        raise _refusal(what, [("$", f"it is {len(text):,} {unit}; the limit is {MAX_DOCUMENT:,}")])
    if isinstance(text, str):
        decoded = text[1:] if text[:1] == "\ufeff" else text
    else:
        skipped = 3 if text[:3] == _UTF8_BOM else 0
        raw = text[skipped:] if skipped else text
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            byte, at = raw[exc.start], exc.start + skipped
            raise _refusal(
                what, [("$", f"the text is not UTF-8 (byte 0x{byte:02x} at offset {at:,})")]
            ) from None
    if not decoded.strip(_JSON_WHITESPACE):
        raise _refusal(what, [("$", "the text is empty")])
    try:
        data = json.loads(
            decoded,
            object_pairs_hook=_object,
            parse_float=_number,
            parse_int=_integer,
            parse_constant=_constant,
        )
    except json.JSONDecodeError as exc:
        raise _refusal(what, [("$", str(exc))]) from None
    except RecursionError:
        raise _refusal(
            what, [("$", f"arrays and objects nest deeper than {MAX_DEPTH} levels")]
        ) from None
    check_text = bool(
        _SURROGATE_ESCAPE.search(decoded) or (not decoded.isascii() and _SURROGATE.search(decoded))
    )
    problems = _problems(data, check_text=check_text)
    if problems:
        raise _refusal(what, problems)
    return data


#: Where a value is: None for the document, else (where its container is, key or index).
_Trail = tuple[Any, "str | int"] | None


def _problems(data: Any, *, check_text: bool) -> list[tuple[str, str]]:
    """What the parser left refused in ``data``, as (path, reason), in document order.

    One pass, without recursion; only containers are stacked, and a path is spelled out only
    for a problem.  Text is searched for surrogates only when ``check_text`` (the document
    holds a surrogate escape), so a clean document costs one walk over its containers.
    """
    found: list[tuple[_Trail, str]] = []
    kind = type(data)
    if kind is not dict and kind is not list and kind is not _KeyedTwice:
        reason = _scalar_problem(data, check_text=check_text)
        return [("$", reason)] if reason else []
    stack: list[tuple[Any, int, _Trail]] = [(data, 1, None)]
    while stack and len(found) < MAX_PROBLEMS:
        container, depth, trail = stack.pop()
        if depth > MAX_DEPTH:
            found.append((trail, f"arrays and objects nest deeper than {MAX_DEPTH} levels"))
            continue
        nested: list[tuple[Any, int, _Trail]] = []
        items: Any
        if type(container) is list:
            items = enumerate(container)
        else:
            items = container.items()
            if type(container) is _KeyedTwice:
                found.extend(
                    ((trail, key), f"key {_checks.short(key)} appears twice in one object")
                    for key in container.twice
                )
        for key, child in items:
            kind = type(child)
            if kind is dict or kind is list or kind is _KeyedTwice:
                nested.append((child, depth + 1, (trail, key)))
            elif kind is _Refused or (check_text and kind is str):
                reason = _scalar_problem(child, check_text=check_text)
                if reason:
                    found.append(((trail, key), reason))
            match = _SURROGATE.search(key) if check_text and type(key) is str else None
            if match:
                found.append(((trail, key), f"key {_surrogate(key, match)}"))
        stack.extend(reversed(nested))
    return [(_path(trail), reason) for trail, reason in found[:MAX_PROBLEMS]]


def _scalar_problem(value: Any, *, check_text: bool) -> str | None:
    if type(value) is _Refused:
        return value.reason
    if check_text and type(value) is str:
        match = _SURROGATE.search(value)
        if match:
            return f"text {_surrogate(value, match)}"
    return None


def _surrogate(text: str, match: re.Match[str]) -> str:
    return (
        f"{_checks.short(text)} holds a lone surrogate (U+{ord(match.group()):04X} at position "
        f"{match.start():,}), which is not Unicode"
    )


def _path(trail: _Trail) -> str:
    """``$.opportunities[3].name`` for a trail, as cattrs spells paths."""
    steps: list[str] = []
    while trail is not None:
        trail, key = trail
        if type(key) is int:
            steps.append(f"[{key}]")
        elif isinstance(key, str) and _NAME.match(key):
            steps.append(f".{key}")
        else:
            steps.append(f"[{key!r}]")
    return "$" + "".join(reversed(steps))


def _refusal(what: str, problems: list[tuple[str, str]]) -> DeserializationError:
    lines = [f"invalid JSON: {reason} @ {path}" for path, reason in problems]
    if len(problems) == 1:
        # One problem is one sentence (one line in a log or after "oppcore:"); ``errors``
        # still holds its line with the path, as for several.
        path, reason = problems[0]
        where = "" if path == "$" else f" at {path}"
        error = DeserializationError(f"{what} is not valid JSON: {reason}{where}.")
        error.errors = tuple(lines)
        return error
    more = " (reading stopped there)" if len(problems) >= MAX_PROBLEMS else ""
    return DeserializationError(
        f"{what} is not valid JSON: {len(problems)} problems{more}.", errors=lines
    )


# -- the public functions --------------------------------------------------------------


@lru_cache(maxsize=1)
def converter() -> Converter:
    """The converter ``dumps`` and ``loads`` use (made once, never changed)."""
    return make_converter()


def unstructure(value: Any) -> Any:
    """``value`` as JSON-compatible data (events carry their ``event`` tag); yours to change."""
    return copy.deepcopy(_unstructure(value))


def _unstructure(value: Any) -> Any:
    # May share parts (a pipeline's document) with other results: read it, never change it.
    if isinstance(value, EVENT_TYPES):
        return converter().unstructure(value, unstructure_as=Event)
    return converter().unstructure(value)


def structure(data: Any, cls: type[T]) -> T:
    """A value of ``cls`` from JSON-compatible data, or ``DeserializationError``."""
    target: Any = Event if isinstance(cls, type) and issubclass(cls, EVENT_TYPES) else cls
    try:
        value = converter().structure(data, target)
    except Exception as exc:  # every problem in outside data becomes one of ours
        errors = transform_error(exc, path="$", format_exception=_format)
        raise DeserializationError(
            f"Could not read {'Event' if target is Event else cls.__name__}: "
            f"{len(errors)} problem(s).",
            errors=errors,
        ) from None
    if not isinstance(value, cls):
        raise DeserializationError(
            f"Expected {cls.__name__}, but the document holds {type(value).__name__}.",
            errors=[f"invalid value: expected {cls.__name__} @ $.{EVENT_TAG}"],
        )
    return value


def dumps(value: Any) -> str:
    """JSON text for any domain value or event; non-ASCII text is kept as it is."""
    try:
        return json.dumps(_unstructure(value), ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise ValidationError(
            f"Cannot write {_checks.short(value)} as JSON: {exc}. oppcore writes its own "
            "values, and attrs classes made of them."
        ) from None


def loads(text: str | bytes, cls: type[T]) -> T:
    """The value of type ``cls`` in JSON ``text``; ``cls`` may be ``Event`` for any event.

    ``text`` is read by ``parse_json`` (its limits and refusals apply), then checked by
    ``structure``.
    """
    if not isinstance(text, (str, bytes, bytearray)):
        raise DeserializationError(f"loads() reads JSON text, not {_checks.short(text)}.")
    return structure(parse_json(text), cls)


def _format(exc: BaseException, kind: Any) -> str:
    if isinstance(exc, OppcoreError):
        return f"invalid value: {exc}"
    return format_exception(exc, kind)


__all__ = [
    "EVENT_TAG",
    "MAX_DEPTH",
    "MAX_DOCUMENT",
    "MAX_EXPONENT",
    "MAX_NUMBER_LENGTH",
    "dumps",
    "loads",
    "make_converter",
    "parse_json",
    "structure",
    "unstructure",
]

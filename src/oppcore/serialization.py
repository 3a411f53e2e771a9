"""JSON for every domain value and event, through one cattrs converter that oppcore owns.

``dumps(value)`` and ``loads(text, cls)`` round-trip exactly: ``loads(dumps(x), type(x)) == x``,
Decimal digits, time zones and non-ASCII text included.  ``loads`` checks everything it reads
with the same rules as the constructors, and a malformed document raises one
``DeserializationError`` that lists each problem with its path, such as
``invalid value: Quantity '-1' must be more than zero. @ $.line_items[2].quantity``.
"""

from __future__ import annotations

import copy
import enum
import json
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
MAX_DOCUMENT = 256 * 1024 * 1024

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
    """The value of type ``cls`` in JSON ``text``; ``cls`` may be ``Event`` for any event."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise DeserializationError(f"loads() reads JSON text, not {_checks.short(text)}.")
    if len(text) > MAX_DOCUMENT:
        raise DeserializationError(
            f"The document is {len(text):,} bytes; the limit is {MAX_DOCUMENT:,}."
        )
    try:
        data = json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise DeserializationError(
            f"The document is not valid JSON: {exc}.", errors=[f"invalid JSON ({exc}) @ $"]
        ) from None
    return structure(data, cls)


def _format(exc: BaseException, kind: Any) -> str:
    if isinstance(exc, OppcoreError):
        return f"invalid value: {exc}"
    return format_exception(exc, kind)


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a number")


__all__ = ["EVENT_TAG", "dumps", "loads", "make_converter", "structure", "unstructure"]

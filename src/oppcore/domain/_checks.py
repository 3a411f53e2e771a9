"""Checks for values that arrive from outside.

Every public constructor and command funnels its arguments through these, so that bad
input always surfaces as a ``ValidationError`` that names the value, never as a raw
``TypeError`` from deep inside.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation

from oppcore._repr import short
from oppcore.exceptions import ValidationError

__all__ = ["short"]

MAX_INTEGER_DIGITS = 15
MAX_PLACES = 6
MAX_TEXT = 100_000
#: The bound of oppcore's exact arithmetic: Money's results (and numbers read back from
#: oppcore's own documents) have at most this many significant digits and lie between
#: ``10**-EXACT_DIGITS`` and ``10**(EXACT_DIGITS + 1)`` (zero included).  Anything past it is
#: refused with ``ValidationError`` rather than rounded.
EXACT_DIGITS = 200


def _short(value: object) -> str:
    return short(value)


def text(value: object, what: str, *, allow_empty: bool = True) -> str:
    """Text from outside: a ``str`` of at most ``MAX_TEXT`` characters that every store can write.

    Every text field of every domain value (names, ids, labels, ``by``, reasons, descriptions)
    comes through here, so this is the one place a lone surrogate is refused.
    """
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be text, not {_short(value)}.")
    if len(value) > MAX_TEXT:
        raise ValidationError(f"{what} is {len(value):,} characters; the limit is {MAX_TEXT:,}.")
    if not value.isascii():
        unicode(value, what)
    if not allow_empty and not value.strip():
        raise ValidationError(f"{what} must not be blank, but is {_short(value)}.")
    return value


def unicode(value: str, what: str) -> str:
    """``value`` if it is valid Unicode, else ``ValidationError`` naming ``what``.

    A lone surrogate (``"\\ud83d"``, as ``json.loads`` makes from half an escaped emoji) is a
    Python ``str`` but no text: UTF-8, JSON files and databases cannot hold it, so a store's
    save would fail far from the cause.  The message shows the text escaped (``repr`` escapes
    surrogates), so the message itself always encodes.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"{what} {_short(value)} holds a lone surrogate (U+{ord(value[exc.start]):04X} at "
            f"position {exc.start}), which is not text any store can save; pass valid Unicode."
        ) from None
    return value


def optional_text(value: object, what: str) -> str | None:
    if value is None:
        return None
    return text(value, what, allow_empty=False)


def decimal(value: object, what: str, *, exact: bool = False) -> Decimal:
    """A finite, sane Decimal from ``str``, ``int`` or ``Decimal``; floats are refused.

    With ``exact``, any number of places up to ``EXACT_DIGITS`` significant digits is
    accepted: that is for reading back the results of oppcore's own arithmetic.
    """
    if isinstance(value, bool):
        raise ValidationError(f"{what} must be a number, not {_short(value)}.")
    if isinstance(value, float):
        raise ValidationError(
            f"{what} {value!r} is a float, which cannot hold decimals exactly: "
            f"pass a string such as {str(value)!r}."
        )
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        if abs(value) >= 10**MAX_INTEGER_DIGITS:
            raise ValidationError(
                f"{what} {_short(value)} has more than {MAX_INTEGER_DIGITS} integer digits."
            )
        number = Decimal(value)
    elif isinstance(value, str):
        candidate = value.strip()
        if len(candidate) > (EXACT_DIGITS + 16 if exact else 64):
            raise ValidationError(f"{what} {_short(value)} is not a number oppcore accepts.")
        try:
            number = Decimal(candidate)
        except InvalidOperation:
            raise ValidationError(f"{what} {_short(value)} is not a number.") from None
    else:
        raise ValidationError(
            f"{what} must be a number as str, int or Decimal, not {_short(value)}."
        )
    if not number.is_finite():
        raise ValidationError(f"{what} {_short(value)} is not a finite number.")
    if exact:
        if not within_exact_limit(number):
            raise ValidationError(f"{what} {_short(value)} is too large or too long a number.")
        return number
    if number.adjusted() >= MAX_INTEGER_DIGITS:  # zero too: 0E+999999999 is no amount
        raise ValidationError(
            f"{what} {_short(value)} has more than {MAX_INTEGER_DIGITS} integer digits."
        )
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # finite numbers have an int exponent
    if exponent < -MAX_PLACES:
        raise ValidationError(f"{what} {_short(value)} has more than {MAX_PLACES} decimal places.")
    return number


def within_exact_limit(number: Decimal) -> bool:
    """Whether ``number`` is finite and within ``EXACT_DIGITS`` (see there).

    The magnitude is checked first, in constant time, so a number with a huge exponent is
    refused before its digits are counted.
    """
    if not number.is_finite() or not -EXACT_DIGITS <= number.adjusted() <= EXACT_DIGITS:
        return False
    return len(number.as_tuple().digits) <= EXACT_DIGITS


def percentage(value: object, what: str) -> Decimal:
    number = decimal(value, what)
    if not Decimal(0) <= number <= Decimal(100):
        raise ValidationError(f"{what} {_short(value)} is outside 0 to 100.")
    return number


def aware(value: object, what: str, *, to_utc: bool = True) -> datetime:
    """An aware datetime, normalised to UTC unless ``to_utc`` is False."""
    if not isinstance(value, datetime):
        raise ValidationError(f"{what} must be a datetime, not {_short(value)}.")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            f"{what} {value.isoformat()!r} is naive: give it a timezone, such as UTC."
        )
    if not to_utc:
        return value
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValidationError(f"{what} {value.isoformat()!r} is outside the calendar.") from None


def optional_aware(value: object, what: str) -> datetime | None:
    return None if value is None else aware(value, what)


def day(value: object, what: str) -> date:
    """A calendar date; a datetime is refused so that no time of day is lost silently."""
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ValidationError(f"{what} must be a date (not a datetime), not {_short(value)}.")
    return value


def optional_day(value: object, what: str) -> date | None:
    return None if value is None else day(value, what)

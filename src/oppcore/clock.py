"""Where oppcore learns the time.

Every command that stamps an event asks a ``Clock``.  The process default is a
``SystemClock`` (UTC); tests install a ``FixedClock`` with ``set_clock`` or, for one
block, ``with using(clock):``, and never depend on the wall clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta, timezone
from typing import Protocol, runtime_checkable

from oppcore._repr import short
from oppcore.exceptions import ValidationError


@runtime_checkable
class Clock(Protocol):
    """Anything that can tell the current time as an aware ``datetime``."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def __repr__(self) -> str:
        return "SystemClock()"


def _aware(at: object, what: str) -> datetime:
    if not isinstance(at, datetime):
        raise ValidationError(f"{what} must be a datetime, not {short(at)}.")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValidationError(f"{what} {at!r} is naive: give it a timezone, such as UTC.")
    return at


class FixedClock:
    """A clock that says what it is told: for tests, imports and back-filling."""

    def __init__(self, at: datetime) -> None:
        self._at = _aware(at, "FixedClock time")

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        self._at = _aware(at, "FixedClock time")

    def advance(self, delta: timedelta) -> None:
        if not isinstance(delta, timedelta):
            raise ValidationError(f"FixedClock.advance takes a timedelta, not {short(delta)}.")
        try:
            self._at = self._at + delta
        except OverflowError:
            raise ValidationError(
                f"Advancing {self._at.isoformat()} by {delta!r} leaves the calendar."
            ) from None

    def __repr__(self) -> str:
        return f"FixedClock({self._at!r})"


_KNOWN = (FixedClock, SystemClock)
_default: Clock = SystemClock()
_override: ContextVar[Clock | None] = ContextVar("oppcore_clock", default=None)


def get_clock() -> Clock:
    """The clock in force: the one ``using`` installed, else the process default."""
    return _override.get() or _default


def set_clock(clock: Clock) -> None:
    """Make ``clock`` the process default."""
    global _default
    _default = _checked(clock)


@contextmanager
def using(clock: Clock) -> Iterator[Clock]:
    """Use ``clock`` for the duration of a ``with`` block (per thread and task)."""
    token = _override.set(_checked(clock))
    try:
        yield clock
    finally:
        _override.reset(token)


def resolve(clock: Clock | None) -> Clock:
    """``clock`` itself, or the clock in force when it is None."""
    if clock is None:
        return get_clock()
    if type(clock) in _KNOWN:  # every command comes here: skip the protocol check
        return clock
    return _checked(clock)


def _checked(clock: object) -> Clock:
    if isinstance(clock, type) or not isinstance(clock, Clock):
        raise ValidationError(f"{short(clock)} is not a clock: it needs a now() method.")
    return clock


__all__ = ["Clock", "FixedClock", "SystemClock", "get_clock", "set_clock", "using"]

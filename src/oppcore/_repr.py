"""A repr that is safe on hostile input, for error messages."""

from __future__ import annotations

from decimal import Decimal

LIMIT = 80


def short(value: object) -> str:
    """``repr(value)`` cut to ``LIMIT`` characters; never raises.

    A Decimal is shown as the number it is (``'-1'``).  Integers too long for ``repr`` (over
    4,300 digits) and structures nested too deep for it get a description instead.
    """
    try:
        text = repr(str(value)) if isinstance(value, Decimal) else repr(value)
    except (ValueError, RecursionError, MemoryError):
        return f"a {type(value).__name__} too large to show"
    except Exception:  # a hostile __repr__ must not hide the real error
        return f"a {type(value).__name__}"
    return text if len(text) <= LIMIT else text[: LIMIT - 3] + "..."

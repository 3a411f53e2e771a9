"""Every error oppcore raises on purpose.

``OppcoreError`` is the root.  Each subclass also inherits the builtin exception it is,
so ``except ValueError`` keeps working for code that does not know oppcore.
Messages are whole sentences that name the bad value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class OppcoreError(Exception):
    """The root of every error oppcore raises on purpose."""


class ValidationError(OppcoreError, ValueError):
    """A value was refused: out of range, of the wrong type, or inconsistent."""


class TransitionError(ValidationError):
    """A stage move the pipeline does not allow, or one the deal is not ready for."""

    def __init__(
        self,
        message: str,
        *,
        opportunity_id: str | None = None,
        from_stage: str | None = None,
        to_stage: str | None = None,
        missing: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.opportunity_id = opportunity_id
        self.from_stage = from_stage
        self.to_stage = to_stage
        self.missing = tuple(missing)


class CurrencyMismatchError(OppcoreError, TypeError):
    """Money in two currencies was added, compared or mixed in one deal."""


class MissingRateError(OppcoreError, LookupError):
    """No exchange rate is known for a pair of currencies on a date."""


class NotFoundError(OppcoreError, LookupError):
    """Nothing is stored under the given id."""


class OpportunityNotFound(NotFoundError):
    """No opportunity is stored under the given id."""


class ConcurrencyError(OppcoreError, RuntimeError):
    """Someone else appended to the stream first: reload and retry."""

    def __init__(self, message: str, *, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(message)
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments need help to cross a process boundary.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[Exception], args: tuple[object, ...], state: dict[str, object]) -> Exception:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class StorageError(OppcoreError, OSError):
    """A store could not be read or written."""


class CorruptStoreError(StorageError):
    """A store's content is damaged; ``line`` is the physical line number where it applies."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class StoreUnavailableError(StorageError):
    """The store cannot be reached now; the same store works again once it is back."""


class DeserializationError(OppcoreError, ValueError):
    """A document could not be turned into oppcore values; ``errors`` lists each problem."""

    def __init__(self, message: str, *, errors: Iterable[str] = ()) -> None:
        self.errors = tuple(errors)
        if self.errors:
            message = message + "\n" + "\n".join(f"  {line}" for line in self.errors)
        super().__init__(message)


__all__ = [
    "ConcurrencyError",
    "CorruptStoreError",
    "CurrencyMismatchError",
    "DeserializationError",
    "MissingRateError",
    "NotFoundError",
    "OppcoreError",
    "OpportunityNotFound",
    "StorageError",
    "StoreUnavailableError",
    "TransitionError",
    "ValidationError",
]

"""What a store keeps: event records, and the protocol every backend implements.

Backends store ``EventRecord`` values (JSON-compatible payloads) and know nothing of the
domain; the ``Repository`` turns records into opportunities, leads, campaigns and pipelines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

import attrs

from oppcore._repr import short
from oppcore.exceptions import ConcurrencyError, CorruptStoreError, ValidationError


@attrs.frozen
class EventRecord:
    """One stored event: the stream it belongs to, its version there, and its payload.

    ``type`` names what the payload is (an event class name such as ``"Won"``, or
    ``"LeadSaved"``); ``at`` and ``recorded_at`` are ISO 8601 strings; ``payload`` is a
    JSON-compatible mapping.  ``position`` is the record's place in the store's global order,
    set by the store (None before it is stored).
    """

    stream_id: str
    version: int
    type: str
    at: str
    recorded_at: str
    payload: Mapping[str, Any]
    position: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object, without its position (a store assigns that)."""
        return {
            "stream_id": self.stream_id,
            "version": self.version,
            "type": self.type,
            "at": self.at,
            "recorded_at": self.recorded_at,
            "payload": self.payload,
        }

    @classmethod
    def from_json(
        cls, data: object, position: int | None = None, *, where: str | None = None
    ) -> EventRecord:
        """The record a decoded JSON object holds, after checking its shape.

        Every backend reads its records through here (or ``shape_problem``), so a stored
        object that lacks a field or holds one of the wrong kind is ``CorruptStoreError``
        naming the field, never a ``KeyError`` further on.  ``where`` says where the object
        was read (``"Journal 'x.jsonl' line 3"``); without it, the position is named.
        """
        problem = shape_problem(data)
        if problem is not None:
            place = where or (
                "A stored record" if position is None else f"The record at position {position}"
            )
            raise CorruptStoreError(
                f"{place} {problem}, so it is not an oppcore event record; the store was "
                "damaged or written by another program."
            )
        data = cast(Mapping[str, Any], data)  # shape_problem checked it
        return cls(
            data["stream_id"],
            data["version"],
            data["type"],
            data["at"],
            data["recorded_at"],
            data["payload"],
            position,
        )


def _text(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _version(value: object) -> bool:
    return type(value) is int and value >= 1


#: Each field of a stored record, a test of its value, and what the test wants.
_SHAPE: tuple[tuple[str, Callable[[object], bool], str], ...] = (
    ("stream_id", _text, "non-empty text"),
    ("version", _version, "a whole number 1 or more"),
    ("type", _text, "non-empty text"),
    ("at", lambda value: isinstance(value, str), "ISO 8601 text"),
    ("recorded_at", lambda value: isinstance(value, str), "ISO 8601 text"),
    ("payload", lambda value: isinstance(value, Mapping), "a JSON object"),
)


def payload_object(text: str, where: str) -> dict[str, Any]:
    """The JSON object a stored payload's text holds; ``CorruptStoreError`` naming ``where``
    when it is not JSON, or not an object."""
    try:
        payload = json.loads(text)
    except ValueError:
        raise CorruptStoreError(f"{where}: its payload is not JSON.") from None
    if not isinstance(payload, dict):
        raise CorruptStoreError(f"{where}: its payload is not a JSON object.")
    return payload


def shape_problem(data: object) -> str | None:
    """What is wrong with the shape of a stored record's JSON object, or None if nothing.

    The answer completes a sentence: ``"lacks 'type'"``, ``"has 'version' '2', which is not
    a whole number 1 or more"``.  Fields a later oppcore might add are not refused.
    """
    if not isinstance(data, Mapping):
        return f"is {short(data)}, not a JSON object"
    for name, test, wanted in _SHAPE:
        if name not in data:
            return f"lacks {name!r}"
        value = data[name]
        if not test(value):
            return f"has {name!r} {short(value)}, which is not {wanted}"
    return None


@runtime_checkable
class EventStore(Protocol):
    """The four operations a backend provides.  ``tests/storage/contract.py`` checks them."""

    def append(
        self, stream_id: str, records: Sequence[EventRecord], *, expected_version: int
    ) -> int:
        """Append ``records`` (versions ``expected_version + 1`` onwards) atomically.

        Returns the stream's new version.  Raises ``ConcurrencyError`` and writes nothing
        when the stream's version is not ``expected_version``.
        """
        ...

    def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[EventRecord]:
        """The stream's records with versions above ``after_version``; [] for unknown ids."""
        ...

    def stream_ids(self) -> Iterator[str]:
        """Every stream id, in the order the streams were created."""
        ...

    def read_all(
        self, *, after_position: int = 0, limit: int | None = None
    ) -> Iterator[EventRecord]:
        """Records in global order with positions above ``after_position``, at most ``limit``."""
        ...


@runtime_checkable
class BatchEventStore(EventStore, Protocol):
    """A store that can append to several streams in one atomic, durable write."""

    def append_many(self, batches: Sequence[tuple[str, Sequence[EventRecord], int]]) -> list[int]:
        """Append each ``(stream_id, records, expected_version)`` batch, all or nothing."""
        ...


def check_batches(
    batches: Sequence[tuple[str, Sequence[EventRecord], int]],
) -> list[tuple[str, tuple[EventRecord, ...], int]]:
    """Validate batches before any store touches them: types, versions, one batch per stream."""
    checked = []
    seen: set[str] = set()
    for batch in batches:
        if not isinstance(batch, tuple) or len(batch) != 3:
            raise ValidationError(
                f"A batch is (stream_id, records, expected_version), not {short(batch)}."
            )
        stream_id, records, expected = batch
        checked.append((stream_id, check_records(stream_id, records, expected), expected))
        if stream_id in seen:
            raise ValidationError(f"Stream {stream_id!r} appears in two batches of one write.")
        seen.add(stream_id)
    return checked


def check_records(
    stream_id: object, records: object, expected_version: object
) -> tuple[EventRecord, ...]:
    """The records of one append, checked: same stream, versions following ``expected_version``."""
    if not isinstance(stream_id, str) or not stream_id:
        raise ValidationError(f"Stream id must be non-empty text, not {short(stream_id)}.")
    if (
        isinstance(expected_version, bool)
        or not isinstance(expected_version, int)
        or expected_version < 0
    ):
        raise ValidationError(
            f"expected_version must be a whole number 0 or more, not {short(expected_version)}."
        )
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence):
        raise ValidationError(f"Records must be a list of EventRecord, not {short(records)}.")
    result = tuple(records)
    for offset, record in enumerate(result, start=1):
        if not isinstance(record, EventRecord):
            raise ValidationError(f"{short(record)} is not an EventRecord.")
        if record.stream_id != stream_id:
            raise ValidationError(
                f"Record for stream {record.stream_id!r} cannot be appended to {stream_id!r}."
            )
        if record.version != expected_version + offset:
            raise ValidationError(
                f"Record version {short(record.version)} should be {expected_version + offset} "
                f"in stream {stream_id!r}."
            )
        if not isinstance(record.type, str) or not record.type:
            raise ValidationError(f"Record type must be non-empty text, not {short(record.type)}.")
        for name in ("at", "recorded_at"):
            if not isinstance(getattr(record, name), str):
                raise ValidationError(f"Record {name} must be ISO 8601 text.")
        if not isinstance(record.payload, Mapping):
            raise ValidationError(f"Record payload must be a mapping, not {short(record.payload)}.")
    return result


def conflict(stream_id: str, expected: int, actual: int) -> ConcurrencyError:
    return ConcurrencyError(
        f"Stream {stream_id!r} is at version {actual}, not {expected}: someone else saved "
        "first. Reload it and try again.",
        stream_id=stream_id,
        expected=expected,
        actual=actual,
    )


def check_read_args(after: object, limit: object, what: str = "after_position") -> None:
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise ValidationError(f"{what} must be a whole number 0 or more, not {short(after)}.")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValidationError(
            f"limit must be None or a whole number 0 or more, not {short(limit)}."
        )


Row = TypeVar("Row", bound=Sequence[Any])


def pages(
    fetch: Callable[[int, int], list[Row]], after: int, limit: int | None, *, size: int = 10_000
) -> Iterator[Row]:
    """Rows in position order, read a page at a time: ``fetch(after, count)`` gives up to
    ``count`` rows with positions above ``after``, the position last in each row."""
    remaining = limit
    while remaining is None or remaining > 0:
        count = size if remaining is None else min(size, remaining)
        rows = fetch(after, count)
        yield from rows
        if len(rows) < count:
            return
        after = rows[-1][-1]
        if remaining is not None:
            remaining -= len(rows)

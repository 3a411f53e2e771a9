"""An event store in memory: for tests, notebooks and short-lived services."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from oppcore._repr import short
from oppcore.exceptions import ValidationError
from oppcore.storage.records import EventRecord, check_batches, check_read_args, conflict


def _json_copy(payload: Mapping[str, Any]) -> Any:
    try:
        return json.loads(json.dumps(payload, ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"Record payloads must be JSON-compatible: {exc}.") from None


class MemoryEventStore:
    """Keeps records in this process only; safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[EventRecord] = []
        self._streams: dict[str, list[EventRecord]] = {}

    def __repr__(self) -> str:
        return f"<MemoryEventStore: {len(self._records)} records in {len(self._streams)} streams>"

    def append(
        self, stream_id: str, records: Sequence[EventRecord], *, expected_version: int
    ) -> int:
        return self.append_many([(stream_id, records, expected_version)])[0]

    def append_many(self, batches: Sequence[tuple[str, Sequence[EventRecord], int]]) -> list[int]:
        checked = check_batches(batches)
        # Keep a JSON copy, as the file stores do: what works here works on disk, and the
        # caller can change its dicts afterwards without changing the store.
        payloads = {
            stream_id: [_json_copy(record.payload) for record in records]
            for stream_id, records, _ in checked
        }
        with self._lock:
            for stream_id, _, expected in checked:
                actual = len(self._streams.get(stream_id, ()))
                if actual != expected:
                    raise conflict(stream_id, expected, actual)
            versions = []
            for stream_id, records, expected in checked:
                for record, payload in zip(records, payloads[stream_id], strict=True):
                    stored = attrs.evolve(record, payload=payload, position=len(self._records) + 1)
                    self._records.append(stored)
                    self._streams.setdefault(stream_id, []).append(stored)
                versions.append(expected + len(records))
            return versions

    #: Deals opened here store their pipeline once, by reference.
    pipelines_by_reference = True

    def stream_version(self, stream_id: str) -> int:
        with self._lock:
            return len(self._streams.get(stream_id, ()))

    def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[EventRecord]:
        check_read_args(after_version, None, "after_version")
        if not isinstance(stream_id, str):
            raise ValidationError(f"Stream id must be text, not {short(stream_id)}.")
        with self._lock:
            return list(self._streams.get(stream_id, ())[after_version:])

    def stream_ids(self) -> Iterator[str]:
        with self._lock:
            ids = list(self._streams)
        return iter(ids)

    def read_all(
        self, *, after_position: int = 0, limit: int | None = None
    ) -> Iterator[EventRecord]:
        check_read_args(after_position, limit)
        with self._lock:
            end = len(self._records) if limit is None else after_position + limit
            chunk = self._records[after_position:end]
        return iter(chunk)

    def close(self) -> None:
        """Nothing to release; here so every store can be closed alike."""

    def __enter__(self) -> MemoryEventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["MemoryEventStore"]

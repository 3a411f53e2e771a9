"""An append-only JSON Lines journal: one file, readable with any text tool, safe to share.

Line 1 is the header ``{"format":"oppcore-journal","version":2}`` (version 1 journals, whose
deals carry their pipelines inline, are read and written as they are).  Every other line is
one committed append (or one ``append_many`` batch)::

    {"crc32":"1a2b3c4d","records":[{"stream_id":...,"version":...,...},...]}

The CRC32 covers the exact bytes of the ``records`` array, so damage that still parses as
JSON is caught.  Appends take an exclusive lock on ``<journal>.lock``, catch up with lines
other processes appended, check versions, write one line, and flush and fsync it before they
return.  A last line without its newline was never acknowledged (a crash mid-write): it is
ignored when reading and cut off by the next append.  Damage anywhere else raises
``CorruptStoreError`` with the physical line number, and the store refuses to write.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock; the journal needs it
    fcntl = None  # type: ignore[assignment]

from oppcore._repr import short
from oppcore.exceptions import CorruptStoreError, StorageError, ValidationError
from oppcore.storage.records import (
    EventRecord,
    check_batches,
    check_read_args,
    conflict,
    shape_problem,
)

FORMAT = "oppcore-journal"
#: The format this oppcore writes.
#: Format 2: each pipeline definition is stored once (a ``definition:`` stream) and ``Opened``
#: references it.  A format 1 journal is read, and written, as format 1: inline pipelines.
FORMAT_VERSION = 2
#: The formats this oppcore reads: a new format adds its number here and a reader for it.
READ_VERSIONS = frozenset({1, FORMAT_VERSION})
HEADER = b'{"format":"oppcore-journal","version":2}\n'
_PREFIX = b'{"crc32":"'
_BODY_START = len(_PREFIX) + 9  # the 8 hex digits and their closing quote
_STREAMS = b',"streams":'
_RECORDS = b',"records":'
_SUFFIX = b"}\n"
_CACHED_LINES = 32
_CHUNK = 1 << 22
_MARK = 32  # bytes kept from each end of the last line read, to see that it is still there


def _durable(fd: int) -> None:
    """Flush to stable storage: on macOS plain fsync stops at the drive's cache."""
    full = getattr(fcntl, "F_FULLFSYNC", None)
    if full is not None:  # pragma: no cover - macOS only
        fcntl.fcntl(fd, full)
    else:
        os.fsync(fd)


def _as_json(value: object) -> str:
    """``value`` as the file spells it (``true``, ``1.0``), cut short; never raises."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return short(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _identity(status: os.stat_result) -> tuple[int, int]:
    return status.st_dev, status.st_ino


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def encode_line(records: Sequence[EventRecord]) -> bytes:
    """One journal line holding ``records``, with its stream index and checksum.

    ``streams`` lists each run of records of one stream as ``[stream_id, first_version,
    count]``, so a store can index a line without parsing its payloads.  The CRC32 covers
    every byte after the checksum field up to the closing brace.
    """
    runs: list[list[Any]] = []
    for record in records:
        if runs and runs[-1][0] == record.stream_id:
            runs[-1][2] += 1
        else:
            runs.append([record.stream_id, record.version, 1])
    try:
        streams = json.dumps(runs, ensure_ascii=False, separators=(",", ":"))
        body = json.dumps(
            [record.to_json() for record in records],
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"Record payloads must be JSON-compatible: {exc}.") from None
    content = _STREAMS + streams.encode("utf-8") + _RECORDS + body.encode("utf-8")
    return _PREFIX + b"%08x" % zlib.crc32(content) + b'"' + content + _SUFFIX


class JsonEventStore:
    """An event store in one JSON Lines file; several processes may share it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        try:
            self.path = Path(os.fspath(path))
        except TypeError:
            raise ValidationError(f"A journal path must be a path, not {short(path)}.") from None
        self._guard = threading.RLock()
        self._broken: CorruptStoreError | None = None
        self._format: int | None = None  # the header's version, once read
        # The index: what has been read of the file so far.
        self._end = 0  # bytes of complete, checked lines
        self._line_count = 0  # physical lines read (the header is line 1)
        self._line_offsets: list[int] = []  # offset of each data line
        self._line_first: list[int] = []  # position of each data line's first record
        self._line_sizes: list[int] = []
        self._positions = 0
        self._streams: dict[str, list[tuple[int, int]]] = {}  # (line index, record index)
        # Both ends of the last line read, (offset, bytes): still there on every look, or the
        # file was cut or replaced under this store.
        self._marks: tuple[tuple[int, bytes], ...] = ()
        self._cache: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        if fcntl is None:  # pragma: no cover
            raise StorageError(
                "The JSON Lines journal needs POSIX file locks (Linux, macOS); use SQLite here."
            )
        try:
            self._open_files()
        except OSError as exc:
            raise StorageError(
                f"Cannot open journal {str(self.path)!r}: {exc.strerror or exc}."
            ) from None
        try:
            self._refresh()
        except BaseException:
            self.close()
            raise

    def _open_files(self) -> None:
        created = False
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
            created = True
        except FileExistsError:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        self._fd = fd
        # The file this store reads, whatever the path names later.
        self._identity = _identity(os.fstat(fd))
        self._pid = os.getpid()
        self._lock_fd = os.open(
            self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600
        )
        if created:
            with self._exclusive():
                if os.fstat(self._fd).st_size == 0:
                    self._write(HEADER)
            _fsync_directory(self.path.parent)

    def __repr__(self) -> str:
        return f"<JsonEventStore {str(self.path)!r}: {self._positions} records>"

    # -- locking and writing -------------------------------------------------------------

    class _Lock:
        def __init__(self, store: JsonEventStore) -> None:
            self.store = store

        def __enter__(self) -> None:
            self.store._guarded().acquire()
            try:
                fcntl.flock(self.store._lock_fd, fcntl.LOCK_EX)
            except BaseException:
                self.store._guard.release()
                raise

        def __exit__(self, *exc: object) -> None:
            try:
                fcntl.flock(self.store._lock_fd, fcntl.LOCK_UN)
            finally:
                self.store._guard.release()

    def _guarded(self) -> threading.RLock:
        """The lock for this process's threads, after making sure the files are this process's.

        ``flock`` belongs to the open file description, and a forked child shares its
        parent's: a store opened before ``fork()`` would let parent and children all "hold"
        the lock at once.  So a child reopens the files (and starts a fresh thread lock: the
        parent's may have been held by a thread that does not exist here).
        """
        if self._pid != os.getpid():
            self._guard = threading.RLock()
            self._pid = os.getpid()
            if "_fd" in self.__dict__:
                for fd in (self._fd, self._lock_fd):
                    with contextlib.suppress(OSError):
                        os.close(fd)
                self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
                self._lock_fd = os.open(
                    self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600
                )
        return self._guard

    def _exclusive(self) -> JsonEventStore._Lock:
        return JsonEventStore._Lock(self)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        _durable(self._fd)

    # -- reading the file into the index -------------------------------------------------

    def _corrupt(self, line: int, why: str) -> CorruptStoreError:
        error = CorruptStoreError(
            f"Journal {str(self.path)!r} is damaged at line {line}: {why}. oppcore will not "
            "write to it; restore it from a backup or repair that line.",
            line=line,
        )
        self._broken = error
        return error

    def _refresh(self) -> None:
        """Read and check the complete lines other writers added since the last look."""
        if self._broken is not None:
            raise self._broken
        if "_fd" not in self.__dict__:
            raise StorageError(f"Journal {str(self.path)!r} was closed; open it again.")
        size = os.fstat(self._fd).st_size
        self._check_still_read(size)
        last: tuple[int, bytes] | None = None
        for offset, raw in self._complete_lines(self._end, size):
            self._line_count += 1
            if self._line_count == 1:
                self._check_header(raw)
            else:
                self._index_line(raw, offset)
            self._end = offset + len(raw)
            last = offset, raw
        if last is not None:
            self._mark(*last)
        if size > self._end:
            self._check_torn_tail(os.pread(self._fd, min(size - self._end, 64), self._end))

    def _mark(self, offset: int, raw: bytes) -> None:
        """Remember both ends of the last line read (the head holds its checksum)."""
        tail = max(len(raw) - _MARK, 0)
        self._marks = ((offset, raw[:_MARK]), (offset + tail, raw[tail:]))

    def _check_still_read(self, size: int) -> None:
        """Make sure the path still names the file this store has read, and that the file
        still holds what was read.

        Writers only ever add lines after the last complete one (and cut a torn tail there),
        so a journal shorter than what was read, changed before the read position, or
        another file at the path means it was cut or replaced from outside (a backup copied
        back while a service runs).  Appending then would land after the wrong bytes, or
        extend the file with zeros, so the store stops here, before it writes.
        """
        try:
            identity = _identity(os.stat(self.path))
        except FileNotFoundError:
            raise self._replaced("was removed", None) from None
        except OSError as exc:
            raise StorageError(
                f"Cannot look at journal {str(self.path)!r}: {exc.strerror or exc}."
            ) from None
        if identity != self._identity:
            raise self._replaced("was replaced by another file", None)
        if size < self._end:
            raise self._replaced(
                f"is {size} bytes long, shorter than the {self._end} bytes this store had "
                "read: it was cut short or replaced",
                self._first_line_past(size),
            )
        for offset, expected in self._marks:
            if os.pread(self._fd, len(expected), offset) != expected:
                raise self._replaced(
                    f"no longer holds line {self._line_count} as this store read it: it was "
                    "changed or replaced",
                    self._line_count,
                )

    def _first_line_past(self, size: int) -> int:
        """The physical number of the first line read that ends after ``size`` bytes."""
        pairs = zip(self._line_offsets, self._line_sizes, strict=True)
        ends = [offset + length for offset, length in pairs]
        if not ends or size < self._line_offsets[0]:
            return 1  # the header itself is cut
        return bisect.bisect_right(ends, size) + 2

    def _replaced(self, what: str, line: int | None) -> CorruptStoreError:
        error = CorruptStoreError(
            f"Journal {str(self.path)!r} {what} while this store had it open (a backup copied "
            "back over it?). oppcore will not write to it; open the store again to read what "
            "the file holds now.",
            line=line,
        )
        self._broken = error
        return error

    def _check_torn_tail(self, start: bytes) -> None:
        """A line without its newline is a write that never finished, so it must begin the
        way oppcore begins a line; anything else is damage, not a crash."""
        expected = HEADER if self._line_count == 0 else _PREFIX
        # Some file systems leave zeros where a crashed write had extended the file.
        if start[: len(expected)] != expected[: len(start)] and start.strip(b"\0"):
            raise self._corrupt(self._line_count + 1, "its last line is not a journal entry")

    def _complete_lines(self, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
        """``(offset, line)`` for each newline-terminated line in ``[start, stop)``.

        Reads with ``pread`` (no shared file offset, no stale buffer after a torn tail is
        cut); a last line without its newline is left for later.
        """
        pending = b""
        pending_at = start
        position = start
        while position < stop:
            chunk = os.pread(self._fd, min(_CHUNK, stop - position), position)
            if not chunk:
                return
            position += len(chunk)
            data = pending + chunk
            cut = 0
            while True:
                newline = data.find(b"\n", cut)
                if newline < 0:
                    break
                yield pending_at + cut, data[cut : newline + 1]
                cut = newline + 1
            pending = data[cut:]
            pending_at += cut

    def _check_header(self, raw: bytes) -> None:
        try:
            header = json.loads(raw)
        except ValueError:
            raise self._corrupt(
                1, "the header is not JSON, so this is not an oppcore journal"
            ) from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise self._corrupt(1, f"the header {short(header)} is not an oppcore journal header")
        version = header.get("version")
        # Only an int is a version: true and 1.0 compare equal to 1 but were never written.
        if type(version) is not int:
            raise self._corrupt(
                1, f"the header's format version {_as_json(version)} is not a whole number"
            )
        if version in READ_VERSIONS:
            self._format = version
        if version not in READ_VERSIONS:
            if version > max(READ_VERSIONS):
                error = CorruptStoreError(
                    f"Journal {str(self.path)!r} is in journal format {version}, newer than this "
                    f"oppcore reads ({FORMAT_VERSION}). It is not damaged: upgrade oppcore to "
                    "read it. This oppcore will not write to it.",
                    line=1,
                )
                self._broken = error
                raise error
            raise self._corrupt(1, f"the header names unknown format version {version}")

    def _split(self, raw: bytes, line: int) -> tuple[list[list[Any]], int]:
        """Check a line's frame and checksum; its stream runs and where its records start."""
        if (
            not raw.startswith(_PREFIX)
            or raw[_BODY_START - 1 : _BODY_START] != b'"'
            or raw[_BODY_START : _BODY_START + len(_STREAMS)] != _STREAMS
            or not raw.endswith(_SUFFIX)
        ):
            raise self._corrupt(line, "the line is not a journal entry")
        content = raw[_BODY_START : -len(_SUFFIX)]
        if b"%08x" % zlib.crc32(content) != raw[len(_PREFIX) : _BODY_START - 1]:
            raise self._corrupt(line, "its checksum does not match its content")
        # A quote inside a JSON string is escaped, so this separator cannot occur inside
        # the stream ids: the first one found is the real one.
        separator = raw.find(_RECORDS, _BODY_START)
        try:
            runs = json.loads(raw[_BODY_START + len(_STREAMS) : separator])
        except ValueError:
            raise self._corrupt(line, "its stream index is not valid JSON") from None
        if (
            separator < 0
            or not isinstance(runs, list)
            or not all(
                isinstance(run, list)
                and len(run) == 3
                and isinstance(run[0], str)
                and type(run[1]) is int
                and type(run[2]) is int
                and run[2] > 0
                for run in runs
            )
        ):
            raise self._corrupt(line, "its stream index is malformed")
        return runs, separator + len(_RECORDS)

    def _parse(self, raw: bytes, line: int) -> list[dict[str, Any]]:
        runs, start = self._split(raw, line)
        try:
            records = json.loads(raw[start : -len(_SUFFIX)])
        except ValueError:
            raise self._corrupt(line, "its records are not valid JSON") from None
        expected = [(stream, first + n) for stream, first, count in runs for n in range(count)]
        if not isinstance(records, list) or len(records) != len(expected):
            raise self._corrupt(line, "its records do not match its stream index")
        for number, (record, (stream_id, version)) in enumerate(
            zip(records, expected, strict=True), 1
        ):
            problem = shape_problem(record)
            if problem is not None:
                raise self._corrupt(line, f"its record {number} (of {stream_id!r}) {problem}")
            if record["stream_id"] != stream_id or record["version"] != version:
                raise self._corrupt(line, f"a record of {stream_id!r} does not match the index")
        return records

    def _index_line(self, raw: bytes, offset: int) -> None:
        line = self._line_count
        runs, _ = self._split(raw, line)
        pending: dict[str, int] = {}
        for stream_id, first, count in runs:
            current = pending.get(stream_id, len(self._streams.get(stream_id, ())))
            if first != current + 1:
                raise self._corrupt(
                    line, f"stream {stream_id!r} jumps from version {current} to {first}"
                )
            pending[stream_id] = current + count
        index = len(self._line_offsets)
        number = 0
        for stream_id, _, count in runs:
            locations = self._streams.setdefault(stream_id, [])
            locations.extend((index, n) for n in range(number, number + count))
            number += count
        self._line_offsets.append(offset)
        self._line_first.append(self._positions + 1)
        self._line_sizes.append(len(raw))
        self._positions += number

    def _remember(self, index: int, records: list[dict[str, Any]]) -> None:
        self._cache[index] = records
        self._cache.move_to_end(index)
        while len(self._cache) > _CACHED_LINES:
            self._cache.popitem(last=False)

    def _line(self, index: int) -> list[dict[str, Any]]:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        raw = os.pread(self._fd, self._line_sizes[index], self._line_offsets[index])
        records = self._parse(raw, index + 2)
        self._remember(index, records)
        return records

    # -- the EventStore protocol ---------------------------------------------------------

    def append(
        self, stream_id: str, records: Sequence[EventRecord], *, expected_version: int
    ) -> int:
        return self.append_many([(stream_id, records, expected_version)])[0]

    def append_many(self, batches: Sequence[tuple[str, Sequence[EventRecord], int]]) -> list[int]:
        checked = check_batches(batches)
        everything = [record for _, records, _ in checked for record in records]
        line = encode_line(everything) if everything else b""
        try:
            with self._exclusive():
                self._refresh()
                for stream_id, _, expected in checked:
                    actual = len(self._streams.get(stream_id, ()))
                    if actual != expected:
                        raise conflict(stream_id, expected, actual)
                if line:
                    size = os.fstat(self._fd).st_size
                    self._check_still_read(size)  # never write after bytes not read
                    if size > self._end:
                        os.ftruncate(self._fd, self._end)  # a torn tail nobody acknowledged
                    if self._end == 0:
                        self._write(HEADER)
                        self._line_count = 1
                        self._end = len(HEADER)
                    offset = self._end
                    self._write(line)
                    self._line_count += 1
                    self._index_line(line, offset)
                    self._end = offset + len(line)
                    self._mark(offset, line)
        except OSError as exc:
            if isinstance(exc, StorageError):
                raise
            raise StorageError(
                f"Cannot append to journal {str(self.path)!r}: {exc.strerror or exc}."
            ) from None
        return [expected + len(records) for _, records, expected in checked]

    @property
    def pipelines_by_reference(self) -> bool:
        """Whether deals opened here store their pipeline once, by reference (format 2;
        a format 1 journal keeps its pipelines inline, so older oppcore still reads it)."""
        return (self._format or FORMAT_VERSION) >= 2

    def stream_version(self, stream_id: str) -> int:
        with self._guarded():
            self._refresh()
            return len(self._streams.get(stream_id, ()))

    def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[EventRecord]:
        check_read_args(after_version, None, "after_version")
        if not isinstance(stream_id, str):
            raise ValidationError(f"Stream id must be text, not {short(stream_id)}.")
        with self._guarded():
            self._refresh()
            result = []
            for index, number in self._streams.get(stream_id, ())[after_version:]:
                data = self._line(index)[number]
                result.append(EventRecord.from_json(data, self._line_first[index] + number))
            return result

    def stream_ids(self) -> Iterator[str]:
        with self._guarded():
            self._refresh()
            return iter(list(self._streams))

    def read_all(
        self, *, after_position: int = 0, limit: int | None = None
    ) -> Iterator[EventRecord]:
        check_read_args(after_position, limit)
        with self._guarded():
            self._refresh()
            last = (
                self._positions if limit is None else min(self._positions, after_position + limit)
            )
            start = max(bisect.bisect_right(self._line_first, after_position + 1) - 1, 0)
        return self._records_between(start, after_position, last)

    def _records_between(self, start: int, after: int, last: int) -> Iterator[EventRecord]:
        index = start
        while index < len(self._line_first) and self._line_first[index] <= last:
            with self._guarded():
                records = self._line(index)
            first = self._line_first[index]
            for number, data in enumerate(records):
                position = first + number
                if after < position <= last:
                    yield EventRecord.from_json(data, position)
            index += 1

    def close(self) -> None:
        """Release the file handles; the store cannot be used afterwards."""
        for name in ("_fd", "_lock_fd"):
            fd = self.__dict__.pop(name, None)
            if fd is not None:
                os.close(fd)

    def __enter__(self) -> JsonEventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown, nothing useful to do
            self.close()

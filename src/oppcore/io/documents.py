"""A whole repository as one JSON document, for moving data between systems.

``dump_json(repository, file)`` writes every pipeline, campaign, lead and opportunity the
repository holds; ``load_json(file, into=None)`` reads such a document back into a repository.
The round trip is exact: every opportunity travels as its full list of events (so its history
survives), through the same converter ``oppcore.serialization`` uses, so amounts are exact
decimal strings and times ISO 8601 with their UTC offsets.  The JSON Schema of the document
is ``docs/schema/oppcore-document.schema.json``.

The document::

    {"format": "oppcore-document", "version": 1,
     "pipelines": [<Pipeline.to_dict()>, ...],
     "campaigns": [<campaign>, ...],
     "leads": [<lead>, ...],
     "opportunities": [{"id": "...", "events": [<event>, ...]}, ...]}

Each section is sorted by id, so the same repository always gives the same text.  An
``Opened`` event names its pipeline by id (a string) when that id resolves to an equal
pipeline: first among the document's ``pipelines``, else among the stock pipelines
(``"default"``, ``"salesforce"``).  Otherwise (a pipeline changed since the deal opened, or
one never saved on its own) the event carries the whole pipeline object, as a store does.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from cattrs.errors import ForbiddenExtraKeysError
from cattrs.v import format_exception, transform_error

from oppcore._repr import short
from oppcore.domain.events import Event
from oppcore.domain.lead import Campaign, Lead
from oppcore.domain.opportunity import Opportunity
from oppcore.domain.stages import Pipeline
from oppcore.exceptions import (
    ConcurrencyError,
    DeserializationError,
    OppcoreError,
    StorageError,
    ValidationError,
)
from oppcore.serialization import EVENT_TAG, MAX_DOCUMENT, converter, parse_json
from oppcore.storage.repository import RESERVED_PREFIXES, Repository, open_repository

#: The value of the document's ``"format"`` key.
FORMAT = "oppcore-document"
#: The version of the document layout this module writes and reads.
VERSION = 1
#: Where the JSON Schema of the document lives, relative to the project's root.
SCHEMA_PATH = "docs/schema/oppcore-document.schema.json"

_SECTIONS = ("pipelines", "campaigns", "leads", "opportunities")
_TOP_KEYS = frozenset({"format", "version", *_SECTIONS})
_STOCK = {"default": Pipeline.default, "salesforce": Pipeline.salesforce}
#: A problem report stops after this many lines: the document is refused whole anyway.
_MAX_PROBLEMS = 20
_WRITE_BATCH = 256

T = TypeVar("T")


class _Reader(Protocol):
    def read(self) -> str | bytes: ...


class _Writer(Protocol):
    def write(self, text: str, /) -> object: ...


# -- writing ----------------------------------------------------------------------------


def dump_json(repository: Repository, file: str | os.PathLike[str] | _Writer) -> None:
    """Write everything ``repository`` holds to ``file`` as one oppcore JSON document.

    ``file`` is a path (written whole or not at all: a temporary file beside it is renamed
    into place) or an open text file.  ``load_json`` reads the document back exactly.
    """
    if not isinstance(repository, Repository):
        raise ValidationError(f"dump_json writes a Repository, not {short(repository)}.")
    pipelines = sorted(repository.pipelines(), key=_by_id)
    campaigns = sorted(repository.campaigns(), key=_by_id)
    leads = sorted(repository.leads(), key=_by_id)
    opportunities = sorted(repository.opportunities(), key=_by_id)
    chunks = _document_chunks(pipelines, campaigns, leads, opportunities)
    if isinstance(file, (str, os.PathLike)):
        _write_path(Path(file), chunks)
    elif callable(getattr(file, "write", None)):
        _write_stream(file, chunks)
    else:
        raise ValidationError(
            f"dump_json writes to a path or an open text file, not {short(file)}."
        )


def _by_id(value: Pipeline | Campaign | Lead | Opportunity) -> str:
    return value.id


def _document_chunks(
    pipelines: list[Pipeline],
    campaigns: list[Campaign],
    leads: list[Lead],
    opportunities: list[Opportunity],
) -> Iterator[str]:
    """The document's text, a piece at a time: one item per line, nothing built twice."""
    encode = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), check_circular=False
    ).encode
    unstructure = converter().unstructure
    references = _References({pipeline.id: pipeline for pipeline in pipelines})
    yield encode({"format": FORMAT, "version": VERSION})[:-1]
    sections: list[tuple[str, Iterable[Any]]] = [
        ("pipelines", (pipeline.to_dict() for pipeline in pipelines)),
        ("campaigns", map(unstructure, campaigns)),
        ("leads", map(unstructure, leads)),
        ("opportunities", (_opportunity_entry(opp, references) for opp in opportunities)),
    ]
    for name, items in sections:
        yield f',\n"{name}":['
        separator = "\n"
        for item in items:
            yield separator
            yield encode(item)
            separator = ",\n"
        yield "]"
    yield "}\n"


class _References:
    """Decides, once per pipeline value, whether an ``Opened`` may name it by id."""

    def __init__(self, saved: dict[str, Pipeline]) -> None:
        self._saved = saved
        # id() of a pipeline -> (the pipeline, kept alive so the id stays its own; by id?)
        self._seen: dict[int, tuple[Pipeline, bool]] = {}

    def by_id(self, pipeline: Pipeline) -> bool:
        known = self._seen.get(id(pipeline))
        if known is None:
            known = (pipeline, _resolve(pipeline.id, self._saved) == pipeline)
            self._seen[id(pipeline)] = known
        return known[1]


def _resolve(pipeline_id: str, saved: Mapping[str, Pipeline]) -> Pipeline | None:
    """What a pipeline id in an ``Opened`` stands for; writer and reader share this rule."""
    if pipeline_id in saved:
        return saved[pipeline_id]
    stock = _STOCK.get(pipeline_id)
    return None if stock is None else stock()


def _opportunity_entry(opp: Opportunity, references: _References) -> dict[str, Any]:
    unstructure = converter().unstructure
    events = []
    for event in opp.events:
        # A fresh dict per event (the pipeline's own document inside it is shared: it is
        # replaced here, never changed).
        data = unstructure(event, unstructure_as=Event)
        pipeline = getattr(event, "pipeline", None)
        if isinstance(pipeline, Pipeline) and references.by_id(pipeline):
            data["pipeline"] = pipeline.id
        events.append(data)
    return {"id": opp.id, "events": events}


def _write_stream(out: _Writer, chunks: Iterator[str]) -> None:
    batch: list[str] = []
    for chunk in chunks:
        batch.append(chunk)
        if len(batch) >= _WRITE_BATCH:
            _write(out, "".join(batch))
            batch.clear()
    _write(out, "".join(batch))


def _write(out: _Writer, text: str) -> None:
    try:
        out.write(text)
    except TypeError:
        raise ValidationError(
            f"dump_json writes text, but {short(out)} takes bytes; open the file in text mode "
            "('w', encoding='utf-8')."
        ) from None
    except OSError as exc:
        if isinstance(exc, (OppcoreError, BrokenPipeError)):
            raise  # a reader that went away (`| head`) is the caller's to handle
        raise StorageError(f"Could not write the document: {exc}.") from None


def _write_path(path: Path, chunks: Iterator[str]) -> None:
    """Write to a temporary file beside ``path``, then rename it: the document appears whole
    or not at all (a failed export never leaves half a document where a good one was)."""
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise StorageError(f"Could not write the document {str(path)!r}: {exc}.") from None
    try:
        try:
            out = open(fd, "w", encoding="utf-8", newline="\n")  # noqa: SIM115 - closed below
        except BaseException:
            os.close(fd)
            raise
        with out:
            _write_stream(out, chunks)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError) and not isinstance(exc, OppcoreError):
            raise StorageError(f"Could not write the document {str(path)!r}: {exc}.") from None
        raise


# -- reading ----------------------------------------------------------------------------


def load_json(
    file: str | os.PathLike[str] | _Reader, *, into: Repository | None = None
) -> Repository:
    """Read an oppcore JSON document into ``into`` (a new in-memory repository when None).

    Everything is checked before anything is saved, then saved with one ``save_all``: all or
    nothing.  The text is read by ``oppcore.serialization.parse_json``, with the limits and
    refusals of ``loads``.  A malformed document raises ``DeserializationError`` whose
    ``errors`` name each problem and its place in the document
    (``... @ $.opportunities[3].events[2].at``) with the bad value.  An opportunity that ``into``
    already holds with a different history raises ``ConcurrencyError`` naming it, and nothing
    is saved; one held with the same events (or the first of them) is left as it is (or given
    the rest).  Leads, campaigns and pipelines from the document replace those of the same id.
    Returns the repository.
    """
    if into is not None and not isinstance(into, Repository):
        raise ValidationError(f"load_json(into=...) takes a Repository or None, not {short(into)}.")
    repository = open_repository(None) if into is None else into
    with _collector_paused():
        # The parsed JSON is dropped as soon as it is read: only the values stay alive.
        values = _Reading().document(parse_json(_read_text(file), what="The document"))
        try:
            repository.save_all(values, replace=True)
        except ConcurrencyError as exc:
            raise ConcurrencyError(
                f"Opportunity {exc.stream_id!r} in the document has a different history from "
                f"the one the repository holds (they agree on {exc.expected} event(s); the "
                f"repository has {exc.actual}). Nothing was loaded.",
                stream_id=exc.stream_id,
                expected=exc.expected,
                actual=exc.actual,
            ) from None
    return repository


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector, as ``Repository.opportunities`` does.

    Loading a big document makes millions of objects and no cycles; the collector would walk
    the growing heap again and again (half the time of saving 100,000 deals).
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _read_text(file: str | os.PathLike[str] | _Reader) -> str | bytes | bytearray:
    """The document as it is stored: parse_json decodes it, so that a file, bytes and text
    meet the same checks (a byte order mark, bytes that are not UTF-8, the size limit)."""
    if isinstance(file, (str, os.PathLike)):
        try:
            with open(file, "rb") as source:
                # One byte past the limit is enough to refuse the document without reading it all.
                return source.read(MAX_DOCUMENT + 1)
        except OSError as exc:
            raise StorageError(f"Could not read the document {os.fspath(file)!r}: {exc}.") from None
    reader = getattr(file, "read", None)
    if not callable(reader):
        raise ValidationError(f"load_json reads a path or an open file, not {short(file)}.")
    try:
        text = reader()
    except UnicodeDecodeError as exc:  # a text-mode file of the wrong encoding
        raise DeserializationError(
            f"The document is not UTF-8 text: {exc}.",
            errors=[f"invalid JSON: the text is not UTF-8 ({exc.reason}) @ $"],
        ) from None
    except OSError as exc:
        if isinstance(exc, OppcoreError):
            raise
        raise StorageError(f"Could not read the document: {exc}.") from None
    if not isinstance(text, (str, bytes, bytearray)):
        raise ValidationError(f"Reading {short(file)} gave {short(text)}, not text.")
    return text


class _Problems(Exception):
    """Enough problems to stop reading; never leaves this module."""


class _Reading:
    """One pass over a parsed document, collecting problems as ``path: message`` lines."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        # Pipeline id -> its document, for Opened events that name it; and where the
        # document's pipelines that could not be read are.
        self.pipeline_documents: dict[str, Any] = {}
        self.unreadable_pipelines: dict[str, str] = {}

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{message} @ {path}")
        if len(self.problems) >= _MAX_PROBLEMS:
            raise _Problems

    def document(self, data: Any) -> list[Any]:
        try:
            values = self._document(data)
        except _Problems:
            values = []
        if self.problems:
            more = " (reading stopped there)" if len(self.problems) >= _MAX_PROBLEMS else ""
            raise DeserializationError(
                f"The document is not a valid oppcore document: "
                f"{len(self.problems)} problem(s){more}.",
                errors=self.problems,
            )
        return values

    def _document(self, data: Any) -> list[Any]:
        if not isinstance(data, dict):
            self.problem("$", f"Expected a JSON object, not {short(data)}.")
            return []
        if data.get("format") != FORMAT:
            self.problem("$.format", f"Expected {FORMAT!r}, not {short(data.get('format'))}.")
            return []
        version = data.get("version")
        if type(version) is not int or version != VERSION:
            self.problem(
                "$.version",
                f"This oppcore reads version {VERSION} documents, not {short(version)}.",
            )
            return []
        unknown = sorted(str(key) for key in data.keys() - _TOP_KEYS)
        if unknown:
            self.problem(
                f"$.{unknown[0]}" if unknown[0].isidentifier() else f"$[{unknown[0]!r}]",
                f"Unknown key {unknown[0]!r}; a document holds {', '.join(sorted(_TOP_KEYS))}.",
            )
        sections = {name: self._section(data, name) for name in _SECTIONS}
        values: list[Any] = []
        values += self._each(sections["pipelines"], "pipelines", self._pipeline)
        values += self._each(sections["campaigns"], "campaigns", self._value(Campaign))
        values += self._each(sections["leads"], "leads", self._value(Lead))
        values += self._each(sections["opportunities"], "opportunities", self._opportunity)
        return values

    def _section(self, data: dict[str, Any], name: str) -> list[Any]:
        items = data.get(name, [])
        if not isinstance(items, list):
            self.problem(f"$.{name}", f"Expected a list, not {short(items)}.")
            return []
        return items

    def _each(self, items: list[Any], section: str, read: Callable[[Any, str], Any]) -> list[Any]:
        values: list[Any] = []
        first_at: dict[str, str] = {}
        for index, item in enumerate(items):
            path = f"$.{section}[{index}]"
            value = read(item, path)
            if value is None:
                continue
            if value.id in first_at:
                self.problem(
                    f"{path}.id",
                    f"Id {value.id!r} appears twice in {section} (also at {first_at[value.id]}).",
                )
                continue
            first_at[value.id] = path
            values.append(value)
        return values

    def _structure(self, data: Any, cls: Any, path: str) -> Any:
        try:
            return converter().structure(data, cls)
        except Exception as exc:  # every problem in outside data becomes a line of ours
            for line in transform_error(exc, path=path, format_exception=_format):
                message, _, where = line.rpartition(" @ ")
                self.problem(where, message)
            return None

    def _value(self, cls: type[T]) -> Callable[[Any, str], T | None]:
        def read(data: Any, path: str) -> T | None:
            value: T | None = self._structure(data, cls, path)
            return value

        return read

    def _pipeline(self, data: Any, path: str) -> Pipeline | None:
        pipeline: Pipeline | None = self._structure(data, Pipeline, path)
        if pipeline is None:
            pipeline_id = data.get("id") if isinstance(data, dict) else None
            if isinstance(pipeline_id, str):
                self.unreadable_pipelines.setdefault(pipeline_id, path)
        elif pipeline.id not in self.pipeline_documents:
            self.pipeline_documents[pipeline.id] = data
        return pipeline

    def _opportunity(self, data: Any, path: str) -> Opportunity | None:
        if not isinstance(data, dict) or data.keys() != {"id", "events"}:
            self.problem(
                path,
                f'Expected an opportunity as {{"id": ..., "events": [...]}}, not {short(data)}.',
            )
            return None
        opp_id, raw_events = data["id"], data["events"]
        if not isinstance(opp_id, str) or not opp_id.strip():
            self.problem(
                f"{path}.id", f"Expected the opportunity's id as text, not {short(opp_id)}."
            )
            return None
        if opp_id.startswith(RESERVED_PREFIXES):
            self.problem(
                f"{path}.id",
                f"Opportunity id {opp_id!r} starts with a prefix a repository keeps for "
                f"{', '.join(RESERVED_PREFIXES)} streams.",
            )
            return None
        if not isinstance(raw_events, list) or not raw_events:
            self.problem(f"{path}.events", f"Expected a list of events, not {short(raw_events)}.")
            return None
        raw_events = [
            self._with_pipeline(raw, f"{path}.events[{index}]")
            for index, raw in enumerate(raw_events)
        ]
        if any(raw is None for raw in raw_events):
            return None
        events: tuple[Event, ...] | None = self._structure(
            raw_events, tuple[Event, ...], f"{path}.events"
        )
        if events is None:
            return None
        for index, event in enumerate(events):
            if event.opportunity_id != opp_id:
                self.problem(
                    f"{path}.events[{index}].opportunity_id",
                    f"The event is for {event.opportunity_id!r}, not {opp_id!r}.",
                )
                return None
        counted = _Counted(events)
        try:
            return Opportunity.replay(counted)
        except OppcoreError as exc:
            self.problem(f"{path}.events[{_first_bad(counted, events)}]", str(exc))
            return None

    def _with_pipeline(self, raw: Any, path: str) -> Any:
        """``raw`` with a pipeline id replaced by the pipeline's document; None if unknown."""
        if not isinstance(raw, dict) or raw.get(EVENT_TAG) != "Opened":
            return raw
        reference = raw.get("pipeline")
        if not isinstance(reference, str):
            return raw
        if reference in self.pipeline_documents:
            document = self.pipeline_documents[reference]
        elif reference in self.unreadable_pipelines:
            self.problem(
                f"{path}.pipeline",
                f"Pipeline {reference!r} could not be read "
                f"(see {self.unreadable_pipelines[reference]}).",
            )
            return None
        elif reference in _STOCK:
            document = _STOCK[reference]().to_dict()
            self.pipeline_documents[reference] = document
        else:
            self.problem(
                f"{path}.pipeline",
                f"Pipeline {reference!r} is neither in the document's pipelines nor a stock "
                f"pipeline ({', '.join(_STOCK)}).",
            )
            return None
        return {**raw, "pipeline": document}


class _Counted:
    """The events, handed to ``replay`` one at a time, counting how far it got.

    ``replay`` folds each event as it takes it, so when it refuses one, the last event taken is
    the one it refused: the bad event is found in the one fold that found it bad.
    """

    def __init__(self, events: tuple[Event, ...]) -> None:
        self.events = events
        self.taken = 0
        self.exhausted = False

    def __iter__(self) -> Iterator[Event]:
        for event in self.events:
            self.taken += 1
            yield event
        self.exhausted = True


def _first_bad(counted: _Counted, events: tuple[Event, ...]) -> int:
    """The index of the first event the history cannot take (error path only)."""
    if counted.taken and not counted.exhausted:
        return counted.taken - 1
    # replay read every event before refusing one (or none): find the shortest prefix it
    # refuses by bisection, O(n log n), rather than replaying every prefix.
    good, bad = 0, len(events)  # replay(events[:good]) is fine or empty; events[:bad] is not
    while bad - good > 1:
        middle = (good + bad) // 2
        try:
            Opportunity.replay(events[:middle])
        except OppcoreError:
            bad = middle
        else:
            good = middle
    return bad - 1


def _format(exc: BaseException, kind: Any) -> str:
    """One problem as a sentence (cattrs' own wording only for what oppcore does not check)."""
    if isinstance(exc, OppcoreError):
        return str(exc)
    if isinstance(exc, KeyError):
        return "This required field is missing."
    if isinstance(exc, ForbiddenExtraKeysError):
        names = ", ".join(repr(name) for name in sorted(exc.extra_fields))
        return f"Unknown field(s) {names}."
    text = format_exception(exc, kind)
    return text[:1].upper() + text[1:] + "."


__all__ = ["FORMAT", "SCHEMA_PATH", "VERSION", "dump_json", "load_json"]

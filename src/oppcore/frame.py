"""The deal table as a dataframe: ``deal_frame``, ``event_frame`` and ``project`` (optional
extra ``frame``).

A deal frame holds ``DealVersion`` rows, one column per field (``oppcore.domain.versions.COLUMNS``),
with exact money: ``amount``, ``expected_revenue`` and ``probability`` are ``decimal(38, 18)``,
times are microsecond UTC timestamps and ``expected_close`` a date.  Polars builds it; the
other backends are converted from polars without going through Python objects.

An event frame holds a store's records (``EVENT_COLUMNS``: ``stream_id, version, type, at,
recorded_at, payload``, the payload as JSON text), as ``oppcore export --format parquet
--events`` writes them.  ``project`` turns one into a deal frame on the engine that holds it:
the domain's own projector runs once per deal, on Spark in the executors.

Install with ``pip install 'oppcore[frame]'`` (narwhals and polars); pandas and pyarrow frames
also need pyarrow, Spark frames the ``spark`` extra.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from oppcore._repr import short
from oppcore.domain.money import EXACT
from oppcore.domain.opportunity import Opportunity
from oppcore.domain.versions import COLUMNS, DealVersion, versions
from oppcore.exceptions import CorruptStoreError, ValidationError

if TYPE_CHECKING:
    from oppcore.storage.records import EventRecord
    from oppcore.storage.repository import Repository

__all__ = [
    "BACKENDS",
    "EVENT_COLUMNS",
    "MONEY_PLACES",
    "deal_frame",
    "deal_rows",
    "event_frame",
    "project",
]

BACKENDS = ("polars", "pandas", "pyarrow")

# decimal(38, 18): every amount with up to 20 integer digits and 18 places fits exactly.
MONEY_PRECISION = 38
MONEY_PLACES = 18
_DECIMAL_COLUMNS = ("amount", "probability", "expected_revenue")
_TIME_COLUMNS = (
    "valid_from",
    "valid_to",
    "recorded_from",
    "recorded_to",
    "created_at",
    "closed_at",
)


def _polars() -> Any:
    try:
        import polars
    except ImportError:
        raise ImportError(
            "Deal frames need polars and narwhals: pip install 'oppcore[frame]'."
        ) from None
    return polars


def _narwhals() -> Any:
    try:
        import narwhals
    except ImportError:
        raise ImportError(
            "Deal frames need polars and narwhals: pip install 'oppcore[frame]'."
        ) from None
    return narwhals


def _schema(pl: Any) -> dict[str, Any]:
    money = pl.Decimal(MONEY_PRECISION, MONEY_PLACES)
    stamp = pl.Datetime("us", "UTC")
    kinds: dict[str, Any] = dict.fromkeys(COLUMNS, pl.String)
    kinds["version"] = pl.Int64
    kinds["expected_close"] = pl.Date
    kinds.update(dict.fromkeys(_DECIMAL_COLUMNS, money))
    kinds.update(dict.fromkeys(_TIME_COLUMNS, stamp))
    return kinds


def _fits(value: Decimal) -> bool:
    if not value:
        return True
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):  # NaN or infinity never reach a row
        return False
    while digits and digits[-1] == 0 and exponent < 0:  # trailing zeros are not places
        digits = digits[:-1]
        exponent += 1
    places = max(0, -exponent)
    integer_digits = max(0, len(digits) + exponent)
    return places <= MONEY_PLACES and integer_digits <= MONEY_PRECISION - MONEY_PLACES


_SCALE = Decimal(1).scaleb(-MONEY_PLACES)


def _scaled(value: Decimal, opportunity_id: str, name: str) -> Decimal:
    """``value`` with exactly 18 places (what the engines store), or ValidationError."""
    if not _fits(value):
        raise ValidationError(
            f"Opportunity {opportunity_id!r} has {name} {value}, which does not fit "
            f"a deal frame's decimal({MONEY_PRECISION}, {MONEY_PLACES}) exactly."
        )
    return value.quantize(_SCALE, context=EXACT)


def deal_rows(source: object) -> list[DealVersion]:
    """The ``DealVersion`` rows of ``source``: opportunities, a repository, or rows."""
    from oppcore.storage.repository import Repository

    if isinstance(source, Repository):
        return source.deal_versions()
    if isinstance(source, (str, bytes)) or not isinstance(source, Iterable):
        raise ValidationError(
            "deal_frame() takes opportunities, a Repository or DealVersion rows, "
            f"not {short(source)}."
        )
    rows: list[DealVersion] = []
    for item in source:
        if isinstance(item, DealVersion):
            rows.append(item)
        elif isinstance(item, Opportunity):
            rows.extend(versions(item))
        else:
            raise ValidationError(
                f"deal_frame() takes opportunities or DealVersion rows, not {short(item)}."
            )
    return rows


def deal_frame(
    source: Repository | Iterable[Opportunity | DealVersion], *, backend: str = "polars"
) -> Any:
    """The deal table of ``source`` as a dataframe of ``backend`` (polars, pandas or pyarrow).

    Money and probability columns are exact ``decimal(38, 18)``; a value with more than 20
    integer digits or 18 places raises ``ValidationError`` naming the deal, never rounds.
    """
    from oppcore.storage.repository import Repository

    _check_backend(backend)
    if isinstance(source, Repository):  # the stored table, with no replay
        return source.deal_frame(backend=backend)
    pl = _polars()
    return _as_backend(pl.DataFrame(_columns(deal_rows(source)), schema=_schema(pl)), backend)


def _columns(rows: Sequence[DealVersion]) -> dict[str, list[Any]]:
    """The rows' values column by column, money scaled to the frame's 18 places."""
    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    appenders = [(name, columns[name].append) for name in COLUMNS]
    for row in rows:
        for name, append in appenders:
            append(getattr(row, name))
    for name in _DECIMAL_COLUMNS:
        values = columns[name]
        for index, value in enumerate(values):
            if value is not None:
                values[index] = _scaled(value, rows[index].opportunity_id, name)
    return columns


def _check_backend(backend: object) -> None:
    if backend not in BACKENDS:
        raise ValidationError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}, not {short(backend)}."
        )


def _as_backend(frame: Any, backend: str) -> Any:
    """A polars frame as a frame of ``backend``, without going through Python objects."""
    if backend == "polars":
        return frame
    if backend == "pyarrow":
        return frame.to_arrow()
    return frame.to_pandas(use_pyarrow_extension_array=True)


# -- event records -----------------------------------------------------------------------

#: The columns of an event frame, in order: what a store keeps of each record.
EVENT_COLUMNS: tuple[str, ...] = ("stream_id", "version", "type", "at", "recorded_at", "payload")


def event_frame(source: Repository | Iterable[EventRecord], *, backend: str = "polars") -> Any:
    """Event records as a dataframe of ``backend``: the columns ``EVENT_COLUMNS``.

    ``source`` is a ``Repository`` (every record of its store in the store's order: deals,
    pipeline definitions, pipelines, leads and campaigns) or ``EventRecord`` values.  ``version`` is a 64-bit
    integer, ``at`` and ``recorded_at`` the records' ISO 8601 text and ``payload`` the
    payload as JSON text; ``project`` reads such a frame back into the deal table.
    """
    from oppcore.storage.records import EventRecord
    from oppcore.storage.repository import Repository

    _check_backend(backend)
    pl = _polars()
    records = source.store.read_all() if isinstance(source, Repository) else source
    if isinstance(records, (str, bytes)) or not isinstance(records, Iterable):
        raise ValidationError(
            f"event_frame() takes a Repository or EventRecord values, not {short(records)}."
        )
    columns: dict[str, list[Any]] = {name: [] for name in EVENT_COLUMNS}
    stream_ids, versions_, types, ats, recorded, payloads = columns.values()
    for record in records:
        if not isinstance(record, EventRecord):
            raise ValidationError(f"event_frame() takes EventRecord values, not {short(record)}.")
        stream_ids.append(record.stream_id)
        versions_.append(record.version)
        types.append(record.type)
        ats.append(record.at)
        recorded.append(record.recorded_at)
        # As the SQLite and PostgreSQL stores write it: compact, UTF-8 kept, no NaN.
        payloads.append(
            json.dumps(record.payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        )
    kinds: dict[str, Any] = dict.fromkeys(EVENT_COLUMNS, pl.String)
    kinds["version"] = pl.Int64
    return _as_backend(pl.DataFrame(columns, schema=kinds), backend)


def project(events: Any) -> Any:
    """The deal table of a frame of event records, computed on the engine that holds it.

    ``events`` is a frame of polars (eager or lazy), pandas, pyarrow, DuckDB or PySpark with
    the columns ``EVENT_COLUMNS`` (``payload`` as JSON text; other columns are ignored), as
    ``event_frame`` makes and ``oppcore export --format parquet --events`` writes.  Records of
    the ``lead:``, ``campaign:`` and ``pipeline:`` streams are skipped; the ``definition:``
    records are the pipelines the deals' ``Opened`` records name.  Each deal's records are
    put in version order, decoded and replayed as the repository does, and the domain's
    projector makes the deal's rows, so the result holds exactly the rows
    ``deal_frame(repo)`` holds, with its columns and types, as a frame of the same engine
    (lazy stays lazy; DuckDB gives a relation on DuckDB's default connection).  Deals come
    in the order of their first record; within a deal, rows come in projector order.

    On PySpark nothing is collected: the records are grouped by ``stream_id`` and each deal
    is projected in the executors (``applyInArrow``, or ``applyInPandas`` before Spark 4),
    so oppcore must be installed there too; the pipeline definitions (one small record per
    distinct pipeline) are broadcast to them.  The result is a lazy Spark DataFrame.

    A record that does not decode or a history that does not replay raises
    ``CorruptStoreError`` naming the stream.  On Spark it is raised in the executor when the
    frame is computed, and Spark reports it as its ``PythonException``, whose message holds
    the ``CorruptStoreError`` and its sentence.
    """
    if type(events).__module__.startswith("pyspark."):  # classic or Spark Connect
        _check_record_columns(events.columns)
        return _project_spark(events)
    nw = _narwhals()
    try:
        wrapped = nw.from_native(events)
    except TypeError:
        wrapped = None
    if not isinstance(wrapped, (nw.DataFrame, nw.LazyFrame)):
        raise ValidationError(f"project() takes a frame of event records, not {short(events)}.")
    _check_record_columns(wrapped.collect_schema().names())
    engine, kinds = wrapped.implementation, nw.Implementation
    if engine not in (kinds.POLARS, kinds.PANDAS, kinds.PYARROW, kinds.DUCKDB):
        raise ValidationError(
            f"project() computes on polars, pandas, pyarrow, DuckDB and PySpark, not {engine}."
        )
    selected = wrapped.select(list(EVENT_COLUMNS))
    eager = isinstance(selected, nw.DataFrame)
    records = selected.to_polars() if eager else selected.collect(backend="polars").to_native()
    frame = deal_frame(_projected(records.iter_rows()))
    if engine is kinds.DUCKDB:
        return nw.from_native(frame).lazy(backend=engine).to_native()
    if engine is kinds.POLARS:
        return frame if eager else frame.lazy()
    return _as_backend(frame, "pandas" if engine is kinds.PANDAS else "pyarrow")


def _check_record_columns(names: Iterable[str]) -> None:
    present = set(names)
    missing = [name for name in EVENT_COLUMNS if name not in present]
    if missing:
        raise ValidationError(
            f"The frame is not a frame of event records: it has no "
            f"{', '.join(map(repr, missing))} column (make one with oppcore.frame.event_frame)."
        )


def _projected(records: Iterable[Sequence[Any]]) -> list[DealVersion]:
    """The rows of every deal among ``records`` (tuples in ``EVENT_COLUMNS`` order), deals
    in the order of their first record; the other streams skipped, but for the pipeline
    definitions that ``Opened`` records name (stores of format 2)."""
    from oppcore.storage.repository import DEFINITION_PREFIX, RESERVED_PREFIXES

    streams: dict[str, list[Sequence[Any]]] = {}
    definitions: list[Sequence[Any]] = []
    for record in records:
        stream_id = record[0]
        if not isinstance(stream_id, str) or not stream_id:
            raise CorruptStoreError(
                f"An event record has stream_id {short(stream_id)}, which is not non-empty "
                "text, so it belongs to no deal."
            )
        if stream_id.startswith(DEFINITION_PREFIX):
            definitions.append(record)
        elif not stream_id.startswith(RESERVED_PREFIXES):
            streams.setdefault(stream_id, []).append(record)
    decoder = _decoder(definitions)
    rows: list[DealVersion] = []
    for stream_id, stream in streams.items():
        rows.extend(_stream_versions(decoder, stream_id, stream))
    return rows


def _stored(stream_id: str, records: Iterable[Sequence[Any]]) -> list[EventRecord]:
    """One stream's records (tuples in ``EVENT_COLUMNS`` order) as ``EventRecord`` values, in
    version order, payloads parsed."""
    from oppcore.storage.records import EventRecord

    stored = []
    for _, version, kind, at, recorded_at, text in records:
        if type(version) is not int:
            raise CorruptStoreError(
                f"Stream {stream_id!r} holds a record with version {short(version)}, which is "
                "not a whole number."
            )
        payload = _payload(stream_id, version, kind, text)
        stored.append(EventRecord(stream_id, version, kind, at, recorded_at, payload))
    stored.sort(key=lambda record: record.version)
    return stored


def _stream_versions(
    decoder: Repository, stream_id: str, records: Sequence[Sequence[Any]]
) -> tuple[DealVersion, ...]:
    """One deal's rows from its records, in any order: the projector, once."""
    return decoder._replay(stream_id, _stored(stream_id, records)).versions()


def _payload(stream_id: str, version: int, kind: object, text: object) -> dict[str, Any]:
    where = f"Stream {stream_id!r} version {version} ({short(kind)})"
    if not isinstance(text, str):
        raise CorruptStoreError(f"{where} has payload {short(text)}, which is not JSON text.")
    from oppcore.storage.records import payload_object

    return payload_object(text, where)


def _decoder(definitions: Iterable[Sequence[Any]]) -> Repository:
    """A repository over a memory store holding only the pipeline definitions among the
    records: the repository's own decoding and replay, so a frame's records read exactly as
    a store's do (an ``Opened`` that names its pipeline finds it there), with the same
    errors naming the stream.

    On Spark each deal brings the definition it names (twice for a deal opened twice), and
    thousands of deals name the same one: a decoder is kept per set of definitions, so each
    is checked against its digest once per executor process, not once per deal.
    """
    unique = tuple(sorted(dict.fromkeys(tuple(record) for record in definitions), key=repr))
    try:
        return _decoder_of(unique)
    except TypeError:  # a value that cannot be a key (a payload that is not text): no cache
        return _decoder_of.__wrapped__(unique)


@functools.lru_cache(maxsize=16)
def _decoder_of(definitions: tuple[tuple[Any, ...], ...]) -> Repository:
    from oppcore.storage.memory import MemoryEventStore
    from oppcore.storage.repository import Repository

    store = MemoryEventStore()
    by_stream: dict[str, list[Sequence[Any]]] = {}
    for record in definitions:
        by_stream.setdefault(record[0], []).append(record)
    for stream_id, records in by_stream.items():
        stored = _stored(stream_id, records)
        try:
            store.append(stream_id, stored, expected_version=0)
        except ValidationError as exc:
            raise CorruptStoreError(f"Stream {stream_id!r} cannot be read: {exc}") from None
    return Repository(store)


# -- Spark -------------------------------------------------------------------------------


def _spark_schema() -> str:
    """The deal frame's columns as a Spark DDL schema: the types ``_schema`` gives polars."""
    kinds = dict.fromkeys(COLUMNS, "STRING")
    kinds["version"] = "BIGINT"
    kinds["expected_close"] = "DATE"
    kinds.update(dict.fromkeys(_DECIMAL_COLUMNS, f"DECIMAL({MONEY_PRECISION},{MONEY_PLACES})"))
    kinds.update(dict.fromkeys(_TIME_COLUMNS, "TIMESTAMP"))
    return ", ".join(f"{name} {kinds[name]}" for name in COLUMNS)


def _project_spark(events: Any, *, arrow: bool | None = None) -> Any:
    """``project`` on a Spark DataFrame: one group per deal, projected in the executors.

    The pipeline definitions (one small record per distinct pipeline) are broadcast and
    joined onto the ``Opened`` records that name them, so each group holds all its deal
    needs.  ``arrow`` picks ``applyInArrow`` (Spark 4) or ``applyInPandas``; None: the
    first there is.
    """
    from oppcore.storage.repository import DEFINITION_PREFIX, RESERVED_PREFIXES

    records = events.select(*EVENT_COLUMNS)
    reserved = " OR ".join(f"startswith(stream_id, '{prefix}')" for prefix in RESERVED_PREFIXES)
    # The other streams are left out before the shuffle; a record without a stream stays,
    # for its group to raise the error that names it.
    deals = records.filter(f"stream_id IS NULL OR NOT ({reserved})").selectExpr(
        *EVENT_COLUMNS,
        "CASE WHEN type = 'Opened' THEN get_json_object(payload, '$.pipeline_ref') END AS _ref",
    )
    # Each definition record as one JSON text: it rides on the Opened record that names
    # it, null on every other record (one nullable text column reads alike on both routes).
    definitions = records.filter(f"startswith(stream_id, '{DEFINITION_PREFIX}')").selectExpr(
        f"substring(stream_id, {len(DEFINITION_PREFIX) + 1}) AS _ref",
        f"to_json(struct({', '.join(EVENT_COLUMNS)})) AS _named",
    )
    joined = deals.join(definitions.hint("broadcast"), on="_ref", how="left").drop("_ref")
    grouped = joined.groupBy("stream_id")
    if arrow is None:
        arrow = hasattr(grouped, "applyInArrow")
    if arrow:
        return grouped.applyInArrow(_arrow_group, schema=_spark_schema())
    return grouped.applyInPandas(_pandas_group, schema=_spark_schema())


def _group_records(column: Any) -> list[Sequence[Any]]:
    """A group's records, and the definition records joined onto them, from ``column(name)``
    (the list of the group's values of one column)."""
    records: list[Sequence[Any]] = list(zip(*map(column, EVENT_COLUMNS), strict=True))
    for text in column("_named"):
        if isinstance(text, str):  # pandas may give NaN for null
            named = json.loads(text)
            records.append(tuple(named.get(name) for name in EVENT_COLUMNS))
    return records


def _arrow_group(table: Any) -> Any:
    """One deal's records as an Arrow table to its rows as one (in a Spark executor)."""
    return _spark_arrow(_projected(_group_records(lambda name: table.column(name).to_pylist())))


def _pandas_group(frame: Any) -> Any:
    """One deal's records as a pandas frame to its rows as one (in a Spark executor)."""
    rows = _projected(_group_records(lambda name: frame[name].tolist()))
    # Plain pandas values (Decimal objects, aware timestamps): what Spark's pandas route reads.
    return _spark_arrow(rows).to_pandas()


def _spark_arrow(rows: Sequence[DealVersion]) -> Any:
    """The rows as an Arrow table in the types Spark reads as ``_spark_schema``: built
    straight from the values (a deal has a handful of rows; a frame per group costs more
    than the projection), money scaled and checked as ``deal_frame`` does."""
    import pyarrow as pa

    return pa.table(_columns(rows), schema=_arrow_schema())


@functools.cache
def _arrow_schema() -> Any:
    import pyarrow as pa

    kinds = dict.fromkeys(COLUMNS, pa.string())
    kinds["version"] = pa.int64()
    kinds["expected_close"] = pa.date32()
    kinds.update(dict.fromkeys(_DECIMAL_COLUMNS, pa.decimal128(MONEY_PRECISION, MONEY_PLACES)))
    kinds.update(dict.fromkeys(_TIME_COLUMNS, pa.timestamp("us", tz="UTC")))
    return pa.schema(list(kinds.items()))

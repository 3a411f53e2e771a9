"""The deal table as the stores keep it: columns, encodings, and the ``find`` query.

``Query`` checks the arguments of ``Repository.find`` / ``count`` once; every store answers it,
SQLite and PostgreSQL with SQL on ``oppcore_deal_versions``, memory and JSON Lines over the
rows they keep in memory.  The SQL text encodings live here too (exact decimal text,
``YYYY-MM-DD`` dates, fixed-width ISO 8601 UTC datetimes), so a row read back from any store
is the ``DealVersion`` the projector made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs

from oppcore._repr import short
from oppcore.domain.stages import Outcome
from oppcore.domain.versions import COLUMNS, DealVersion, _utc
from oppcore.exceptions import CorruptStoreError, ValidationError

TABLE = "oppcore_deal_versions"
#: The key in ``oppcore_meta`` holding the last event position the table reflects; absent
#: while the table is not built.
MARKER = "deal_table_position"
#: Streams that hold snapshots or pipeline definitions, not deals: no rows in the table.
SNAPSHOT_PREFIXES = ("lead:", "campaign:", "pipeline:", "definition:")
#: What a save hands a store with its events: for each deal stream, the first version whose
#: rows change and the deal's rows from that version on.
DealRows = Mapping[str, tuple[int, Sequence[DealVersion]]]


def is_deal(stream_id: str) -> bool:
    return not stream_id.startswith(SNAPSHOT_PREFIXES)


def covers(stream_ids: Iterable[str], deal_rows: DealRows | None) -> bool:
    """Whether ``deal_rows`` brings the rows of every deal stream in ``stream_ids``."""
    if deal_rows is None:
        return False
    return all(stream_id in deal_rows for stream_id in stream_ids if is_deal(stream_id))


FILTERS = (
    "stage",
    "outcome",
    "owner",
    "account",
    "campaign_id",
    "lead_source",
    "type",
    "pipeline_id",
)
DECIMALS = frozenset({"amount", "probability", "expected_revenue"})
DATETIMES = frozenset(
    {"valid_from", "valid_to", "recorded_from", "recorded_to", "created_at", "closed_at"}
)
_OUTCOMES = frozenset(outcome.value for outcome in Outcome)
_UTC = timezone.utc


@attrs.frozen
class Query:
    """What ``find`` and ``count`` were asked: checked filters, order and page."""

    filters: Mapping[str, frozenset[str]]
    closing_from: date | None = None
    closing_to: date | None = None
    order_by: str = "expected_close"
    descending: bool = False
    limit: int | None = None
    offset: int = 0

    def matches(self, row: DealVersion) -> bool:
        for name, values in self.filters.items():
            if getattr(row, name) not in values:
                return False
        if self.closing_from is not None or self.closing_to is not None:
            close = row.expected_close
            if close is None:
                return False
            if self.closing_from is not None and close < self.closing_from:
                return False
            if self.closing_to is not None and close > self.closing_to:
                return False
        return True

    def ordered(self, rows: Iterable[DealVersion]) -> list[DealVersion]:
        """``rows`` in the query's order (None last either way, ties by opportunity id),
        then its page."""
        every = sorted(rows, key=lambda row: row.opportunity_id)
        present = [row for row in every if getattr(row, self.order_by) is not None]
        absent = [row for row in every if getattr(row, self.order_by) is None]
        present.sort(key=lambda row: getattr(row, self.order_by), reverse=self.descending)
        # sort(reverse=True) is stable too: ties stay in ascending opportunity id.
        result = present + absent
        end = None if self.limit is None else self.offset + self.limit
        return result[self.offset : end]


def _values(name: str, value: object) -> frozenset[str]:
    if isinstance(value, Outcome):
        value = value.value
    if isinstance(value, str):
        items: list[object] = [value]
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        items = [item.value if isinstance(item, Outcome) else item for item in value]
        if not items:
            raise ValidationError(f"{name}= is an empty collection; pass None to not filter.")
    else:
        raise ValidationError(
            f"{name}= takes a string or a collection of strings, not {short(value)}."
        )
    for item in items:
        if not isinstance(item, str):
            raise ValidationError(f"{name}= holds {short(item)}, which is not a string.")
        if name == "outcome" and item not in _OUTCOMES:
            raise ValidationError(f"outcome= holds {item!r}, which is not 'open', 'won' or 'lost'.")
    return frozenset(items)  # type: ignore[arg-type]


def _day(name: str, value: object) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ValidationError(f"{name}= takes a date, not {short(value)}.")
    return value


def _count(name: str, value: object, *, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"{name}= takes a whole number 0 or more, not {short(value)}.")
    return value


def query(
    *,
    order_by: object = "expected_close",
    limit: object = None,
    offset: object = 0,
    **arguments: object,
) -> Query:
    """Check ``find`` arguments; ``ValidationError`` naming the first bad one."""
    filters: dict[str, frozenset[str]] = {}
    closing: dict[str, date | None] = {"closing_from": None, "closing_to": None}
    for name, value in arguments.items():
        if name in closing:
            closing[name] = _day(name, value)
        elif name in FILTERS:
            if value is not None:
                filters[name] = _values(name, value)
        else:
            raise ValidationError(
                f"find() has no argument {name!r}; it filters on "
                f"{', '.join(FILTERS)}, closing_from and closing_to."
            )
    if not isinstance(order_by, str):
        raise ValidationError(f"order_by= takes a column name, not {short(order_by)}.")
    descending = order_by.startswith("-")
    column = order_by[1:] if descending else order_by
    if column not in COLUMNS:
        raise ValidationError(
            f"order_by={order_by!r} is not a column of the deal table; "
            f"columns: {', '.join(COLUMNS)}."
        )
    return Query(
        filters=filters,
        closing_from=closing["closing_from"],
        closing_to=closing["closing_to"],
        order_by=column,
        descending=descending,
        limit=_count("limit", limit, allow_none=True),
        offset=_count("offset", offset, allow_none=False) or 0,
    )


def count_query(**arguments: object) -> Query:
    """Check ``count`` arguments: the filters only."""
    for name in ("order_by", "limit", "offset"):
        if name in arguments:
            raise ValidationError(f"count() takes the filters only, not {name}=.")
    return query(**arguments)


# -- SQL text encodings (SQLite) --------------------------------------------------------


def stamp(moment: datetime) -> str:
    """A fixed-width ISO 8601 UTC text: string order is time order (except for the instants
    before 0001-01-01T00:00Z, which UTC cannot show: they keep their own offset)."""
    return _utc(moment).isoformat(timespec="microseconds")


def encode_text(row: DealVersion) -> tuple[Any, ...]:
    """The row as SQLite stores it: text for decimals, dates and datetimes."""
    values: list[Any] = []
    for name in COLUMNS:
        value = getattr(row, name)
        if value is None or isinstance(value, (str, int)):
            values.append(value)
        elif isinstance(value, Decimal):
            values.append(str(value))
        elif isinstance(value, datetime):
            values.append(stamp(value))
        elif isinstance(value, date):
            values.append(value.isoformat())
        else:  # pragma: no cover - the projector makes only the kinds above
            raise ValidationError(f"Column {name!r} holds {short(value)}.")
    return tuple(values)


def _moment(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is _UTC else _utc(value)


# The columns that do not read back as they are stored, and how each reads back.
_DECODERS: tuple[tuple[int, Any], ...] = tuple(
    (index, Decimal if name in DECIMALS else _moment if name in DATETIMES else date.fromisoformat)
    for index, name in enumerate(COLUMNS)
    if name in DECIMALS or name in DATETIMES or name == "expected_close"
)


def decode_text(values: Sequence[Any]) -> DealVersion:
    """A row read back from SQLite; ``CorruptStoreError`` when a column is not its kind."""
    fields = list(values)
    try:
        if len(fields) != len(COLUMNS):
            raise ValueError("the row has the wrong number of columns")
        for index, decode in _DECODERS:
            value = fields[index]
            if value is not None:
                fields[index] = decode(value)
    except (TypeError, ValueError, InvalidOperation):
        raise CorruptStoreError(
            f"The deal table holds a row that does not read back: {short(tuple(values))}."
        ) from None
    return DealVersion(*fields)


_NOT_NULL = frozenset(
    {
        "opportunity_id",
        "version",
        "valid_from",
        "recorded_from",
        "name",
        "pipeline_id",
        "stage",
        "outcome",
        "forecast_category",
        "probability",
        "created_at",
    }
)


def sqlite_ddl() -> str:
    """The deal table and its indexes, for SQLite (every statement IF NOT EXISTS)."""
    kinds = dict.fromkeys(COLUMNS, "TEXT")
    kinds["version"] = "INTEGER"
    not_null = _NOT_NULL
    columns = ",\n    ".join(
        f"{name} {kinds[name]}{' NOT NULL' if name in not_null else ''}" for name in COLUMNS
    )
    current = "WHERE valid_to IS NULL AND recorded_to IS NULL"
    indexes = "\n".join(
        f"CREATE INDEX IF NOT EXISTS {TABLE}_{name} ON {TABLE} ({name}, expected_close) {current};"
        for name in FILTERS
    )
    return (
        f"CREATE TABLE IF NOT EXISTS {TABLE} (\n    {columns},\n"
        f"    PRIMARY KEY (opportunity_id, version, recorded_from)\n);\n"
        f"CREATE INDEX IF NOT EXISTS {TABLE}_close ON {TABLE} (expected_close) {current};\n"
        f"{indexes}\n"
    )


#: Decimal text that fits a frame's decimal(38, 18) as it is: what polars parses exactly.
_PLAIN_DECIMAL = r"^-?[0-9]{1,20}(\.[0-9]{0,18})?$"


class NotPlainText(Exception):
    """A decimal in the table is not plain text that fits decimal(38, 18)."""


def text_frame(rows: list[tuple[Any, ...]], names: Sequence[str] = COLUMNS) -> Any:
    """A polars frame of ``names`` (``oppcore.frame.deal_frame``'s types) from rows in
    SQLite's text encoding, parsed by polars: no ``DealVersion`` objects on the way."""
    from oppcore.frame import _polars, _schema

    pl = _polars()
    schema = _schema(pl)
    text = {name: (pl.Int64 if name == "version" else pl.String) for name in names}
    raw = pl.DataFrame(rows, schema=text, orient="row")
    plain = [
        pl.col(name).str.contains(_PLAIN_DECIMAL).fill_null(True).all()
        for name in names
        if name in DECIMALS
    ]
    if plain and not all(raw.select(plain).row(0)):
        # polars would round more than 18 places, or read an exponent: let the exact path
        # build the frame (or name the deal whose value does not fit).
        raise NotPlainText
    money = schema["amount"]
    stamp = "%Y-%m-%dT%H:%M:%S%.f%:z"
    parse = []
    for name in names:
        if name in DECIMALS:
            parse.append(pl.col(name).str.to_decimal(scale=money.scale).cast(money))
        elif name in DATETIMES:
            parse.append(pl.col(name).str.to_datetime(stamp, time_zone="UTC", time_unit="us"))
        elif name == "expected_close":
            parse.append(pl.col(name).str.to_date("%Y-%m-%d"))
    return raw.with_columns(parse) if parse else raw


def postgres_ddl() -> list[str]:
    """The deal table and its indexes, for PostgreSQL: numeric money, date, timestamptz."""
    kinds = dict.fromkeys(COLUMNS, "TEXT")
    kinds["version"] = "INTEGER"
    kinds.update(dict.fromkeys(DECIMALS, "NUMERIC"))
    kinds.update(dict.fromkeys(DATETIMES, "TIMESTAMPTZ"))
    kinds["expected_close"] = "DATE"
    not_null = _NOT_NULL
    columns = ",\n    ".join(
        f"{name} {kinds[name]}{' NOT NULL' if name in not_null else ''}" for name in COLUMNS
    )
    current = "WHERE valid_to IS NULL AND recorded_to IS NULL"
    return [
        f"CREATE TABLE IF NOT EXISTS {TABLE} (\n    {columns},\n"
        f"    PRIMARY KEY (opportunity_id, version, recorded_from)\n)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_close ON {TABLE} (expected_close) {current}",
        *(
            f"CREATE INDEX IF NOT EXISTS {TABLE}_{name} ON {TABLE} "
            f"({name}, expected_close) {current}"
            for name in FILTERS
        ),
    ]


def postgres_order(q: Query) -> str:
    """ORDER BY for PostgreSQL: text in code-point order (``COLLATE "C"``), as Python sorts."""
    direction = "DESC" if q.descending else "ASC"
    column = q.order_by
    collate = (
        ""
        if column in DECIMALS
        or column in DATETIMES
        or column
        in (
            "version",
            "expected_close",
        )
        else ' COLLATE "C"'
    )
    return f'({column} IS NULL), {column}{collate} {direction}, opportunity_id COLLATE "C" ASC'


def decode_typed(values: Sequence[Any]) -> DealVersion:
    """A row read back from PostgreSQL (typed columns): times brought to UTC."""
    fields = dict(zip(COLUMNS, values, strict=True))
    for name in DATETIMES:
        value = fields[name]
        if value is not None:
            fields[name] = _utc(value)
    return DealVersion(**fields)


def sql_where(
    q: Query, placeholder: str = "?", *, text_dates: bool = True
) -> tuple[str, list[Any]]:
    """The WHERE clause (current rows that match) and its parameters (dates as ISO text for
    SQLite's text column, as dates for PostgreSQL's)."""
    clauses = ["valid_to IS NULL", "recorded_to IS NULL"]
    params: list[Any] = []
    for name, values in q.filters.items():
        ordered = sorted(values)
        clauses.append(f"{name} IN ({', '.join([placeholder] * len(ordered))})")
        params.extend(ordered)
    if q.closing_from is not None:
        clauses.append(f"expected_close >= {placeholder}")
        params.append(q.closing_from.isoformat() if text_dates else q.closing_from)
    if q.closing_to is not None:
        clauses.append(f"expected_close <= {placeholder}")
        params.append(q.closing_to.isoformat() if text_dates else q.closing_to)
    return " AND ".join(clauses), params


def sql_order(q: Query) -> str | None:
    """The ORDER BY clause, or None when the order needs exact decimals (sorted in Python)."""
    if q.order_by in DECIMALS:
        return None
    direction = "DESC" if q.descending else "ASC"
    return f"({q.order_by} IS NULL), {q.order_by} {direction}, opportunity_id ASC"

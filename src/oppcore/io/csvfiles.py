"""CSV import and export: a generic column mapping, the Maven CRM and Salesforce presets.

``read_csv(file, mapping=...)`` turns each data row into an ``Opportunity`` and reports every
row it cannot use as a ``Rejected(line, row, reason)``; a bad row never stops the others.
``write_csv(opportunities, file)`` writes the ``OPPCORE_CSV`` shape, which ``read_csv`` reads
back exactly; ``write_csv(..., history=True)`` writes one row per event instead.
``read_salesforce_history`` rebuilds deals from a Salesforce Opportunity export and its
OpportunityHistory, so the history analytics work on migrated data.

How a row becomes a deal
------------------------
``read_csv`` records what each row states as facts, with the domain's events: an ``Opened``
event at the row's open time holding every field and, for a won or lost row, a ``Won`` or
``Lost`` event at its close time (never before the open time: a close date before the
creation time puts the close at the creation time).  A closed deal opens in the open stage
it closed from (the ``closed_from`` column, else the mapping's ``closed_from``, else the
pipeline's first stage).  Because the row states where the deal already stands, the
pipeline's move rules (``transitions``, a stage's ``required`` fields) are not replayed; the
values themselves are checked as strictly as any command checks them.  Every event is
recorded at the import's time (``clock``).

Cells a spreadsheet would run
-----------------------------
A spreadsheet runs a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab, a carriage return
or a line feed as a formula (OWASP, "CSV Injection").  ``write_csv`` writes every text cell
(names, descriptions, owners, accounts, ids, stage keys, lost reasons, ...) that starts with
one of them, or with a single quote, with a single quote in front, which a spreadsheet shows
as text; numbers (amounts, probabilities) are written as they are, so a negative amount stays
a number.  ``OPPCORE_CSV`` (``quoted_formulas=True``) removes exactly the quote
``write_csv`` added, so every value reads back as it was.

How large a row may be
----------------------
A row, with all its cells and over however many lines its quoted cells span, holds at most
``MAX_ROW_CHARS`` characters (16 Mi): far more than any real export holds (a deal with
tens of thousands of line items, or a text field at the domain's 100,000-character limit), and little
enough that a hostile file of one huge cell is refused after reading that much, never read
whole into memory.  A longer row raises ``ValidationError`` naming its line.  Python's csv
module has one field limit for the whole process (131,072 by default); oppcore raises it to
``MAX_ROW_CHARS`` when it reads a file, and never lowers a larger limit a program has set.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import sys
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import IO, Any, Final, Literal, TypeAlias

import attrs
from dateutil import parser as _dateutil

from oppcore import clock as _clock
from oppcore import serialization
from oppcore._repr import short
from oppcore.analytics.table import plain_text, spreadsheet_text
from oppcore.domain import _checks
from oppcore.domain.events import Lost, Opened, Won
from oppcore.domain.line_items import LineItem
from oppcore.domain.money import EXACT, ExchangeRates, Money, currency_code
from oppcore.domain.opportunity import Opportunity
from oppcore.domain.stages import Outcome, Pipeline, ReadOnlyDict, Stage
from oppcore.exceptions import DeserializationError, OppcoreError, StorageError, ValidationError

#: The columns ``write_csv`` writes and ``OPPCORE_CSV`` reads, one row per opportunity.
OPPCORE_COLUMNS: Final = (
    "id",
    "name",
    "pipeline",
    "stage",
    "amount",
    "amount_is_manual",
    "currency",
    "probability",
    "probability_is_manual",
    "expected_close",
    "type",
    "campaign_id",
    "lead_id",
    "lead_source",
    "owner",
    "account",
    "description",
    "created_at",
    "closed_at",
    "closed_from",
    "lost_reason",
    "line_items",
)

#: The fields a ``CsvMapping`` can fill from a column.
FIELDS: Final = (*OPPCORE_COLUMNS, "product", "unit_price", "is_closed", "is_won")

#: The columns ``write_csv(..., history=True)`` writes, one row per event.
HISTORY_COLUMNS: Final = (
    "opportunity_id",
    "version",
    "event",
    "at",
    "recorded_at",
    "by",
    "stage",
    "amount",
    "currency",
    "probability",
    "expected_revenue",
    "expected_close",
    "forecast_category",
    "changes",
)

#: Rows between two progress lines on a terminal.
PROGRESS_EVERY = 10_000

#: The most characters one CSV row may hold (all its cells); a longer one is refused.
MAX_ROW_CHARS: Final = 16 * 1024 * 1024
#: The most bytes one character takes in the codecs oppcore reads (UTF-8, cp874, gb18030).
_BYTES_PER_CHAR: Final = 4
#: The columns of a rates file.
RATES_COLUMNS: Final = ("base", "quote", "date", "rate")
#: Fields whose cells are numbers oppcore writes as they are, never quoted as text.
_NUMBER_FIELDS: Final = frozenset({"amount", "probability", "unit_price"})
_NUMBER_HISTORY_COLUMNS: Final = frozenset({"version", "amount", "probability", "expected_revenue"})

_TEXT_FIELDS: Final = ("type", "campaign_id", "lead_id", "lead_source", "owner", "account")
_TRUE: Final = frozenset({"true", "t", "yes", "y", "1"})
_FALSE: Final = frozenset({"false", "f", "no", "n", "0"})
_PLACEHOLDER: Final = re.compile(r"\{([^{}|]*)(?:\|([^{}]*))?\}")
_LOOSE: Final = re.compile(r"[\s_]+")
_OFFSET: Final = re.compile(r"^([+-])(\d{2}):?(\d{2})$")
#: Two defaults that differ in every date part: a value that parses differently under them
#: left a part out (``"March 5"``), and a missing part is not guessed.
_DEFAULTS: Final = (datetime(2000, 1, 1), datetime(2001, 2, 2))  # noqa: DTZ001
_CACHE_LIMIT = 20_000

# -- the mapping ----------------------------------------------------------------------------


def _field_name(value: object, what: str) -> str:
    if not isinstance(value, str) or value not in FIELDS:
        raise ValidationError(
            f"{what} {short(value)} is not a field a CSV column can fill; the fields are "
            f"{', '.join(FIELDS)}."
        )
    return value


def _text_map(value: object, what: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValidationError(f"{what} must be a mapping of text to text, not {short(value)}.")
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise ValidationError(
                f"{what} must map text to text; {short(key)}: {short(item)} is not."
            )
        result[key] = item
    return result


def _columns(value: object) -> Mapping[str, str]:
    columns = _text_map(value, "Mapping columns")
    for field, column in columns.items():
        _field_name(field, "Mapping column field")
        if not column.strip():
            raise ValidationError(f"The column for field {field!r} must not be blank.")
    return ReadOnlyDict(columns)


def _stage_values(value: object) -> Mapping[str, str]:
    stages = _text_map(value, "Mapping stages")
    for raw, key in stages.items():
        if not key.strip():
            raise ValidationError(f"Stage value {raw!r} maps to a blank stage key.")
    return ReadOnlyDict(stages)


def _defaults(value: object) -> Mapping[str, str]:
    defaults = _text_map(value, "Mapping defaults")
    for field in defaults:
        _field_name(field, "Mapping default field")
    return ReadOnlyDict(defaults)


def _value_maps(value: object) -> Mapping[str, Mapping[str, str]]:
    if not isinstance(value, Mapping):
        raise ValidationError(
            f"Mapping values must map a column to a mapping of replacements, not {short(value)}."
        )
    result: dict[str, Mapping[str, str]] = {}
    for column, replacements in value.items():
        if not isinstance(column, str):
            raise ValidationError(f"Mapping values are keyed by column name, not {short(column)}.")
        result[column] = ReadOnlyDict(_text_map(replacements, f"Values of column {column!r}"))
    return ReadOnlyDict(result)


def _optional_pipeline(value: object) -> Pipeline | None:
    if value is None or isinstance(value, Pipeline):
        return value
    raise ValidationError(f"A mapping's pipeline must be a Pipeline or None, not {short(value)}.")


def _optional_currency(value: object) -> str | None:
    return None if value is None else currency_code(value, "Mapping currency")


def _optional_format(value: object) -> str | None:
    if value is None:
        return None
    text = _checks.text(value, "name_format", allow_empty=False)
    if not _PLACEHOLDER.search(text):
        raise ValidationError(
            f"name_format {short(text)} names no column: write one as {{column}} or "
            "{column|text when blank}."
        )
    return text


def _optional_key(value: object) -> str | None:
    return None if value is None else _checks.text(value, "closed_from", allow_empty=False)


def _field_set(value: object) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValidationError(
            f"Mapping optional must be a list of field names, not {short(value)}."
        )
    return frozenset(_field_name(name, "Optional field") for name in value)


def _match(value: object) -> str:
    if value not in ("exact", "loose"):
        raise ValidationError(f"Mapping match {short(value)} is not 'exact' or 'loose'.")
    return str(value)


def _formats(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValidationError(
            f"date_formats must be a list of strptime formats such as '%d/%m/%Y', not {short(value)}."
        )
    formats = tuple(value)
    for form in formats:
        if not isinstance(form, str) or "%" not in form:
            raise ValidationError(
                f"Date format {short(form)} is not a strptime format such as '%d/%m/%Y'."
            )
    return formats


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{what} must be true or false, not {short(value)}.")
    return value


def _dayfirst(value: object) -> bool:
    return _flag(value, "dayfirst")


def _yearfirst(value: object) -> bool:
    return _flag(value, "yearfirst")


def _quoted_formulas(value: object) -> bool:
    return _flag(value, "quoted_formulas")


def _time_zone(value: object) -> tzinfo:
    if isinstance(value, tzinfo):
        return value
    if not isinstance(value, str):
        raise ValidationError(
            f"time_zone must be 'UTC', an offset such as '+07:00' or a zone such as "
            f"'Asia/Bangkok', not {short(value)}."
        )
    if value.upper() in ("UTC", "Z"):
        return timezone.utc
    offset = _OFFSET.match(value)
    if offset:
        sign = -1 if offset.group(1) == "-" else 1
        delta = timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3)))
        if delta >= timedelta(hours=24):
            raise ValidationError(f"time_zone offset {value!r} is a day or more.")
        return timezone(sign * delta)
    import zoneinfo  # only when a mapping names a zone

    try:
        return zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"time_zone {short(value)} is not a time zone this system knows."
        ) from None


def _tz_name(zone: tzinfo) -> str:
    if zone is timezone.utc:
        return "UTC"
    key = getattr(zone, "key", None)
    if isinstance(key, str):
        return key
    offset = zone.utcoffset(None)
    if offset is None:
        raise ValidationError(f"time_zone {short(zone)} has no fixed offset and no name.")
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(offset) // timedelta(minutes=1)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _one_char(value: object, what: str, *, allow_empty: bool) -> str:
    if not isinstance(value, str) or len(value) > 1 or (not value and not allow_empty):
        raise ValidationError(f"{what} must be one character, not {short(value)}.")
    return value


def _thousands(value: object) -> str:
    return _one_char(value, "thousands", allow_empty=True)


def _decimal_point(value: object) -> str:
    return _one_char(value, "decimal_point", allow_empty=False)


def _label(value: object) -> str:
    return _checks.text(value, "Mapping name", allow_empty=False)


@attrs.frozen
class CsvMapping:
    """Which column holds which field, how stage values map to stages, and defaults.

    ``columns`` maps a field (one of ``FIELDS``) to the header of the column that holds it;
    several fields may read one column (Salesforce's ``CloseDate`` is both the expected
    close and, on a closed deal, the close time).  A mapped column missing from a file is a
    ``ValidationError`` naming it, unless its field is listed in ``optional``.

    Fields: ``id`` (blank: the row is rejected; unmapped: a new UUID), ``name`` (else
    ``name_format``, such as ``"{account|Unknown account} {product}"``: ``{column}`` is the
    column's value and ``{column|text}`` gives ``text`` when it is blank), ``stage`` (unmapped:
    the pipeline's first stage), ``amount`` (blank: unknown, ``None``), ``currency``
    (blank: the ``currency=`` argument of ``read_csv``, else the mapping's ``currency``),
    ``probability`` (a percentage 0 to 100; equal to the stage's default it stays the
    default), ``expected_close``, ``created_at`` (the open time; blank: the ``opened_at=``
    argument, else the row is rejected), ``closed_at`` (the close time of a won or lost row),
    ``closed_from`` (the open stage a closed deal closed from), ``type``, ``campaign_id``,
    ``lead_id``, ``lead_source``, ``owner``, ``account``, ``description``, ``lost_reason``
    (read on lost rows only), ``line_items`` (a JSON list of line items, as ``write_csv``
    writes it), ``product`` and ``unit_price`` (one product line of quantity 1, priced at
    ``unit_price`` or else at the amount; a row with neither has no line), ``pipeline``
    (the pipeline id the row belongs to; another id rejects the row), ``amount_is_manual``
    and ``probability_is_manual`` (true or false, as ``write_csv`` writes them), and
    ``is_closed`` and ``is_won`` (checked against the stage's outcome).

    Stage values match, in order: ``stages`` (value -> stage key), a stage key, a stage
    label (any locale), then the same ignoring case.  An unknown value rejects the row.
    ``values`` replaces raw cell values column by column before anything reads them
    (``{"product": {"GTXPro": "GTX Pro"}}``); ``defaults`` gives a raw value for a field
    whose cell is blank or whose column is absent.  Headers match exactly (``match =
    "exact"``) or ignoring case, spaces and underscores (``"loose"``).  Dates and times are
    read in the ``date_formats`` given (strptime forms, tried in order, nothing else), or,
    with none given, as ISO 8601 and then by dateutil with ``dayfirst`` and ``yearfirst``;
    a time without an offset is in ``time_zone``.  Numbers may use a ``thousands``
    separator and another ``decimal_point``.  With ``quoted_formulas`` (as ``OPPCORE_CSV``
    has), a text cell starting with a single quote and then a formula character (``=``,
    ``+``, ``-``, ``@``, tab, carriage return, line feed) or another quote loses that first
    quote: it is the one ``write_csv`` adds so that a spreadsheet never runs the cell.

    Build one in Python, with ``CsvMapping.from_dict(d)``, or from a TOML file with
    ``CsvMapping.from_toml(path)`` (Python 3.11 or later), shaped like this::

        name = "my-crm"
        pipeline = "salesforce"    # "default", "salesforce", "maven", or a [pipeline] table
        currency = "THB"           # the currency of rows that name none
        match = "loose"            # or "exact"
        date_formats = ["%d/%m/%Y"]
        dayfirst = true
        time_zone = "Asia/Bangkok" # or "UTC", "+07:00"
        closed_from = "negotiation_review"
        name_format = "{Account|Unknown account} {Product}"
        optional = ["description"]
        thousands = ","
        decimal_point = "."
        quoted_formulas = false    # true for files write_csv wrote

        [columns]
        id = "Deal ID"
        stage = "Status"
        amount = "Value"
        created_at = "Created"
        closed_at = "Closed"

        [stages]
        "ปิดการขายได้" = "closed_won"

        [values.Product]
        GTXPro = "GTX Pro"

        [defaults]
        type = "new_customer"
    """

    columns: Mapping[str, str] = attrs.field(converter=_columns)
    stages: Mapping[str, str] = attrs.field(factory=dict, converter=_stage_values)
    pipeline: Pipeline | None = attrs.field(default=None, converter=_optional_pipeline)
    currency: str | None = attrs.field(default=None, converter=_optional_currency)
    defaults: Mapping[str, str] = attrs.field(factory=dict, converter=_defaults)
    values: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict, converter=_value_maps)
    name_format: str | None = attrs.field(default=None, converter=_optional_format)
    closed_from: str | None = attrs.field(default=None, converter=_optional_key)
    optional: frozenset[str] = attrs.field(default=frozenset(), converter=_field_set)
    match: Literal["exact", "loose"] = attrs.field(default="exact", converter=_match)
    date_formats: tuple[str, ...] = attrs.field(default=(), converter=_formats)
    dayfirst: bool = attrs.field(default=False, converter=_dayfirst)
    yearfirst: bool = attrs.field(default=False, converter=_yearfirst)
    time_zone: tzinfo = attrs.field(default=timezone.utc, converter=_time_zone)
    thousands: str = attrs.field(default="", converter=_thousands)
    decimal_point: str = attrs.field(default=".", converter=_decimal_point)
    name: str = attrs.field(default="custom", converter=_label)
    quoted_formulas: bool = attrs.field(default=False, converter=_quoted_formulas)

    def __attrs_post_init__(self) -> None:
        if self.thousands and self.thousands == self.decimal_point:
            raise ValidationError(
                f"thousands and decimal_point are both {self.thousands!r}; they must differ."
            )
        if self.pipeline is not None:
            _check_against(self, self.pipeline)

    def to_dict(self) -> dict[str, Any]:
        """A dict of plain values (TOML- and JSON-compatible); ``from_dict`` reads it back."""
        data: dict[str, Any] = {"name": self.name, "columns": dict(self.columns)}
        if self.pipeline is not None:
            stock = {id(p): key for key, p in _STOCK_PIPELINES.items()}
            named = stock.get(id(self.pipeline))
            data["pipeline"] = named if named is not None else self.pipeline.to_dict()
        if self.stages:
            data["stages"] = dict(self.stages)
        if self.currency is not None:
            data["currency"] = self.currency
        if self.defaults:
            data["defaults"] = dict(self.defaults)
        if self.values:
            data["values"] = {column: dict(m) for column, m in self.values.items()}
        if self.name_format is not None:
            data["name_format"] = self.name_format
        if self.closed_from is not None:
            data["closed_from"] = self.closed_from
        if self.optional:
            data["optional"] = sorted(self.optional)
        data["match"] = self.match
        if self.date_formats:
            data["date_formats"] = list(self.date_formats)
        data["dayfirst"] = self.dayfirst
        data["yearfirst"] = self.yearfirst
        data["time_zone"] = _tz_name(self.time_zone)
        if self.thousands:
            data["thousands"] = self.thousands
        data["decimal_point"] = self.decimal_point
        if self.quoted_formulas:
            data["quoted_formulas"] = True
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CsvMapping:
        """A mapping from a dict shaped as the class documentation shows."""
        if not isinstance(data, Mapping):
            raise ValidationError(f"A CSV mapping must be a mapping, not {short(data)}.")
        known = {field.name for field in attrs.fields(cls)}
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise ValidationError(
                f"CSV mapping has unknown key {unknown[0]!r}; its keys are {', '.join(sorted(known))}."
            )
        if "columns" not in data:
            raise ValidationError("CSV mapping lacks 'columns' (field = column header).")
        values = dict(data)
        if "pipeline" in values:
            values["pipeline"] = _pipeline_from(values["pipeline"])
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> CsvMapping:
        """A mapping from a TOML file (Python 3.11 or later, which has ``tomllib``)."""
        if not isinstance(path, (str, os.PathLike)):
            raise ValidationError(f"from_toml takes the path of a TOML file, not {short(path)}.")
        name = os.fspath(path)
        data = _load_toml(name)
        try:
            return cls.from_dict(data)
        except ValidationError as exc:
            raise ValidationError(f"Mapping {name!r}: {exc}") from None


def _load_toml(name: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib

        try:
            with open(name, "rb") as handle:
                return tomllib.load(handle)
        except OSError as exc:
            raise StorageError(f"Cannot read mapping {name!r}: {exc.strerror}.") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValidationError(f"Mapping {name!r} is not valid TOML: {exc}.") from None
    raise ValidationError(
        f"Cannot read mapping {name!r}: TOML mappings need Python 3.11 or later "
        "(tomllib); on 3.10 build the mapping with CsvMapping.from_dict."
    )


def _pipeline_from(value: object) -> Pipeline | None:
    if value is None or isinstance(value, Pipeline):
        return value
    if isinstance(value, str):
        stock = _STOCK_PIPELINES.get(value)
        if stock is None:
            raise ValidationError(
                f"Pipeline {short(value)} is not one of {', '.join(map(repr, _STOCK_PIPELINES))}; "
                "give a custom pipeline as a table."
            )
        return stock
    if isinstance(value, Mapping):
        return Pipeline.from_dict(value)
    raise ValidationError(
        f"A mapping's pipeline must be a name or a pipeline table, not {short(value)}."
    )


def _check_against(mapping: CsvMapping, pipeline: Pipeline) -> None:
    """The mapping's stage keys must be stages of ``pipeline``: a wrong mapping fails at once."""
    for raw, key in mapping.stages.items():
        if key not in pipeline:
            raise ValidationError(
                f"Mapping {mapping.name!r} maps stage value {raw!r} to {key!r}, which pipeline "
                f"{pipeline.id!r} does not have; its stages are "
                f"{', '.join(repr(s.key) for s in pipeline.stages)}."
            )
    if mapping.closed_from is not None:
        stage = pipeline.stage(mapping.closed_from) if mapping.closed_from in pipeline else None
        if stage is None or not stage.is_open:
            raise ValidationError(
                f"Mapping {mapping.name!r} has closed_from {mapping.closed_from!r}, which is not "
                f"an open stage of pipeline {pipeline.id!r}."
            )


# -- presets --------------------------------------------------------------------------------

_MAVEN_PIPELINE = Pipeline(
    id="maven",
    name="Maven CRM",
    stages=(
        Stage("prospecting", "Prospecting", 10),
        Stage("engaging", "Engaging", 50),
        Stage("won", "Won", 100, Outcome.WON),
        Stage("lost", "Lost", 0, Outcome.LOST),
    ),
    transitions={"prospecting": ["engaging"], "engaging": ["won", "lost"]},
)

_STOCK_PIPELINES: Final = {
    "default": Pipeline.default(),
    "salesforce": Pipeline.salesforce(),
    "maven": _MAVEN_PIPELINE,
}

#: Maven Analytics' "CRM Sales Opportunities" ``sales_pipeline.csv``.
#:
#: Stages Prospecting > Engaging > Won / Lost (``MAVEN_CRM.pipeline``).  A deal opens at its
#: ``engage_date`` (midnight UTC); Prospecting rows have none, so they need ``opened_at=``
#: and are rejected without it.  A won or lost deal opens in Engaging and closes at its
#: ``close_date``.  ``owner`` is the sales agent; ``type`` is the product.  Amounts are in
#: USD (the file has no currency column; ``currency=`` overrides).  The product becomes one
#: line item of quantity 1 priced at the deal's ``close_value`` (what this deal sold for, not
#: ``products.csv``'s list price, which the file does not hold), so the amount is the line's
#: total; rows without a close value (Prospecting, Engaging) have no line and no amount, and
#: Lost rows keep the 0 the data set gives them.  The product ``GTXPro`` is spelled
#: ``GTX Pro`` as in ``products.csv``, in the name, the type and the line alike.  The name
#: is the account and the product (``Unknown account`` when the account is blank).
MAVEN_CRM: Final = CsvMapping(
    name="maven",
    columns={
        "id": "opportunity_id",
        "owner": "sales_agent",
        "type": "product",
        "product": "product",
        "account": "account",
        "stage": "deal_stage",
        "created_at": "engage_date",
        "closed_at": "close_date",
        "amount": "close_value",
    },
    name_format="{account|Unknown account} {product}",
    values={"product": {"GTXPro": "GTX Pro"}},
    pipeline=_MAVEN_PIPELINE,
    closed_from="engaging",
    currency="USD",
)

#: A Salesforce Opportunity export with API-name headers (``StageName``), matched ignoring
#: case and underscores (so Fivetran's ``stage_name`` matches too).
#:
#: Stages are ``Pipeline.salesforce()``'s, matched by label ("Closed Won"); other values
#: reject the row naming them (map them with ``attrs.evolve(SALESFORCE, stages={...})``).
#: ``CreatedDate`` is the open time; ``CloseDate`` is the expected close and, on a closed
#: deal, the close time (at the creation time if it is earlier).  ``IsClosed`` and ``IsWon``,
#: when present, must agree with the stage.  ``Probability`` outside 0 to 100 rejects the
#: row; a blank ``Amount`` is unknown.  ``OwnerId`` and ``AccountId`` are the owner and
#: account.  Amounts are in ``CurrencyIsoCode`` when the export has it, else in the
#: ``currency=`` given to ``read_csv``: an amount with neither is rejected, not guessed.
#: ``ForecastCategoryName`` is not read: a deal's forecast category follows its stage.
SALESFORCE: Final = CsvMapping(
    name="salesforce",
    columns={
        "id": "Id",
        "name": "Name",
        "stage": "StageName",
        "amount": "Amount",
        "currency": "CurrencyIsoCode",
        "probability": "Probability",
        "expected_close": "CloseDate",
        "closed_at": "CloseDate",
        "created_at": "CreatedDate",
        "type": "Type",
        "lead_source": "LeadSource",
        "campaign_id": "CampaignId",
        "owner": "OwnerId",
        "account": "AccountId",
        "description": "Description",
        "is_closed": "IsClosed",
        "is_won": "IsWon",
    },
    optional=(
        "amount",
        "currency",
        "probability",
        "type",
        "lead_source",
        "campaign_id",
        "owner",
        "account",
        "description",
        "is_closed",
        "is_won",
    ),
    pipeline=Pipeline.salesforce(),
    match="loose",
)

#: What ``write_csv`` writes: ``OPPCORE_COLUMNS``, stage keys, exact amounts, ISO 8601 times
#: with offsets, line items as a JSON list, and the quote ``write_csv`` puts before a text
#: that starts with a formula character removed again.  Pass ``pipeline=`` for deals of a
#: custom pipeline (rows name their pipeline's id, and another id rejects the row).
OPPCORE_CSV: Final = CsvMapping(
    name="oppcore",
    columns={name: name for name in OPPCORE_COLUMNS},
    optional=frozenset(OPPCORE_COLUMNS) - {"id", "name", "stage", "created_at"},
    quoted_formulas=True,
)

_PRESETS: Final = {
    "maven": MAVEN_CRM,
    "maven_crm": MAVEN_CRM,
    "salesforce": SALESFORCE,
    "oppcore": OPPCORE_CSV,
    "oppcore_csv": OPPCORE_CSV,
}


def load_mapping(spec: CsvMapping | str | os.PathLike[str] | Mapping[str, Any]) -> CsvMapping:
    """A mapping from what a user names: a preset (``"maven"``, ``"salesforce"``,
    ``"oppcore"``), the path of a ``.toml`` file, a dict, or a ``CsvMapping`` itself."""
    if isinstance(spec, CsvMapping):
        return spec
    if isinstance(spec, Mapping):
        return CsvMapping.from_dict(spec)
    if isinstance(spec, str) and spec.strip().lower() in _PRESETS:
        return _PRESETS[spec.strip().lower()]
    if isinstance(spec, (str, os.PathLike)) and os.fspath(spec).lower().endswith(".toml"):
        return CsvMapping.from_toml(spec)
    raise ValidationError(
        f"Mapping {short(spec)} is not a preset ('maven', 'salesforce', 'oppcore'), "
        "a .toml file or a CsvMapping."
    )


# -- results --------------------------------------------------------------------------------


def _read_only(row: Mapping[str, str]) -> Mapping[str, str]:
    return row if isinstance(row, ReadOnlyDict) else ReadOnlyDict(row)


@attrs.frozen
class Rejected:
    """A row that did not become a deal: its physical line number (the header is line 1),
    the row as read (header -> cell), why, and the file it is in when that has a name."""

    line: int
    row: Mapping[str, str] = attrs.field(converter=_read_only)
    reason: str
    file: str | None = None


@attrs.frozen(repr=False)
class ImportResult:
    """The deals a file gave, in file order, and the rows it could not use."""

    opportunities: tuple[Opportunity, ...]
    rejected: tuple[Rejected, ...]

    def __repr__(self) -> str:
        return (
            f"<ImportResult: {len(self.opportunities):,} opportunities, "
            f"{len(self.rejected):,} rejected>"
        )


class _BadRow(Exception):
    """A row that cannot become a deal; the message is the reason."""


class _Problems(list[str]):
    """What is wrong with one row, collected so that every problem is reported at once."""

    def attempt(self, read: Callable[..., Any], *args: Any) -> Any:
        """``read(*args)``, or None with the reason noted when it refuses the value."""
        try:
            return read(*args)
        except (_BadRow, OppcoreError) as exc:
            self.append(str(exc))
            return None


# -- reading files --------------------------------------------------------------------------

Target: TypeAlias = "str | os.PathLike[str] | IO[str] | IO[bytes]"


def _encoding(value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"encoding must be a codec name such as 'utf-8', not {short(value)}.")
    try:
        info = codecs.lookup(value)
    except LookupError:
        raise ValidationError(f"encoding {short(value)} is not a codec Python knows.") from None
    if "\n,".encode(info.name) != b"\n,":
        raise ValidationError(
            f"encoding {value!r} does not write a newline and a comma as ASCII does; "
            "convert the file to UTF-8 first."
        )
    return info.name


def _too_long(name: str, line: int) -> ValidationError:
    return ValidationError(
        f"CSV file {name!r} has a row of more than {MAX_ROW_CHARS:,} characters at line "
        f"{line}; oppcore reads rows of up to {MAX_ROW_CHARS:,} characters (MAX_ROW_CHARS), "
        "so it did not read the file."
    )


def _decoded(lines: Iterable[bytes], name: str, encoding: str) -> Iterator[str]:
    """Decode one physical line at a time, so a bad byte is reported on its own line."""
    strip_bom = encoding == "utf-8"
    for number, raw in enumerate(lines, start=1):
        if len(raw) > MAX_ROW_CHARS * _BYTES_PER_CHAR:
            # More bytes than the longest row can take, cut short by _physical: not decoded.
            raise _too_long(name, number)
        if number == 1 and strip_bom and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            yield raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ValidationError(
                f"CSV file {name!r} is not valid {encoding} text: line {number} has byte "
                f"0x{raw[exc.start]:02x} at position {exc.start + 1}."
            ) from None


def _physical(handle: Any) -> Iterator[Any]:
    """The physical lines of an open file, text or binary, each read with a bound.

    A text line is read up to one character more than ``MAX_ROW_CHARS``, a binary one up to
    one byte more than the bytes that many characters can take; a longer line is cut there
    and the row guard (``_Feed``, ``_decoded``) refuses it, so a file of one huge cell is never
    read whole.  An object without ``readline`` is iterated as it is.
    """
    readline = getattr(handle, "readline", None)
    if not callable(readline):
        yield from handle
        return
    cap = MAX_ROW_CHARS + 1
    most = MAX_ROW_CHARS * _BYTES_PER_CHAR + 1
    while True:
        line = readline(cap)
        if not line:
            return
        if isinstance(line, bytes) and len(line) == cap and not line.endswith(b"\n"):
            # Bytes are not characters: a binary line may take more bytes than that.
            parts, size = [line], len(line)
            while size < most and not parts[-1].endswith(b"\n"):
                more = readline(min(cap, most - size))
                if not more:
                    break
                parts.append(more)
                size += len(more)
            line = b"".join(parts)
        yield line


def _text_lines(handle: Iterable[Any], name: str, encoding: str) -> Iterator[str]:
    """The lines of a file object, text or binary (decided by its first line)."""
    iterator = _physical(handle)
    first = _next_line(iterator, name, 1)
    if first is None:
        return
    if isinstance(first, bytes):
        yield from _decoded(_chain(first, iterator), name, encoding)
        return
    if not isinstance(first, str):
        raise ValidationError(f"CSV file {name!r} gives {short(first)}, not lines of text.")
    yield first.removeprefix("\ufeff")
    number = 2
    while (line := _next_line(iterator, name, number)) is not None:
        yield line
        number += 1


def _next_line(iterator: Iterator[Any], name: str, number: int) -> Any:
    """The next line of an open file; its own decoding error, named (a text file decodes
    ahead in blocks, so the bad byte is on this line or a later one)."""
    try:
        return next(iterator, None)
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"CSV file {name!r} is not valid {exc.encoding} text at line {number} or after: "
            f"byte 0x{exc.object[exc.start]:02x} ({exc.reason})."
        ) from None


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _source_name(target: object, unnamed: str) -> str:
    if isinstance(target, (str, os.PathLike)):
        return os.fspath(target)
    name = getattr(target, "name", None)
    return name if isinstance(name, str) else unnamed


@contextmanager
def _lines(
    target: object,
    encoding: str,
    unnamed: str = "<stream>",
    what: str = "CSV file",
    caller: str = "read_csv",
) -> Iterator[tuple[str, Iterator[str]]]:
    """``(name, physical lines)`` of a path or an open file; the caller's file stays open."""
    if isinstance(target, (str, os.PathLike)):
        name = os.fspath(target)
        try:
            handle = open(target, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise StorageError(f"Cannot read {what} {name!r}: {exc.strerror}.") from None
        except ValueError:  # an embedded NUL in the path
            raise ValidationError(f"{short(name)} is not a usable file path.") from None
        with handle:
            yield name, _decoded(_read_binary(handle, name, what), name, encoding)
        return
    if isinstance(target, (bytes, bytearray)) or not hasattr(target, "read"):
        raise ValidationError(f"{caller} takes a path or an open file, not {short(target)}.")
    name = _source_name(target, unnamed)
    if not isinstance(target, Iterable):
        raise ValidationError(f"{short(target)} cannot be read line by line.")
    yield name, _text_lines(target, name, encoding)


def _read_binary(handle: IO[bytes], name: str, what: str) -> Iterator[bytes]:
    try:
        yield from _physical(handle)
    except OSError as exc:
        raise StorageError(f"Cannot read {what} {name!r}: {exc.strerror or exc}.") from None


class _Feed:
    """The lines of one file as the csv reader takes them, counting the characters of the
    row being read: a row of more than ``MAX_ROW_CHARS`` raises ``ValidationError`` at once."""

    def __init__(self, lines: Iterator[str], name: str) -> None:
        self.lines = lines
        self.name = name
        self.size = 0
        self.start = 1

    def begin(self, line: int) -> None:
        """A new row starts on physical line ``line``."""
        self.size = 0
        self.start = line

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.size += len(line)
        if self.size > MAX_ROW_CHARS:
            raise _too_long(self.name, self.start)
        return line


def _allow_large_fields() -> None:
    """Let the csv module read a cell as large as a row oppcore reads.

    Its field limit is one number for the whole process (131,072 characters by default): it
    is raised to ``MAX_ROW_CHARS`` and never lowered, so a program that set a larger limit
    keeps it.  oppcore's own bound is ``_Feed``'s, whatever the csv module's limit is.
    """
    if csv.field_size_limit() < MAX_ROW_CHARS:
        csv.field_size_limit(MAX_ROW_CHARS)


def _records(lines: Iterator[str], name: str) -> Iterator[tuple[int, list[str] | None, str]]:
    """``(first physical line, cells, problem)`` per record; cells None when it is not CSV."""
    _allow_large_fields()
    feed = _Feed(lines, name)
    reader = csv.reader(feed, strict=False)
    while True:
        start = reader.line_num + 1
        feed.begin(start)
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, None, f"Line {start} of {name!r} is not valid CSV: {exc}."
            continue
        yield start, cells, ""


def _loose(header: str) -> str:
    return _LOOSE.sub("", header).casefold()


class _Header:
    """A file's header and how the mapping's column names find their cells."""

    def __init__(self, cells: list[str], mapping: CsvMapping, name: str) -> None:
        if cells:
            cells[0] = cells[0].removeprefix("\ufeff")
        self.cells = [cell.strip() for cell in cells]
        self.name = name
        self.loose = mapping.match == "loose"
        self.found: dict[str, list[int]] = {}
        for index, cell in enumerate(self.cells):
            self.found.setdefault(self._key(cell), []).append(index)

    def _key(self, column: str) -> str:
        return _loose(column) if self.loose else column.strip()

    def find(self, column: str, *, required: str | None) -> int | None:
        """The index of ``column``; a missing one raises when ``required`` names its use."""
        hits = self.found.get(self._key(column), [])
        if len(hits) > 1:
            raise ValidationError(
                f"CSV file {self.name!r} has {len(hits)} columns matching {column!r} "
                f"({', '.join(repr(self.cells[i]) for i in hits)}); which one is meant is unclear."
            )
        if hits:
            return hits[0]
        if required is None:
            return None
        raise ValidationError(
            f"CSV file {self.name!r} has no column {column!r} ({required}); its columns are "
            f"{short(', '.join(self.cells))}."
        )

    def row(self, cells: list[str]) -> dict[str, str]:
        row = dict(zip(self.cells, cells, strict=False))
        for index in range(len(self.cells), len(cells)):
            row[f"column {index + 1}"] = cells[index]
        return row


# -- parsing cells --------------------------------------------------------------------------


class _Cells:
    """Turns cell text into values under one mapping: numbers, dates, times, flags."""

    def __init__(self, mapping: CsvMapping) -> None:
        self.mapping = mapping
        self.moments: dict[str, datetime] = {}
        self.days: dict[str, date] = {}

    def number(self, text: str, what: str, exact: bool = False) -> Decimal:
        value = text.strip()
        if self.mapping.thousands:
            value = value.replace(self.mapping.thousands, "")
        if self.mapping.decimal_point != ".":
            value = value.replace(self.mapping.decimal_point, ".")
        if len(value) > 64 and not exact:
            raise _BadRow(f"{what} {short(text)} is not a number oppcore accepts.")
        try:
            return _checks.decimal(value, what, exact=exact)
        except ValidationError as exc:
            raise _BadRow(str(exc).replace(short(value), short(text), 1)) from None

    def percentage(self, text: str, what: str) -> Decimal:
        value = text.strip().removesuffix("%").strip()
        number = self.number(value, what)
        if not Decimal(0) <= number <= Decimal(100):
            raise _BadRow(f"{what} {short(text.strip())} is outside 0 to 100.")
        return number

    def flag(self, text: str, what: str) -> bool:
        value = text.strip().casefold()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise _BadRow(f"{what} {short(text)} is not true or false.")

    def _parse(self, text: str, what: str) -> datetime:
        value = text.strip()
        forms = self.mapping.date_formats
        if forms:
            for form in forms:
                try:
                    return datetime.strptime(value, form)  # noqa: DTZ007 - zone added by caller
                except ValueError:
                    continue
            raise _BadRow(
                f"{what} {short(text)} is not in the form the mapping names "
                f"({' or '.join(repr(f) for f in forms)})."
            )
        if len(value) > 64:
            raise _BadRow(f"{what} {short(text)} is not a date.")
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
        try:
            with warnings.catch_warnings():
                # dateutil only warns about a zone name it cannot place, then drops it.
                warnings.simplefilter("error", _dateutil.UnknownTimezoneWarning)
                first, second = (
                    _dateutil.parse(
                        value,
                        default=default,
                        dayfirst=self.mapping.dayfirst,
                        yearfirst=self.mapping.yearfirst,
                    )
                    for default in _DEFAULTS
                )
        except _dateutil.UnknownTimezoneWarning:
            raise _BadRow(
                f"{what} {short(text)} names a time zone oppcore cannot place; write an "
                "offset such as +07:00."
            ) from None
        except (ValueError, OverflowError, TypeError):
            raise _BadRow(f"{what} {short(text)} is not a date oppcore can read.") from None
        if first != second:
            raise _BadRow(
                f"{what} {short(text)} is not a whole date (it lacks a day, month or year)."
            )
        return first

    def moment(self, text: str, what: str) -> datetime:
        """An aware UTC datetime; a value without an offset is in the mapping's time zone."""
        hit = self.moments.get(text)
        if hit is not None:
            return hit
        value = self._parse(text, what)
        if value.tzinfo is None or value.utcoffset() is None:
            value = value.replace(tzinfo=self.mapping.time_zone)
        try:
            value = value.astimezone(timezone.utc)
        except OverflowError:
            raise _BadRow(f"{what} {short(text)} is outside the calendar.") from None
        if len(self.moments) >= _CACHE_LIMIT:
            self.moments.clear()
        self.moments[text] = value
        return value

    def day(self, text: str, what: str) -> date:
        """The calendar date written (a time of day, if any, is dropped)."""
        hit = self.days.get(text)
        if hit is not None:
            return hit
        value = self._parse(text, what).date()
        if len(self.days) >= _CACHE_LIMIT:
            self.days.clear()
        self.days[text] = value
        return value


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


@attrs.define
class _Row:
    """The values of one row, parsed; the stage fields are ``Stage`` values of the pipeline."""

    id: str
    name: str
    stage: Stage
    created_at: datetime
    closed_at: datetime | None = None
    closed_from: Stage | None = None
    currency: str | None = None
    amount: Decimal | None = None
    amount_text: str = ""
    amount_is_manual: bool | None = None
    probability: Decimal | None = None
    probability_is_manual: bool | None = None
    expected_close: date | None = None
    text: dict[str, str | None] = attrs.Factory(dict)
    description: str = ""
    lost_reason: str | None = None
    line_items: list[LineItem] = attrs.Factory(list)
    product: str | None = None
    unit_price: Decimal | None = None
    unit_price_text: str = ""
    is_closed: bool | None = None
    is_won: bool | None = None


class _RowReader:
    """Reads the rows of one file under one mapping and pipeline, and builds their deals."""

    def __init__(
        self,
        mapping: CsvMapping,
        header: _Header,
        *,
        pipeline: Pipeline,
        currency: str | None,
        opened_at: datetime | None,
        clock: _clock.FixedClock,
    ) -> None:
        self.mapping = mapping
        self.header = header
        self.pipeline = pipeline
        self.currency = currency
        self.opened_at = opened_at
        self.clock = clock
        self.now = clock.now()
        self.cells = _Cells(mapping)
        self.columns: dict[str, int] = {}
        for field, column in mapping.columns.items():
            required = None if field in mapping.optional else f"for field {field!r}"
            index = header.find(column, required=required)
            if index is not None:
                self.columns[field] = index
        # The cells write_csv may have quoted: every one but those of numbers alone.
        self.unquote: tuple[int, ...] = ()
        if mapping.quoted_formulas:
            numbers = {i for field, i in self.columns.items() if field in _NUMBER_FIELDS}
            texts = {i for field, i in self.columns.items() if field not in _NUMBER_FIELDS}
            self.unquote = tuple(
                i for i in range(len(header.cells)) if i not in numbers or i in texts
            )
        self.name_parts: list[tuple[str, int | None, str | None]] = []
        if mapping.name_format is not None:
            position = 0
            for hit in _PLACEHOLDER.finditer(mapping.name_format):
                literal = mapping.name_format[position : hit.start()]
                column = hit.group(1)
                index = header.find(column, required="named in name_format")
                self.name_parts.append((literal, index, hit.group(2)))
                position = hit.end()
            self.name_parts.append((mapping.name_format[position:], None, None))
        self.replacements: list[tuple[int, Mapping[str, str]]] = []
        for column, replacements in mapping.values.items():
            index = header.find(column, required=None)
            if index is not None:
                self.replacements.append((index, replacements))
        self.stage_names = _stage_lookup(mapping, pipeline)
        self.width = len(header.cells)
        self.labels: dict[str, str] = {}
        self.products: dict[tuple[str, Decimal, str, str], LineItem] = {}

    # -- cells -------------------------------------------------------------------------

    def values(self, raw: list[str]) -> tuple[list[str], dict[str, str]]:
        """The row's cells after the mapping's value replacements, and each field's text:
        its cell, else the mapping's default; a field whose text is blank is left out."""
        if len(raw) != self.width:
            raise _BadRow(f"The row has {len(raw)} cells; the header has {self.width}.")
        cells = raw
        if self.unquote or self.replacements:
            cells = list(raw)
            for index in self.unquote:
                cells[index] = plain_text(cells[index])
            for index, replacements in self.replacements:
                cells[index] = replacements.get(cells[index], cells[index])
        found: dict[str, str] = {}
        for field, index in self.columns.items():
            text = cells[index]
            if text and not text.isspace():
                found[field] = text
        for field, text in self.mapping.defaults.items():
            if field not in found and text and not text.isspace():
                found[field] = text
        return cells, found

    def what(self, field: str) -> str:
        label = self.labels.get(field)
        if label is None:
            column = self.mapping.columns.get(field)
            label = field.replace("_", " ").capitalize() + (f" ({column})" if column else "")
            self.labels[field] = label
        return label

    def stage(self, text: str, what: str) -> Stage:
        key = self.stage_names[0].get(text) or self.stage_names[0].get(text.strip())
        if key is None:
            key = self.stage_names[1].get(text.strip().casefold())
        if key is None:
            known = ", ".join(repr(s.label or s.key) for s in self.pipeline.stages)
            raise _BadRow(
                f"{what} {short(text)} is not a stage of pipeline {self.pipeline.id!r} "
                f"({known}); map other values with the mapping's stages."
            )
        return self.pipeline.stage(key)

    # -- one row -----------------------------------------------------------------------

    def parse(self, cells: list[str], found: dict[str, str], new_id: Callable[[], str]) -> _Row:
        """The row's values (``found`` from ``values``), or ``_BadRow`` listing every problem."""
        problems = _Problems()
        attempt = problems.attempt

        get, read = found.get, self.cells
        columns = self.mapping.columns
        if "id" in self.columns:
            opp_id = get("id")
            if opp_id is None:
                problems.append(f"The row has no opportunity id ({columns['id']}).")
        else:
            opp_id = new_id()
        name = attempt(self.name, cells, found)
        stage: Stage | None = self.pipeline.first_stage
        text = get("stage")
        if text is not None:
            stage = attempt(self.stage, text, self.what("stage"))
        elif "stage" in self.columns:
            problems.append(f"The row has no stage ({columns['stage']}).")
        row = _Row(
            id=opp_id or "",
            name=name or "",
            stage=stage or self.pipeline.first_stage,
            created_at=self.now,
        )
        text = get("created_at")
        if text is not None:
            row.created_at = attempt(read.moment, text, self.what("created_at"))
        elif self.opened_at is not None:
            row.created_at = self.opened_at
        else:
            column = columns.get("created_at")
            where = f"its {column} is blank" if column else "the mapping names no open-time column"
            problems.append(
                f"The row has no time it opened ({where}); pass opened_at= to open such rows "
                "at a time you choose."
            )
        text = get("closed_at")
        if text is not None:
            row.closed_at = attempt(read.moment, text, self.what("closed_at"))
        text = get("closed_from")
        if text is not None:
            row.closed_from = attempt(self.stage, text, self.what("closed_from"))
        text = get("pipeline")
        if text is not None and text != self.pipeline.id:
            problems.append(
                f"The row is in pipeline {text!r}, not {self.pipeline.id!r}; pass pipeline= "
                "with its pipeline."
            )
        text = get("currency")
        if text is not None:
            row.currency = attempt(currency_code, text, self.what("currency"))
        text = get("amount")
        if text is not None:
            row.amount_text = text
            row.amount = attempt(read.number, text, "Amount", True)
        text = get("amount_is_manual")
        if text is not None:
            row.amount_is_manual = attempt(read.flag, text, self.what("amount_is_manual"))
        text = get("probability_is_manual")
        if text is not None:
            row.probability_is_manual = attempt(read.flag, text, self.what("probability_is_manual"))
        text = get("is_closed")
        if text is not None:
            row.is_closed = attempt(read.flag, text, self.what("is_closed"))
        text = get("is_won")
        if text is not None:
            row.is_won = attempt(read.flag, text, self.what("is_won"))
        text = get("probability")
        if text is not None:
            row.probability = attempt(read.percentage, text, "Probability")
        text = get("expected_close")
        if text is not None:
            row.expected_close = attempt(read.day, text, self.what("expected_close"))
        row.text = {field: get(field) for field in _TEXT_FIELDS}
        position = self.columns.get("description")
        row.description = cells[position] if position is not None else ""
        if not row.description:
            row.description = self.mapping.defaults.get("description", "")
        row.lost_reason = get("lost_reason")
        text = get("line_items")
        if text is not None:
            row.line_items = attempt(_line_items, text) or []
        row.product = get("product")
        text = get("unit_price")
        if text is not None:
            row.unit_price_text = text
            row.unit_price = attempt(read.number, text, self.what("unit_price"), True)
        if problems:
            raise _BadRow(" ".join(problems))
        return row

    def name(self, cells: list[str], found: dict[str, str]) -> str:
        value = found.get("name")
        if value is not None:
            return value
        if not self.name_parts:
            column = self.mapping.columns.get("name")
            raise _BadRow(f"The row has no name ({column})." if column else "The row has no name.")
        parts = []
        for literal, index, fallback in self.name_parts:
            parts.append(literal)
            if index is not None:
                text = cells[index]
                parts.append(fallback if _blank(text) and fallback is not None else text)
        name = "".join(parts).strip()
        if not name:
            raise _BadRow(f"The row's name_format {self.mapping.name_format!r} gives a blank name.")
        return name

    def build(self, row: _Row) -> Opportunity:
        """The deal ``row`` states: an Opened event and, for a closed row, Won or Lost."""
        target = row.stage
        self.check_outcome(row)
        code = row.currency or self.currency or self.mapping.currency
        lines = list(row.line_items)
        if row.product is not None:
            price = row.unit_price if row.unit_price is not None else row.amount
            if price is not None:
                if code is None:
                    raise _BadRow(self.no_currency(row.amount_text or str(price)))
                lines.append(self.product_line(row.product, price, code, lines, row))
        manual = self.manual_amount(row, lines, code)
        if target.is_open:
            opened_in = target
        else:
            opened_in = row.closed_from or self.closed_from()
            if not opened_in.is_open:
                raise _BadRow(
                    f"The deal closed from {opened_in.key!r}, which is not an open stage."
                )
        probability, hand_set = self.probability(row, target, opened_in)
        created = row.created_at
        if created > self.now:
            raise _BadRow(
                f"The deal opened at {created.isoformat()}, after the import's time "
                f"{self.now.isoformat()}."
            )
        opened = Opened(
            opportunity_id=row.id,
            version=1,
            at=created,
            recorded_at=self.now,
            name=row.name,
            pipeline=self.pipeline,
            stage=opened_in.key,
            probability=probability,
            manual_probability=hand_set,
            currency=code,
            amount=manual,
            line_items=tuple(lines),
            expected_close=row.expected_close,
            description=row.description,
            **row.text,
        )
        if target.is_open:
            return Opportunity.replay((opened,))
        if row.closed_at is None:
            column = self.mapping.columns.get("closed_at")
            where = f"its {column} is blank" if column else "the mapping names no close-time column"
            raise _BadRow(f"The deal is {target.outcome.value} but has no close time ({where}).")
        # A close date before the creation time puts the close at the creation time.
        closed = max(row.closed_at, created)
        if closed > self.now:
            raise _BadRow(
                f"The deal closed at {closed.isoformat()}, after the import's time "
                f"{self.now.isoformat()}."
            )
        common: dict[str, Any] = {
            "opportunity_id": row.id,
            "version": 2,
            "at": closed,
            "recorded_at": self.now,
            "from_stage": opened_in.key,
            "to_stage": target.key,
        }
        close = Won(**common) if target.is_won else Lost(reason=row.lost_reason, **common)
        return Opportunity.replay((opened, close))

    def product_line(
        self, product: str, price: Decimal, code: str, lines: list[LineItem], row: _Row
    ) -> LineItem:
        """The row's one product line; equal lines are shared (they are frozen values)."""
        taken = {line.id for line in lines}
        line_id = next(f"line-{n}" for n in range(1, len(lines) + 2) if f"line-{n}" not in taken)
        key = (product, price, code, line_id)
        item = self.products.get(key)
        if item is None:
            text = row.unit_price_text if row.unit_price is not None else row.amount_text
            item = LineItem(product, self.money(price, text, code), id=line_id)
            if len(self.products) >= _CACHE_LIMIT:
                self.products.clear()
            self.products[key] = item
        return item

    def closed_from(self) -> Stage:
        key = self.mapping.closed_from
        return self.pipeline.stage(key) if key is not None else self.pipeline.first_stage

    def check_outcome(self, row: _Row) -> None:
        stage = row.stage
        if row.is_won is not None and row.is_won != stage.is_won:
            raise _BadRow(
                f"{self.what('is_won')} says {'won' if row.is_won else 'not won'}, but stage "
                f"{stage.label or stage.key!r} is {stage.outcome.value}."
            )
        if row.is_closed is not None and row.is_closed == stage.is_open:
            raise _BadRow(
                f"{self.what('is_closed')} says {'closed' if row.is_closed else 'open'}, but "
                f"stage {stage.label or stage.key!r} is {stage.outcome.value}."
            )

    def no_currency(self, amount: str) -> str:
        return (
            f"Amount {short(amount)} has no currency: the row names none and read_csv was "
            "given no currency=."
        )

    def manual_amount(self, row: _Row, lines: list[LineItem], code: str | None) -> Money | None:
        """The hand-typed amount, or None when the amount is the lines' total or unknown."""
        if row.amount is None:
            if row.amount_is_manual:
                raise _BadRow("The amount is marked manual but is blank.")
            return None
        if code is None:
            raise _BadRow(self.no_currency(row.amount_text))
        total = None
        if lines:
            total = Decimal(0)
            for line in lines:
                total = EXACT.add(total, line.total.amount)
        if row.amount_is_manual is False:
            if total is None or total != row.amount:
                raise _BadRow(
                    f"Amount {short(row.amount_text)} is marked as the line total, but the "
                    f"lines total {total}."
                )
            return None
        if row.amount_is_manual is None and total is not None and total == row.amount:
            return None
        return self.money(row.amount, row.amount_text, code)

    def money(self, value: Decimal, text: str, code: str) -> Money:
        """Money a deal may hold, or ``_BadRow`` naming the cell's text."""
        try:
            return Money(value, code)
        except ValidationError:
            self.cells.number(text, "Amount")  # names the text as written, if that is the fault
            raise

    def probability(self, row: _Row, target: Stage, opened_in: Stage) -> tuple[Decimal, bool]:
        """The Opened event's probability and whether it was set by hand."""
        chance = row.probability
        if not target.is_open:
            if chance is not None and chance != target.probability:
                raise _BadRow(
                    f"A deal in {target.outcome.value} stage {target.label or target.key!r} has "
                    f"probability {target.probability}, not {chance}."
                )
            return opened_in.probability, False
        if chance is None:
            if row.probability_is_manual:
                raise _BadRow("The probability is marked manual but is blank.")
            return target.probability, False
        if row.probability_is_manual is None:
            return chance, chance != target.probability
        if not row.probability_is_manual and chance != target.probability:
            raise _BadRow(
                f"Probability {chance} is marked as stage {target.key!r}'s default, which is "
                f"{target.probability}."
            )
        return chance, row.probability_is_manual


def _stage_lookup(mapping: CsvMapping, pipeline: Pipeline) -> tuple[dict[str, str], dict[str, str]]:
    """Exact and case-blind tables from a stage value to a key, in order of precedence."""
    ordered: list[tuple[str, str]] = list(mapping.stages.items())
    ordered += [(stage.key, stage.key) for stage in pipeline.stages]
    ordered += [(stage.label, stage.key) for stage in pipeline.stages if stage.label]
    ordered += [
        (label, stage.key) for stage in pipeline.stages for label in stage.labels.values() if label
    ]
    exact: dict[str, str] = {}
    folded: dict[str, str] = {}
    for value, key in ordered:
        exact.setdefault(value, key)
        folded.setdefault(value.strip().casefold(), key)
    return exact, folded


def _line_items(text: str) -> list[LineItem]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise _BadRow(f"Line items {short(text)} are not a JSON list.") from None
    if not isinstance(data, list):
        raise _BadRow(f"Line items {short(text)} are not a JSON list.")
    items = []
    for position, item in enumerate(data, start=1):
        try:
            items.append(serialization.structure(item, LineItem))
        except DeserializationError as exc:
            problems = "; ".join(exc.errors) or str(exc)
            raise _BadRow(f"Line item {position} is not valid: {problems}") from None
    return items


def _check_progress(value: object) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ValidationError(f"progress must be True, False or None, not {short(value)}.")
    return value


class _Progress:
    """A progress line on stderr, only when it is a terminal (or when forced on)."""

    def __init__(self, enabled: bool | None, label: str) -> None:
        stream = sys.stderr
        if enabled is None:
            enabled = _is_terminal(stream)
        self.stream = stream if enabled and stream is not None else None
        self.label = label
        self.rows = 0

    def tick(self) -> None:
        self.rows += 1
        if self.stream is not None and self.rows % PROGRESS_EVERY == 0:
            self.stream.write(f"\r{self.label}: {self.rows:,} rows read")
            self.stream.flush()

    def done(self, imported: int, rejected: int) -> None:
        if self.stream is not None:
            self.stream.write(
                f"\r{self.label}: {self.rows:,} rows read, {imported:,} imported, "
                f"{rejected:,} rejected.\n"
            )
            self.stream.flush()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _check_mapping(mapping: object) -> CsvMapping:
    if not isinstance(mapping, CsvMapping):
        raise ValidationError(
            f"mapping must be a CsvMapping (MAVEN_CRM, SALESFORCE, OPPCORE_CSV, or one from "
            f"load_mapping), not {short(mapping)}."
        )
    return mapping


def _check_pipeline(pipeline: object, mapping: CsvMapping) -> Pipeline:
    if pipeline is None:
        chosen = mapping.pipeline or Pipeline.default()
    elif isinstance(pipeline, Pipeline):
        chosen = pipeline
    else:
        raise ValidationError(f"pipeline must be a Pipeline or None, not {short(pipeline)}.")
    _check_against(mapping, chosen)
    return chosen


def _check_opened_at(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return _checks.aware(value, "opened_at")
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    raise ValidationError(f"opened_at must be an aware datetime or a date, not {short(value)}.")


def _import_clock(clock: _clock.Clock | None) -> _clock.FixedClock:
    """One recording time for the whole import: every event is recorded when it ran."""
    now = _checks.aware(_clock.resolve(clock).now(), "The clock's time")
    return _clock.FixedClock(now)


def _new_id() -> str:
    return str(uuid.uuid4())


def read_csv(
    path_or_file: Target,
    *,
    mapping: CsvMapping,
    pipeline: Pipeline | None = None,
    currency: str | None = None,
    opened_at: datetime | date | None = None,
    encoding: str = "utf-8",
    clock: _clock.Clock | None = None,
    progress: bool | None = None,
) -> ImportResult:
    """Read opportunities from a CSV file (a path, or an open text or binary file).

    ``mapping`` says which column holds which field (``MAVEN_CRM``, ``SALESFORCE``,
    ``OPPCORE_CSV`` or your own ``CsvMapping``); ``pipeline`` replaces the mapping's (default:
    ``Pipeline.default()``); ``currency`` is the currency of rows that name none;
    ``opened_at`` is the open time of rows that have none (a date means midnight UTC).
    UTF-8 with or without a byte-order mark, and CRLF or LF line ends, are read alike;
    ``encoding`` reads another ASCII-compatible codec (``"cp874"`` for Thai Windows files).
    Every event is recorded (``recorded_at``) at ``clock``'s time when the import starts.
    Blank lines and rows whose cells are all empty are not rows of data and are skipped.

    Every row that cannot become a deal is in ``rejected`` with its physical line number
    (the header is line 1), the row and the reason; the other rows import regardless.  A
    repeated id rejects the second and later rows.  A file that cannot be read at all (not
    UTF-8, no header, a mapped column missing) raises.  ``progress`` shows a progress line
    on stderr: None (the default) when stderr is a terminal, True always, False never.
    """
    mapping = _check_mapping(mapping)
    chosen = _check_pipeline(pipeline, mapping)
    code = None if currency is None else currency_code(currency, "currency")
    start = _check_opened_at(opened_at)
    codec = _encoding(encoding)
    show = _check_progress(progress)
    stamp = _import_clock(clock)
    opportunities: list[Opportunity] = []
    rejected: list[Rejected] = []
    with _lines(path_or_file, codec) as (name, lines):
        records = _records(lines, name)
        header = _header(records, mapping, name)
        reader = _RowReader(
            mapping, header, pipeline=chosen, currency=code, opened_at=start, clock=stamp
        )
        meter = _Progress(show, f"Importing {name}")
        seen: dict[str, int] = {}
        for line, cells, problem in records:
            if cells is None:
                rejected.append(Rejected(line, {}, problem, name))
                continue
            if not any(cell.strip() for cell in cells):
                continue  # a blank line, or a row of empty cells: not a row of data
            meter.tick()
            try:
                opp = _one(reader, cells, line, seen)
            except _BadRow as exc:
                rejected.append(Rejected(line, header.row(cells), str(exc), name))
                continue
            opportunities.append(opp)
        meter.done(len(opportunities), len(rejected))
    return ImportResult(tuple(opportunities), tuple(rejected))


def _header(
    records: Iterator[tuple[int, list[str] | None, str]], mapping: CsvMapping, name: str
) -> _Header:
    for _line, cells, problem in records:
        if cells is None:
            raise ValidationError(problem)
        if any(cell.strip() for cell in cells):
            return _Header(cells, mapping, name)
    raise ValidationError(f"CSV file {name!r} is empty: it has no header line.")


def _one(reader: _RowReader, cells: list[str], line: int, seen: dict[str, int]) -> Opportunity:
    row = _parse_once(reader, cells, line, seen)
    try:
        return reader.build(row)
    except OppcoreError as exc:
        raise _BadRow(str(exc)) from None


def exported_pipelines(path_or_file: Target, *, encoding: str = "utf-8") -> frozenset[str]:
    """The pipeline ids the rows of a file ``write_csv`` wrote name (its ``pipeline`` column),
    read as ``read_csv`` with ``OPPCORE_CSV`` reads them; blank cells and rows that are not
    CSV are left out (``read_csv`` reports them), and a file without the column names none."""
    codec = _encoding(encoding)
    named: set[str] = set()
    with _lines(path_or_file, codec, caller="exported_pipelines") as (name, lines):
        records = _records(lines, name)
        header = _header(records, OPPCORE_CSV, name)
        index = header.find("pipeline", required=None)
        if index is None:
            return frozenset()
        for _line, cells, _problem in records:
            if cells is not None and index < len(cells) and cells[index].strip():
                named.add(plain_text(cells[index]))
    return frozenset(named)


# -- exchange rates -------------------------------------------------------------------------


def read_rates(path_or_file: Target, *, encoding: str = "utf-8") -> ExchangeRates:
    """Exchange rates from a CSV file with the columns ``base``, ``quote``, ``date``
    (YYYY-MM-DD) and ``rate`` (``RATES_COLUMNS``), one rate per row: 1 base = rate quote from
    that date.  Other columns are ignored.

    The file is read as ``read_csv`` reads one (a path or an open file; UTF-8 with or without
    a byte-order mark; rows of up to ``MAX_ROW_CHARS`` characters).  Unlike an import, rates
    are all or nothing: the first row that is not a rate raises ``ValidationError`` naming
    its line, and blank rows are skipped.
    """
    codec = _encoding(encoding)
    entries: list[tuple[str, str, date, str]] = []
    with _lines(path_or_file, codec, "<rates>", "rates file", "read_rates") as (name, lines):
        records = _records(lines, name)
        header = _header(records, OPPCORE_CSV, name)
        places = [header.find(column, required="of a rates file") for column in RATES_COLUMNS]
        width = len(header.cells)
        for line, cells, problem in records:
            if cells is None:
                raise ValidationError(f"Rates file {name!r}: {problem}")
            if not any(cell.strip() for cell in cells):
                continue
            where = f"Rates file {name!r} line {line}"
            if len(cells) != width:
                raise ValidationError(
                    f"{where}: the row has {len(cells)} cells; the header has {width}."
                )
            base, quote, day, rate = (cells[i].strip() for i in places if i is not None)
            try:
                on = date.fromisoformat(day)
            except ValueError:
                raise ValidationError(
                    f"{where}: date {short(day)} is not a date written YYYY-MM-DD."
                ) from None
            entry = (base, quote, on, rate)
            try:
                ExchangeRates([entry])  # each row's own faults, named with its line
            except ValidationError as exc:
                raise ValidationError(f"{where}: {exc}") from None
            entries.append(entry)
    try:
        return ExchangeRates(entries)
    except ValidationError as exc:  # a rate given twice
        raise ValidationError(f"Rates file {name!r}: {exc}") from None


# -- Salesforce history ---------------------------------------------------------------------


class _Keep:
    """A history file without a column says nothing about that field: keep it as it is."""

    def __repr__(self) -> str:
        return "KEEP"


_KEEP: Final = _Keep()


@attrs.define
class _Snapshot:
    """One history row: the deal's stage, amount, probability and close date at ``at``."""

    line: int
    row: dict[str, str]
    opportunity_id: str
    at: datetime
    stage: Stage
    amount: Decimal | _Keep | None
    probability: Decimal | _Keep | None
    close_date: date | _Keep | None


#: Where a history export keeps each value: Salesforce's OpportunityHistory, or a Fivetran
#: history-mode copy of the Opportunity table (one row per version, from ``_fivetran_start``).
_HISTORY_SHAPES: Final = {
    "salesforce": {"id": "OpportunityId", "at": "CreatedDate"},
    "fivetran": {"id": "Id", "at": "_fivetran_start"},
}


def read_salesforce_history(
    opportunities_csv: Target,
    history_csv: Target,
    *,
    pipeline: Pipeline | None = None,
    currency: str | None = None,
    mapping: CsvMapping = SALESFORCE,
    encoding: str = "utf-8",
    clock: _clock.Clock | None = None,
    progress: bool | None = None,
) -> ImportResult:
    """Rebuild deals from a Salesforce Opportunity export and its OpportunityHistory export.

    Each deal opens at its ``CreatedDate`` as its first history row stood, then changes as
    each later history row says, in time order: stage moves, wins, losses and reopenings,
    amount, probability and expected close (``CloseDate``) changes, each at the row's time.
    A close happens on the row's ``CloseDate`` (midnight), but never before the deal's
    previous event nor after the history row itself.  Finally the deal takes the values of
    its Opportunity row, if they still differ, at the time of its last history row.  Names,
    owners and the other fields come from the Opportunity row.

    The history file is Salesforce's OpportunityHistory (``OpportunityId``, ``CreatedDate``,
    ``StageName``, ``Amount``, ``Probability``, ``CloseDate``) or a Fivetran history-mode
    Opportunity table (``id`` and ``_fivetran_start`` per version).  A history row that
    cannot be used is rejected (its ``file`` says which file) and the deal imports without
    it; an Opportunity row that cannot be used is rejected with its history.
    """
    mapping = _check_mapping(mapping)
    chosen = _check_pipeline(pipeline, mapping)
    code = None if currency is None else currency_code(currency, "currency")
    codec = _encoding(encoding)
    meter = _Progress(_check_progress(progress), "Importing Salesforce opportunities")
    stamp = _import_clock(clock)
    rejected: list[Rejected] = []
    parsed: list[tuple[int, dict[str, str], _Row]] = []
    with _lines(opportunities_csv, codec, "<opportunities>") as (opp_name, lines):
        records = _records(lines, opp_name)
        header = _header(records, mapping, opp_name)
        reader = _RowReader(
            mapping, header, pipeline=chosen, currency=code, opened_at=None, clock=stamp
        )
        seen: dict[str, int] = {}
        for line, cells, problem in records:
            if cells is None:
                rejected.append(Rejected(line, {}, problem, opp_name))
                continue
            if not any(cell.strip() for cell in cells):
                continue
            meter.tick()
            try:
                row = _parse_once(reader, cells, line, seen)
            except _BadRow as exc:
                rejected.append(Rejected(line, header.row(cells), str(exc), opp_name))
                continue
            parsed.append((line, header.row(cells), row))
    snapshots, history_name = _read_history(history_csv, mapping, reader, codec, rejected)
    by_id: dict[str, list[_Snapshot]] = {}
    for snapshot in snapshots:
        by_id.setdefault(snapshot.opportunity_id, []).append(snapshot)
    opportunities: list[Opportunity] = []
    for line, raw, row in parsed:
        history = sorted(by_id.pop(row.id, []), key=lambda s: (s.at, s.line))
        try:
            opp, bad = _replay(reader, row, history, history_name)
        except (_BadRow, OppcoreError) as exc:
            rejected.append(Rejected(line, raw, str(exc), opp_name))
            rejected.extend(
                Rejected(
                    s.line,
                    s.row,
                    f"Its opportunity {row.id!r} was not imported (line {line} of {opp_name!r}).",
                    history_name,
                )
                for s in history
            )
            continue
        rejected.extend(bad)
        opportunities.append(opp)
    imported = {row.id for _line, _raw, row in parsed}
    for opp_id, history in by_id.items():
        why = (
            "was not imported"
            if opp_id in seen and opp_id not in imported
            else f"is not in {opp_name!r}"
        )
        rejected.extend(
            Rejected(s.line, s.row, f"Its opportunity {opp_id!r} {why}.", history_name)
            for s in history
        )
    rejected.sort(key=lambda r: (r.file != opp_name, r.line))
    meter.done(len(opportunities), len(rejected))
    return ImportResult(tuple(opportunities), tuple(rejected))


def _parse_once(reader: _RowReader, raw: list[str], line: int, seen: dict[str, int]) -> _Row:
    """The row's values; a repeated id rejects the second and later rows."""
    cells, found = reader.values(raw)
    raw_id = found.get("id") if "id" in reader.columns else None
    if raw_id is not None:
        first = seen.get(raw_id)
        if first is not None:
            raise _BadRow(
                f"Opportunity id {raw_id!r} repeats the row on line {first}; only the first "
                "row with an id is read."
            )
        seen[raw_id] = line
    return reader.parse(cells, found, _new_id)


class _HistoryRows:
    """Where a history file keeps each value, and how one of its rows becomes a snapshot."""

    def __init__(self, header: _Header, reader: _RowReader) -> None:
        fivetran = header.find("_fivetran_start", required=None) is not None
        self.shape = _HISTORY_SHAPES["fivetran" if fivetran else "salesforce"]
        self.header = header
        self.reader = reader
        self.id = _found(header, self.shape["id"])
        self.at = _found(header, self.shape["at"])
        self.stage = _found(header, "StageName")
        self.amount = header.find("Amount", required=None)
        self.probability = header.find("Probability", required=None)
        self.close = header.find("CloseDate", required=None)

    def snapshot(self, line: int, cells: list[str], raw: dict[str, str]) -> _Snapshot:
        width = len(self.header.cells)
        if len(cells) != width:
            raise _BadRow(f"The row has {len(cells)} cells; the header has {width}.")
        problems = _Problems()
        attempt = problems.attempt

        def optional(index: int | None, read: Callable[..., Any], what: str) -> Any:
            if index is None:
                return _KEEP
            text = cells[index]
            return None if _blank(text) else attempt(read, text, what)

        parse = self.reader.cells
        opp_id = cells[self.id]
        if _blank(opp_id):
            problems.append(f"The history row has no opportunity id ({self.shape['id']}).")
        at = attempt(parse.moment, cells[self.at], self.shape["at"])
        stage = attempt(self.reader.stage, cells[self.stage], "StageName")
        amount = optional(self.amount, parse.number, "Amount")
        probability = optional(self.probability, parse.percentage, "Probability")
        close = optional(self.close, parse.day, "CloseDate")
        if problems:
            raise _BadRow(" ".join(problems))
        return _Snapshot(line, raw, opp_id, at, stage, amount, probability, close)


def _found(header: _Header, column: str) -> int:
    index = header.find(column, required="for the history")
    if index is None:  # find raises for a required column; this keeps the type checker sure
        raise ValidationError(f"CSV file {header.name!r} has no column {column!r}.")
    return index


def _read_history(
    target: Target,
    mapping: CsvMapping,
    reader: _RowReader,
    codec: str,
    rejected: list[Rejected],
) -> tuple[list[_Snapshot], str]:
    loose = attrs.evolve(mapping, match="loose")
    snapshots: list[_Snapshot] = []
    with _lines(target, codec, "<history>") as (name, lines):
        records = _records(lines, name)
        columns = _HistoryRows(_header(records, loose, name), reader)
        for line, cells, problem in records:
            if cells is None:
                rejected.append(Rejected(line, {}, problem, name))
                continue
            if not any(cell.strip() for cell in cells):
                continue
            raw = columns.header.row(cells)
            try:
                snapshots.append(columns.snapshot(line, cells, raw))
            except _BadRow as exc:
                rejected.append(Rejected(line, raw, str(exc), name))
    return snapshots, name


def _replay(
    reader: _RowReader, row: _Row, history: list[_Snapshot], history_name: str
) -> tuple[Opportunity, list[Rejected]]:
    """The deal ``row`` describes, grown through its ``history``; bad history rows apart."""
    if not history:
        return reader.build(row), []
    zone = reader.mapping.time_zone
    first, rest = history[0], history[1:]
    start = attrs.evolve(row, stage=first.stage, is_won=None, is_closed=None)
    if not isinstance(first.amount, _Keep):
        start.amount = first.amount
        start.amount_text = "" if first.amount is None else str(first.amount)
        start.amount_is_manual = None
    if not isinstance(first.probability, _Keep):
        start.probability = first.probability
        start.probability_is_manual = None
    if not isinstance(first.close_date, _Keep):
        start.expected_close = first.close_date
    if not first.stage.is_open:
        day = first.close_date if isinstance(first.close_date, date) else None
        start.closed_at = _close_time(day, zone, row.created_at, first.at)
    opp = reader.build(start)
    bad: list[Rejected] = []
    for snapshot in rest:
        try:
            opp = _apply(opp, snapshot, reader)
        except (_BadRow, OppcoreError) as exc:
            # ``opp`` is still the deal before this row: a row's commands apply all or none.
            bad.append(Rejected(snapshot.line, snapshot.row, str(exc), history_name))
    columns = reader.columns
    final = _Snapshot(
        line=0,
        row={},
        opportunity_id=row.id,
        at=opp.events[-1].at,
        stage=row.stage,
        amount=row.amount if "amount" in columns else _KEEP,
        probability=row.probability if "probability" in columns else _KEEP,
        close_date=row.expected_close if "expected_close" in columns else _KEEP,
    )
    try:
        opp = _apply(opp, final, reader, close_at=row.closed_at)
    except (_BadRow, OppcoreError) as exc:
        raise _BadRow(f"Its history does not lead to the state its row gives: {exc}") from None
    return opp, bad


def _close_time(day: date | None, zone: tzinfo, earliest: datetime, latest: datetime) -> datetime:
    """A close on ``day`` (its midnight in ``zone``), kept between ``earliest`` and ``latest``."""
    if day is None:
        when = latest
    else:
        when = datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(timezone.utc)
    return max(earliest, min(when, latest))


def _apply(
    opp: Opportunity,
    snapshot: _Snapshot,
    reader: _RowReader,
    *,
    close_at: datetime | None = None,
) -> Opportunity:
    """``opp`` changed to what ``snapshot`` says, each change a command at the snapshot's time."""
    clock = reader.clock
    previous = opp.events[-1].at
    target = snapshot.stage
    closing = not target.is_open and (opp.is_open or opp.stage.outcome is not target.outcome)
    if closing and close_at is not None:
        when = max(previous, close_at)
    elif closing:
        day = snapshot.close_date if isinstance(snapshot.close_date, date) else None
        when = _close_time(day, reader.mapping.time_zone, previous, max(snapshot.at, previous))
    else:
        when = max(snapshot.at, previous)
    changes: dict[str, Any] = {}
    amount = snapshot.amount
    if not isinstance(amount, _Keep):
        current = opp.amount.amount if opp.amount is not None else None
        if amount is None and current is not None:
            changes["amount"] = None
        elif amount is not None and amount != current:
            if opp.currency is None:
                raise _BadRow(reader.no_currency(str(amount)))
            changes["amount"] = Money(amount, opp.currency)
    close = snapshot.close_date
    if not isinstance(close, _Keep) and close != opp.expected_close:
        changes["expected_close"] = close
    if changes:
        opp = opp.update(at=when, clock=clock, **changes)
    chance = snapshot.probability if isinstance(snapshot.probability, Decimal) else None
    if not target.is_open and chance is not None and chance != target.probability:
        raise _BadRow(
            f"A deal in {target.outcome.value} stage {target.label or target.key!r} has "
            f"probability {target.probability}, not {chance}."
        )
    hand = None if chance is None or chance == target.probability else chance
    if target.key == opp.stage_key:
        if target.is_open and chance is not None and chance != opp.probability:
            opp = opp.update(probability=chance, at=when, clock=clock)
    elif target.is_open:
        if opp.is_closed:
            opp = opp.reopen(stage=target.key, at=when, clock=clock)
            if hand is not None:
                opp = opp.update(probability=hand, at=when, clock=clock)
        else:
            opp = opp.move_to(target.key, probability=hand, at=when, clock=clock)
    elif target.is_won:
        if opp.is_lost:
            opp = opp.reopen(at=when, clock=clock)
        opp = opp.win(stage=target.key, at=when, clock=clock)
    else:
        if opp.is_won:
            opp = opp.reopen(at=when, clock=clock)
        opp = opp.lose(stage=target.key, at=when, clock=clock)
    return opp


# -- writing --------------------------------------------------------------------------------


def _number(value: Decimal) -> str:
    return format(value, "f")


def _moment_text(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def _flag_text(value: bool) -> str:
    return "true" if value else "false"


def _opportunity_row(opp: Opportunity) -> list[str]:
    amount = opp.amount
    items = ""
    if opp.line_items:
        items = json.dumps(
            [serialization.unstructure(item) for item in opp.line_items],
            ensure_ascii=False,
            separators=(",", ":"),
        )
    return [
        opp.id,
        opp.name,
        opp.pipeline.id,
        opp.stage_key,
        "" if amount is None else _number(amount.amount),
        "" if amount is None else _flag_text(opp.amount_is_manual),
        opp.currency or "",
        _number(opp.probability),
        _flag_text(opp.manual_probability),
        "" if opp.expected_close is None else opp.expected_close.isoformat(),
        opp.type or "",
        opp.campaign_id or "",
        opp.lead_id or "",
        opp.lead_source or "",
        opp.owner or "",
        opp.account or "",
        opp.description,
        _moment_text(opp.created_at),
        _moment_text(opp.closed_at),
        "" if opp.is_open else opp.last_open_stage,
        opp.lost_reason or "",
        items,
    ]


def _history_rows(opp: Opportunity) -> Iterator[list[str]]:
    for entry in opp.history():
        yield [
            opp.id,
            str(entry.version),
            entry.event,
            _moment_text(entry.at),
            _moment_text(entry.recorded_at),
            entry.by or "",
            entry.stage,
            "" if entry.amount is None else _number(entry.amount.amount),
            "" if entry.amount is None else entry.amount.currency,
            _number(entry.probability),
            "" if entry.expected_revenue is None else _number(entry.expected_revenue.amount),
            "" if entry.expected_close is None else entry.expected_close.isoformat(),
            entry.forecast_category.value,
            " ".join(entry.changes),
        ]


def write_csv(
    opportunities: Iterable[Opportunity],
    file: str | os.PathLike[str] | IO[str],
    *,
    history: bool = False,
    bom: bool = False,
) -> int:
    """Write opportunities as CSV (UTF-8, CRLF line ends); returns the number of data rows.

    By default one row per opportunity in the ``OPPCORE_CSV`` shape (``OPPCORE_COLUMNS``):
    stage keys, exact amounts with ``amount_is_manual``, the currency, the probability with
    ``probability_is_manual``, ISO 8601 dates and times with their offsets, the open stage a
    closed deal closed from, and the line items as a JSON list.  ``read_csv(file,
    mapping=OPPCORE_CSV)`` reads it back to deals with the same fields.

    With ``history=True``, one row per event (``HISTORY_COLUMNS``): the deal's state right
    after it, as ``Opportunity.history()`` gives it, and the names of the fields it changed.
    ``bom=True`` starts a file written to a path with a byte-order mark, for spreadsheet
    programs that need one to see UTF-8.

    A text cell that a spreadsheet would run as a formula (one starting with ``=``, ``+``,
    ``-``, ``@``, a tab, a carriage return or a line feed), or that starts with a single
    quote, is written with a single quote in front; ``OPPCORE_CSV`` removes it again.
    Numbers (amounts, probabilities) are written as they are: ``-2`` stays a number.
    """
    if isinstance(opportunities, (str, bytes, Mapping, Opportunity)) or not isinstance(
        opportunities, Iterable
    ):
        raise ValidationError(
            f"write_csv takes an iterable of opportunities, not {short(opportunities)}."
        )
    if not isinstance(history, bool):
        raise ValidationError(f"history must be True or False, not {short(history)}.")

    def rows() -> Iterator[list[str]]:
        for opp in opportunities:
            if not isinstance(opp, Opportunity):
                raise ValidationError(f"write_csv writes opportunities, not {short(opp)}.")
            if history:
                yield from _history_rows(opp)
            else:
                yield _opportunity_row(opp)

    header = list(HISTORY_COLUMNS if history else OPPCORE_COLUMNS)
    numbers = _NUMBER_HISTORY_COLUMNS if history else _NUMBER_FIELDS
    text = [column not in numbers for column in header]
    if isinstance(file, (str, os.PathLike)):
        name = os.fspath(file)
        try:
            with open(file, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as handle:
                return _write(handle, header, rows(), text)
        except OSError as exc:
            raise StorageError(f"Cannot write CSV file {name!r}: {exc.strerror}.") from None
    if isinstance(file, (io.RawIOBase, io.BufferedIOBase)) or not hasattr(file, "write"):
        raise ValidationError(f"write_csv takes a path or an open text file, not {short(file)}.")
    return _write(file, header, rows(), text)


def _write(
    handle: IO[str], header: Sequence[str], rows: Iterable[list[str]], text: Sequence[bool]
) -> int:
    """Write the rows; each cell of a ``text`` column as a spreadsheet shows it, never runs it."""
    writer = csv.writer(handle)
    writer.writerow(header)
    count = 0
    for row in rows:
        writer.writerow(
            [spreadsheet_text(cell) if safe else cell for cell, safe in zip(row, text, strict=True)]
        )
        count += 1
    return count


__all__ = [
    "FIELDS",
    "HISTORY_COLUMNS",
    "MAVEN_CRM",
    "MAX_ROW_CHARS",
    "OPPCORE_COLUMNS",
    "OPPCORE_CSV",
    "RATES_COLUMNS",
    "SALESFORCE",
    "CsvMapping",
    "ImportResult",
    "Rejected",
    "exported_pipelines",
    "load_mapping",
    "read_csv",
    "read_rates",
    "read_salesforce_history",
    "write_csv",
]

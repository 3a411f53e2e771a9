"""``Table``: what most analytics return, a tuple of frozen rows with ways to show and export it."""

from __future__ import annotations

import csv
import html
import json
import os
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import IO, Any, Final, Generic, TypeVar

import attrs

from oppcore._repr import short
from oppcore.analytics.periods import Period
from oppcore.domain.money import Money
from oppcore.exceptions import StorageError, ValidationError

R = TypeVar("R")

#: What a spreadsheet takes for the start of a formula when a CSV cell begins with it: the
#: characters OWASP's "CSV Injection" page lists (``=``, ``+``, ``-``, ``@``, tab, carriage
#: return, line feed).
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r", "\n")
#: The quote put before such a cell, which a spreadsheet shows as text and never runs.
FORMULA_QUOTE: Final = "'"
_QUOTED_STARTS: Final = (*FORMULA_STARTS, FORMULA_QUOTE)


def spreadsheet_text(text: str) -> str:
    """``text`` as a CSV cell a spreadsheet shows and never runs as a formula.

    A text that starts with a formula character (``FORMULA_STARTS``) gets a leading single
    quote, as OWASP advises; so does a text that already starts with a quote, so that
    ``plain_text`` knows exactly which quote was added.  Every other text is unchanged.
    Numbers are not text: an amount of -2 is written as ``-2`` and stays a number.
    """
    return FORMULA_QUOTE + text if text.startswith(_QUOTED_STARTS) else text


def plain_text(cell: str) -> str:
    """The text ``spreadsheet_text`` made ``cell`` from: its added quote removed, and only that.

    A quote followed by anything but a formula character or another quote was not added by
    ``spreadsheet_text`` and stays.
    """
    if cell.startswith(FORMULA_QUOTE) and cell[1:].startswith(_QUOTED_STARTS):
        return cell[1:]
    return cell


@attrs.frozen(repr=False)
class Table(Generic[R]):
    """Rows of one kind (frozen attrs values), in a meaningful order.

    Iterate it, take ``len``, index it; ``to_dicts()``, ``to_csv(file)``, ``to_pandas()``;
    in a notebook it shows as HTML, and ``str()`` aligns it for a terminal with money
    rounded to each currency's minor unit.
    """

    rows: tuple[R, ...]
    columns: tuple[str, ...]
    title: str = ""

    @classmethod
    def of(cls, row_type: type[R], rows: Sequence[R], title: str = "") -> Table[R]:
        columns = tuple(field.name for field in attrs.fields(row_type))  # type: ignore[arg-type]
        return cls(tuple(rows), columns, title)

    def __repr__(self) -> str:
        name = f" {self.title!r}" if self.title else ""
        return f"<Table{name}: {len(self.rows)} rows of {', '.join(self.columns)}>"

    def __iter__(self) -> Iterator[R]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> R:
        return self.rows[index]

    def to_dicts(self) -> list[dict[str, Any]]:
        """Each row as a dict of its values, exactly as they are (Money stays Money)."""
        return [{name: getattr(row, name) for name in self.columns} for row in self.rows]

    def to_csv(self, file: str | os.PathLike[str] | IO[str]) -> None:
        """Write the table as CSV: exact amounts, with a ``<column>_currency`` after each money
        column; dates and times in ISO 8601; periods by label; None as an empty cell.

        Text that a spreadsheet would run as a formula (a cell starting with ``=``, ``+``,
        ``-``, ``@``, a tab, a carriage return or a line feed) gets a leading single quote;
        numbers, negative ones included, are written as they are."""
        header, lines = self._csv_rows()
        if isinstance(file, (str, os.PathLike)):
            try:
                with open(file, "w", newline="", encoding="utf-8") as handle:
                    _write_csv(handle, header, lines)
            except OSError as exc:
                raise StorageError(f"Cannot write {os.fspath(file)!r}: {exc.strerror}.") from None
        elif hasattr(file, "write"):
            _write_csv(file, header, lines)
        else:
            raise ValidationError(f"to_csv takes a path or a text file, not {short(file)}.")

    def _csv_rows(self) -> tuple[list[str], list[list[str]]]:
        money = [
            name
            for name in self.columns
            if any(isinstance(getattr(row, name), Money) for row in self.rows)
        ]
        header: list[str] = []
        for name in self.columns:
            header.append(name)
            if name in money:
                header.append(f"{name}_currency")
        lines = []
        for row in self.rows:
            line = []
            for name in self.columns:
                value = getattr(row, name)
                if name in money:
                    line += [str(value.amount), value.currency] if value is not None else ["", ""]
                else:
                    line.append(_csv_cell(value))
            lines.append(line)
        return header, lines

    def to_pandas(self) -> Any:
        """A pandas DataFrame of the rows (money as Decimal amounts plus a currency column)."""
        try:
            import pandas
        except ImportError:
            raise ImportError(
                "Table.to_pandas() needs pandas: pip install 'oppcore[pandas]'."
            ) from None
        header, _ = self._csv_rows()
        records = []
        for row in self.rows:
            record: dict[str, Any] = {}
            for name in self.columns:
                value = getattr(row, name)
                if f"{name}_currency" in header:
                    record[name] = None if value is None else value.amount
                    record[f"{name}_currency"] = None if value is None else value.currency
                elif isinstance(value, Period):
                    record[name] = value.label
                else:
                    record[name] = value
            records.append(record)
        return pandas.DataFrame.from_records(records, columns=header)

    def _cells(self) -> list[list[str]]:
        return [
            [
                "unscheduled"
                if name == "period" and getattr(row, name) is None
                else _display(getattr(row, name))
                for name in self.columns
            ]
            for row in self.rows
        ]

    def __str__(self) -> str:
        cells = self._cells()
        widths = [
            max([_width(name)] + [_width(line[i]) for line in cells])
            for i, name in enumerate(self.columns)
        ]
        numeric = [
            all(_is_number(getattr(row, name)) for row in self.rows) and bool(self.rows)
            for name in self.columns
        ]

        def fit(text: str, i: int) -> str:
            pad = " " * (widths[i] - _width(text))
            return pad + text if numeric[i] else text + pad

        out = [self.title] if self.title else []
        out.append("  ".join(fit(name, i) for i, name in enumerate(self.columns)).rstrip())
        out.append("  ".join("-" * width for width in widths))
        out += ["  ".join(fit(c, i) for i, c in enumerate(line)).rstrip() for line in cells]
        if not self.rows:
            out.append("(no rows)")
        return "\n".join(out)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(name)}</th>" for name in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in line) + "</tr>"
            for line in self._cells()
        )
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _width(text: str) -> int:
    """Columns ``text`` takes on a terminal: Thai vowel and tone marks take none, East Asian
    wide characters two."""
    return sum(
        0
        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf")
        else 2
        if unicodedata.east_asian_width(char) in ("W", "F")
        else 1
        for char in text
    )


def _write_csv(handle: IO[str], header: list[str], lines: list[list[str]]) -> None:
    writer = csv.writer(handle)
    writer.writerow(header)
    writer.writerows(lines)


def _is_number(value: object) -> bool:
    return value is None or (
        isinstance(value, (int, Decimal, Money, timedelta)) and not isinstance(value, bool)
    )


def _csv_cell(value: object) -> str:
    """The cell of one value: numbers as they are, anything else as spreadsheet-safe text."""
    text = _csv_text(value)
    numeric = isinstance(value, (int, Decimal, float, timedelta)) and not isinstance(value, bool)
    return text if numeric else spreadsheet_text(text)


def _csv_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Period):
        return value.label
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(Decimal(value.total_seconds()) / Decimal(86400))
    if isinstance(value, Mapping):
        return json.dumps({str(k): _csv_text(v) for k, v in value.items()}, ensure_ascii=False)
    return str(value)


def _display(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, Money):
        return str(value)
    if isinstance(value, Period):
        return value.label
    if isinstance(value, Decimal):
        return f"{value:.0f}" if value == value.to_integral_value() else f"{value:.4f}"
    if isinstance(value, timedelta):
        return f"{value / timedelta(days=1):.1f} d"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_display(v)}" for k, v in value.items())
    return str(value)


__all__ = ["FORMULA_QUOTE", "FORMULA_STARTS", "Table", "plain_text", "spreadsheet_text"]

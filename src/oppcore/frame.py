"""The deal table as a dataframe: ``deal_frame`` (optional extra ``frame``).

A deal frame holds ``DealVersion`` rows, one column per field (``oppcore.domain.versions.COLUMNS``),
with exact money: ``amount``, ``expected_revenue`` and ``probability`` are ``decimal(38, 18)``,
times are microsecond UTC timestamps and ``expected_close`` a date.  Polars builds it; the
other backends are converted from polars without going through Python objects.

Install with ``pip install 'oppcore[frame]'`` (narwhals and polars); pandas and pyarrow frames
also need pyarrow.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from oppcore._repr import short
from oppcore.domain.money import EXACT
from oppcore.domain.opportunity import Opportunity
from oppcore.domain.versions import COLUMNS, DealVersion, versions
from oppcore.exceptions import ValidationError

if TYPE_CHECKING:
    from oppcore.storage.repository import Repository

__all__ = ["BACKENDS", "MONEY_PLACES", "deal_frame", "deal_rows"]

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
        source = source.opportunities()
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
    if backend not in BACKENDS:
        raise ValidationError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}, not {short(backend)}."
        )
    pl = _polars()
    rows = deal_rows(source)
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
    frame = pl.DataFrame(columns, schema=_schema(pl))
    if backend == "polars":
        return frame
    if backend == "pyarrow":
        return frame.to_arrow()
    return frame.to_pandas(use_pyarrow_extension_array=True)

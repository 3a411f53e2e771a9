"""The analytics on a deal frame of any engine narwhals supports.

The engine does the per-row work: it picks the rows that stand at the time asked for, places
each in a day, and groups, counts and sums exact decimals.  What comes back to Python is one
row per group (a few thousand at most for a million deals), and what a result reports beyond
sums (conversions at a rate, ratios, means) is finished here in ``Decimal``, the same way the
object analytics finish it, so both routes give exactly the same values.  Nothing divides on
the engine: DuckDB's decimal division gives a float.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any

from oppcore._repr import short
from oppcore.exceptions import ValidationError

_UTC = timezone.utc
_FRAME_MODULES = (
    "polars",
    "pandas",
    "pyarrow",
    "duckdb",
    "pyspark",
    "dask",
    "modin",
    "cudf",
    "ibis",
    "sqlframe",
)
_NULLS = frozenset({"NAType", "NaTType", "NoneType"})
_DAY = timedelta(days=1)
_MONTH = timedelta(days=30)
_NEEDED = ("opportunity_id", "version", "valid_from", "valid_to", "recorded_from", "recorded_to")


def _narwhals() -> Any:
    try:
        import narwhals
    except ImportError:
        raise ImportError(
            "Analytics on a dataframe need narwhals: pip install 'oppcore[frame]'."
        ) from None
    return narwhals


def looks_like_frame(value: object) -> bool:
    """Whether ``value`` is a dataframe (of any engine) rather than opportunities."""
    module = type(value).__module__.split(".", 1)[0]
    return module in _FRAME_MODULES or module == "narwhals"


def lazy(frame: object) -> Any:
    """The frame as a narwhals LazyFrame, checked to hold the deal table's columns."""
    nw = _narwhals()
    try:
        wrapped = nw.from_native(frame)
    except TypeError:
        raise ValidationError(
            f"Analytics take opportunities or a deal frame, not {short(frame)}."
        ) from None
    if not isinstance(wrapped, (nw.DataFrame, nw.LazyFrame)):
        raise ValidationError(f"Analytics take opportunities or a deal frame, not {short(frame)}.")
    result = wrapped.lazy()
    names = set(result.collect_schema().names())
    missing = [name for name in _NEEDED if name not in names]
    if missing:
        raise ValidationError(
            f"The frame is not a deal frame: it has no {', '.join(map(repr, missing))} column "
            "(make one with oppcore.frame.deal_frame)."
        )
    return result


def standing(lf: Any, as_of: datetime | None, known_at: datetime | None = None) -> Any:
    """The rows standing at valid time ``as_of`` (None: now) as known at ``known_at``
    (None: now)."""
    nw = _narwhals()
    col, lit = nw.col, nw.lit
    if known_at is not None and as_of is not None and as_of > known_at:
        # Nobody records the future: what was known at k about t > k is the state at k.
        as_of = known_at
    if known_at is None:
        known = col("recorded_to").is_null()
    else:
        k = lit(known_at.astimezone(_UTC))
        known = (col("recorded_from") <= k) & (
            col("recorded_to").is_null() | (col("recorded_to") > k)
        )
    if as_of is None:
        if known_at is None:
            return lf.filter(known & col("valid_to").is_null())
        as_of = known_at
    t = lit(as_of.astimezone(_UTC))
    return lf.filter(
        known & (col("valid_from") <= t) & (col("valid_to").is_null() | (col("valid_to") > t))
    )


def rows(lf: Any) -> list[dict[str, Any]]:
    """Collect a (small, grouped) lazy frame into Python dicts, nulls as None whatever the
    engine calls them (pandas gives ``pd.NA`` and ``NaT``)."""
    result = []
    for item in lf.collect().iter_rows(named=True):
        result.append({k: None if type(v).__name__ in _NULLS else v for k, v in item.items()})
    return result


def _offsets(zone: tzinfo, low: datetime, high: datetime) -> list[tuple[datetime, timedelta]]:
    """The zone's UTC offset from each change between ``low`` and ``high`` (UTC instants):
    [(from, offset), ...], the first from ``low``."""

    def offset(at: datetime) -> timedelta:
        return at.astimezone(zone).utcoffset() or timedelta(0)

    changes = [(low, offset(low))]
    at = low
    while at < high:
        # Zones change offset at most a few times a year, never twice within a day; before
        # 1900 (local mean time, one change per zone) a month at a time is enough.
        nxt = min(at + (_DAY if at.year >= 1900 else _MONTH), high)
        if offset(nxt) != changes[-1][1]:
            # Find the change to the second: zone changes fall on whole seconds.
            lo, hi = at, nxt
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if offset(mid) == changes[-1][1]:
                    lo = mid
                else:
                    hi = mid
            changes.append((hi, offset(hi)))
        at = nxt
    return changes


def local_time(lf: Any, column: str, zone: tzinfo) -> Any:
    """An expression for the UTC ``column`` as the clocks of ``zone`` show it (a naive-looking
    wall time, kept in the column's own type).

    Engines differ in how they convert zones (DuckDB keeps the zone in the connection), so
    the offsets in force between the column's least and greatest value are worked out here,
    and the engine only adds the right fixed offset to each instant.
    """
    nw = _narwhals()
    col = nw.col(column)
    if zone is _UTC:
        return col
    bounds = rows(lf.select(low=col.min(), high=col.max()))[0]
    low, high = bounds["low"], bounds["high"]
    if low is None:
        return col
    low, high = _aware(low), _aware(high)
    changes = _offsets(zone, low, high)
    shifted = col + nw.lit(changes[-1][1])
    for (_, shift), (end, _) in zip(changes[-2::-1], changes[:0:-1], strict=True):
        shifted = nw.when(col < nw.lit(end)).then(col + nw.lit(shift)).otherwise(shifted)
    return shifted


def local_day(lf: Any, column: str, zone: tzinfo) -> Any:
    """An expression for the local calendar date of the UTC ``column`` in ``zone``."""
    return local_time(lf, column, zone).dt.date()


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)


def as_date(value: object) -> date | None:
    """A date from an engine (some give datetimes or pandas timestamps for a date column)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    to_pydatetime = getattr(value, "to_pydatetime", None)
    if to_pydatetime is not None:
        return to_pydatetime().date()  # type: ignore[no-any-return]
    raise ValidationError(f"The frame holds {short(value)} where a date belongs.")


def groups(
    items: Iterable[dict[str, Any]], keys: Sequence[str]
) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    for item in items:
        yield tuple(item[k] for k in keys), item


# -- money -------------------------------------------------------------------------------


def currencies(lf: Any) -> list[str]:
    """The currencies of the rows that have an amount."""
    nw = _narwhals()
    found = rows(
        lf.filter(~nw.col("amount").is_null(), ~nw.col("currency").is_null())
        .select("currency")
        .unique()
    )
    return sorted(item["currency"] for item in found)


class _Surveyed:
    """What ``Valuation`` reads of a deal to find the table's currency."""

    __slots__ = ("amount", "currency")

    def __init__(self, currency: str) -> None:
        self.currency = currency
        self.amount = True


def valuation(found: Sequence[str], currency: str | None, rates: Any, valued_on: date) -> Any:
    """The object analytics' ``Valuation`` for deals in the currencies ``found``: the same
    checks, the same errors, the same conversions."""
    from oppcore.analytics import _common

    return _common.Valuation([_Surveyed(code) for code in found], currency, rates, valued_on)  # type: ignore[misc]


def with_foreign_amount(lf: Any, target: str | None, converting: bool) -> Any:
    """Add ``foreign``: a row's amount when it must be converted to ``target``, else null.

    Conversions are finished in Python, one per distinct amount, currency and day: a rate
    applied to a sum is not always the sum of the rates applied (a reverse rate divides).
    """
    nw = _narwhals()
    if not converting or target is None:
        return lf.with_columns(foreign=nw.lit(None, dtype=nw.Decimal()))
    return lf.with_columns(
        foreign=nw.when(nw.col("currency") != nw.lit(target))
        .then(nw.col("amount"))
        .otherwise(nw.lit(None, dtype=nw.Decimal()))
    )


def amount_groups(
    frame: object,
    keys: Sequence[str],
    as_of: datetime | None,
    currency: str | None,
    rates: Any,
    zone: tzinfo,
    valued_on: date,
) -> tuple[Any, Any, list[dict[str, Any]]]:
    """The rows standing at ``as_of``, the table's ``Valuation``, and one group per ``keys``
    (``day``: expected close when open, local close date otherwise; ``foreign``: see
    ``with_foreign_amount``) with its count, the count with an amount, and their sum."""
    nw = _narwhals()
    col = nw.col
    lf = standing(lazy(frame), as_of)
    found = currencies(lf)
    money = valuation(found, currency, rates, valued_on)
    converting = money.currency is not None and any(code != money.currency for code in found)
    day = (
        nw.when(col("outcome") == "open")
        .then(col("expected_close"))
        .otherwise(local_day(lf, "closed_at", zone))
    )
    grouped = rows(
        with_foreign_amount(lf.with_columns(day=day), money.currency, converting)
        .group_by(list(keys), drop_null_keys=False)
        .agg(n=nw.len(), counted=col("amount").count(), amount=col("amount").sum())
    )
    return lf, money, grouped


# -- forecast ----------------------------------------------------------------------------

_HUNDRED = Decimal(100)


def forecast(
    frame: object,
    *,
    grain: Any,
    fiscal: Any,
    as_of: datetime | None,
    currency: str | None,
    rates: Any,
    chances: dict[str, Decimal],
    zone: tzinfo,
    valued_on: date,
) -> list[Any]:
    """``analytics.forecast`` on a deal frame: the same rows, from one grouped query."""
    from oppcore.analytics.forecast import _Bucket, _finished
    from oppcore.analytics.periods import Period
    from oppcore.analytics.periods import period_of as _period_of
    from oppcore.domain.money import EXACT

    keys = ["outcome", "forecast_category", "stage", "probability", "currency", "foreign", "day"]
    _, money, grouped = amount_groups(frame, keys, as_of, currency, rates, zone, valued_on)
    buckets: dict[Period | None, _Bucket] = {}
    by_day: dict[date | None, _Bucket] = {}

    def bucket(on: date | None) -> _Bucket:
        found_bucket = by_day.get(on)
        if found_bucket is None:
            key = None if on is None else _period_of(on, grain, fiscal)
            found_bucket = by_day[on] = buckets.setdefault(key, _Bucket())
        return found_bucket

    add, multiply = EXACT.add, EXACT.multiply
    for group in grouped:
        on = as_date(group["day"])
        row = bucket(on)
        count, counted = int(group["n"]), int(group["counted"])
        outcome = group["outcome"]
        value = _value(group, counted, money, on or valued_on) if counted else None
        if outcome == "open":
            row.open_count += count
            if value is None:
                continue
            category = group["forecast_category"]
            if category != "omitted":
                row.pipeline = add(row.pipeline, value)
            if category == "best_case":
                row.best_case = add(row.best_case, value)
            elif category == "commit":
                row.commit = add(row.commit, value)
            chance = chances.get(group["stage"], group["probability"])
            row.weighted = add(row.weighted, multiply(value, EXACT.divide(chance, _HUNDRED)))
        elif outcome == "won":
            row.won_count += count
            if value is not None:
                row.won = add(row.won, value)
        else:
            row.lost_count += count
    for b in buckets.values():
        b.pipeline, b.best_case, b.commit = (
            _plain(b.pipeline),
            _plain(b.best_case),
            _plain(b.commit),
        )
        b.weighted, b.won = _plain(b.weighted), _plain(b.won)
    return _finished(buckets, money.currency)


def _value(group: dict[str, Any], counted: int, money: Any, on: date) -> Decimal:
    """The group's amounts in the table's currency: the sum, or ``counted`` conversions of
    the one foreign amount the group holds."""
    from oppcore.domain.money import EXACT, Money

    foreign = group["foreign"]
    if foreign is None:
        return Decimal(group["amount"])
    converted = money.convert(Money._exact(Decimal(foreign), group["currency"]), on)
    return EXACT.multiply(converted.amount, Decimal(counted))


def _plain(amount: Decimal) -> Decimal:
    """A sum from the engine without the frame's 18 trailing places it does not need."""
    if not amount:
        return Decimal(0)
    sign, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)
    while exponent < 0 and digits and digits[-1] == 0:
        digits = digits[:-1]
        exponent += 1
    return Decimal((sign, digits or (0,), exponent))


# -- effectiveness and the sales cycle ---------------------------------------------------

_KEY_COLUMNS = {
    "campaign": "campaign_id",
    "lead_source": "lead_source",
    "type": "type",
    "owner": "owner",
    "account": "account",
}


def cycle_microseconds(lf: Any, zone: tzinfo = _UTC) -> Any:
    """Microseconds from opening to close as the clocks of ``zone`` show them (as
    ``_common.local_span`` counts them), exact on every engine."""
    span = local_time(lf, "closed_at", zone) - local_time(lf, "created_at", zone)
    return span.dt.total_microseconds()


def current_rows(frame: object) -> list[Any]:
    """The current ``DealVersion`` of each deal in the frame, in opportunity id order
    (for a callable ``by``: it receives each deal's current row)."""
    from oppcore.domain.versions import COLUMNS, DealVersion

    found = rows(standing(lazy(frame), None).select(list(COLUMNS)).sort("opportunity_id"))
    result = []
    for item in found:
        fields = dict(item)
        for name in ("amount", "probability", "expected_revenue"):
            if fields[name] is not None:
                fields[name] = _plain(Decimal(fields[name]))
        fields["expected_close"] = as_date(fields["expected_close"])
        for name in (
            "valid_from",
            "valid_to",
            "recorded_from",
            "recorded_to",
            "created_at",
            "closed_at",
        ):
            if fields[name] is not None:
                fields[name] = _aware(_python_datetime(fields[name]))
        result.append(DealVersion(**fields))
    return result


def _python_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    to_pydatetime = getattr(value, "to_pydatetime", None)
    if to_pydatetime is None:
        raise ValidationError(f"The frame holds {short(value)} where a time belongs.")
    return to_pydatetime()  # type: ignore[no-any-return]


def effectiveness(
    frame: object,
    *,
    by: str,
    known: dict[str, Any],
    as_of: datetime | None,
    currency: str | None,
    rates: Any,
    zone: tzinfo,
    valued_on: date,
) -> list[Any]:
    """``analytics.effectiveness`` on a deal frame, ``by`` one of the named keys."""
    from oppcore.analytics.effectiveness import _finished, _Tally
    from oppcore.domain.money import EXACT

    nw = _narwhals()
    col = nw.col
    column = _KEY_COLUMNS[by]
    keys = [column, "outcome", "forecast_category", "probability", "currency", "foreign", "day"]
    lf, money, grouped = amount_groups(frame, keys, as_of, currency, rates, zone, valued_on)
    won_lf = lf.filter(col("outcome") == "won", ~col("closed_at").is_null())
    cycles = rows(
        won_lf.with_columns(cycle=cycle_microseconds(won_lf, zone))
        .group_by([column, "cycle"], drop_null_keys=False)
        .agg(n=nw.len())
    )
    tallies: dict[Any, _Tally] = {}
    if by == "campaign":
        for campaign_id in known:
            tallies[campaign_id] = _Tally()
    add, multiply, divide = EXACT.add, EXACT.multiply, EXACT.divide
    for group in grouped:
        key = group[column]
        tally = tallies.get(key)
        if tally is None:
            tally = tallies[key] = _Tally()
        count, counted = int(group["n"]), int(group["counted"])
        on = as_date(group["day"])
        tally.opportunities += count
        outcome = group["outcome"]
        if outcome == "open":
            tally.open += count
            if counted:
                value = _value(group, counted, money, on or valued_on)
                if group["forecast_category"] != "omitted":
                    tally.pipeline = add(tally.pipeline, value)
                factor = divide(Decimal(group["probability"]), _HUNDRED)
                tally.weighted = add(tally.weighted, multiply(value, factor))
        elif outcome == "won":
            tally.won += count
            if counted:
                value = _value(group, counted, money, on or valued_on)
                tally.won_revenue = add(tally.won_revenue, value)
                tally.won_with_amount += counted
        else:
            tally.lost += count
    lengths: dict[Any, list[tuple[int, int]]] = {}
    for group in cycles:
        lengths.setdefault(group[column], []).append((int(group["cycle"]), int(group["n"])))
    for tally in tallies.values():
        tally.won_revenue, tally.pipeline = _plain(tally.won_revenue), _plain(tally.pipeline)
        tally.weighted = _plain(tally.weighted)
    return _finished(
        tallies,
        by=by,
        known=known,
        money=money,
        cycle_days=lambda key, _: _mean_days(lengths.get(key, [])),
    )


def _mean_days(lengths: list[tuple[int, int]]) -> Decimal | None:
    """The mean of per-deal day counts, each worked out as the object analytics do."""
    from oppcore.analytics import _common
    from oppcore.domain.money import DIVISION, EXACT

    total, count = Decimal(0), 0
    for micro, n in lengths:
        total = EXACT.add(total, EXACT.multiply(_common.days(timedelta(microseconds=micro)), n))
        count += n
    return DIVISION.divide(total, Decimal(count)) if count else None


def sales_cycle_lengths(frame: object, basis: str, zone: tzinfo = _UTC) -> list[Decimal]:
    """Each closed deal's days from opening to close on the clocks of ``zone``, sorted
    (``basis`` 'won' or 'closed')."""
    from oppcore.analytics import _common

    nw = _narwhals()
    col = nw.col
    outcomes = ["won"] if basis == "won" else ["won", "lost"]
    lf = standing(lazy(frame), None).filter(
        col("outcome").is_in(outcomes), ~col("closed_at").is_null()
    )
    grouped = rows(
        lf.with_columns(cycle=cycle_microseconds(lf, zone)).group_by("cycle").agg(n=nw.len())
    )
    lengths: list[Decimal] = []
    for group in sorted(grouped, key=lambda g: int(g["cycle"])):
        lengths.extend(
            [_common.days(timedelta(microseconds=int(group["cycle"])))] * int(group["n"])
        )
    return lengths


def snapshot(frame: object, *, as_of: datetime, known_at: datetime | None) -> Any:
    """The rows standing at ``as_of`` as known at ``known_at``, as a frame of the same engine."""
    return (
        standing(lazy(frame), as_of, known_at).to_native()
        if not _is_eager(frame)
        else (standing(lazy(frame), as_of, known_at).collect(backend=_backend(frame)).to_native())
    )


def _is_eager(frame: object) -> bool:
    nw = _narwhals()
    return isinstance(nw.from_native(frame), nw.DataFrame)


def _backend(frame: object) -> Any:
    nw = _narwhals()
    return nw.get_native_namespace(nw.from_native(frame))

"""The analytics on a deal frame of any engine narwhals supports.

The engine does the per-row work: it picks the rows that stand at the time asked for, places
each in a day, and groups, counts and sums exact decimals.  What comes back to Python is one
row per group (a few thousand at most for a million deals), and what a result reports beyond
sums (conversions at a rate, ratios, means) is finished here in ``Decimal``, the same way the
object analytics finish it, so both routes give exactly the same values.  Nothing divides on
the engine: DuckDB's decimal division gives a float.

The history analytics read every row with ``recorded_to`` null (see the section below).  Those
that need each deal's ordered history (slippage, calibration, time in stage) and the two ends
of a movement get the rows they need filtered and narrowed on the engine, and each deal is
finished in Python by the same function the object route calls; funnel, stage win rates and
stale deals are grouped, joined and counted on the engine.  The expressions are the ones
narwhals offers on every lazy engine (no window functions, no row order, no arithmetic on
times), so DuckDB and Spark answer them as polars does.
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


def lazy(frame: object, columns: Iterable[str] = ()) -> Any:
    """The frame as a narwhals LazyFrame, checked to hold the deal table's columns (the
    time columns and ``columns``)."""
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
    if result.implementation.is_spark_like():
        _check_spark_session(result)
    names = set(result.collect_schema().names())
    missing = [name for name in (*_NEEDED, *columns) if name not in names]
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
    *,
    by_day: bool = True,
) -> tuple[Any, Any, list[dict[str, Any]]]:
    """The rows standing at ``as_of``, the table's ``Valuation``, and one group per ``keys``
    (``day``: expected close when open, local close date otherwise; ``foreign``: see
    ``with_foreign_amount``) with its count, the count with an amount, and their sum.

    ``by_day=False``: the caller needs days only to convert amounts, so when nothing is
    converted ``day`` is null and the groups do not split by it."""
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
        if by_day or converting
        else nw.lit(None, dtype=nw.Date())
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
    if lf.implementation.is_spark_like():
        # narwhals has no duration arithmetic on Spark: count from calendar fields instead.
        closed, created = local_time(lf, "closed_at", zone), local_time(lf, "created_at", zone)
        return _epoch_microseconds(closed) - _epoch_microseconds(created)
    span = local_time(lf, "closed_at", zone) - local_time(lf, "created_at", zone)
    if lf.implementation.is_pandas_like():
        # pandas' total_microseconds goes through float seconds and floors, one short now
        # and then; its Arrow durations cast to the whole count exactly.
        return span.cast(_narwhals().Int64())
    return span.dt.total_microseconds()


def _epoch_microseconds(expr: Any) -> Any:
    """Microseconds since 1970-01-01 of a datetime expression, from its calendar fields
    (every engine has them); exact for every year of the proleptic Gregorian calendar."""
    i64 = _narwhals().Int64()
    year = expr.dt.year().cast(i64)
    before = year - 1
    # Days to 1 January of ``year``: 365 a year plus the leap days before it, less the 477
    # leap days before 1970.
    days = (
        (year - 1970) * 365
        + before // 4
        - before // 100
        + before // 400
        - 477
        + expr.dt.ordinal_day().cast(i64)
        - 1
    )
    seconds = ((days * 24 + expr.dt.hour().cast(i64)) * 60 + expr.dt.minute().cast(i64)) * 60
    return (seconds + expr.dt.second().cast(i64)) * 1_000_000 + expr.dt.microsecond().cast(i64)


_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "GMT", "Etc/GMT", "Z", "+00:00"})


def _check_spark_session(result: Any) -> None:
    """Spark reads dates and hours in its session's time zone: refuse any but UTC, which is
    what the deal table's times are in (time_zone= then places them in local days)."""
    session = getattr(result.to_native(), "sparkSession", None)
    zone = None if session is None else session.conf.get("spark.sql.session.timeZone")
    if zone not in _UTC_NAMES:
        raise ValidationError(
            f"Spark reads dates in the session's time zone, here {zone!r}: set "
            "spark.sql.session.timeZone to 'UTC' (and pass time_zone= to report in local days)."
        )


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
    from oppcore.analytics import _common
    from oppcore.analytics.effectiveness import _finished, _Tally
    from oppcore.domain.money import EXACT

    nw = _narwhals()
    col = nw.col
    column = _KEY_COLUMNS[by]
    keys = [column, "outcome", "forecast_category", "probability", "currency", "foreign", "day"]
    lf, money, grouped = amount_groups(
        frame, keys, as_of, currency, rates, zone, valued_on, by_day=False
    )
    won_lf = lf.filter(col("outcome") == "won", ~col("closed_at").is_null())
    # Seconds and the microseconds beyond them, summed apart: a million long cycles in
    # microseconds would overflow a 64-bit sum.  s * 10**6 + rest is the cycle whichever way
    # the engine rounds its integer division.
    cycle = cycle_microseconds(won_lf, zone)
    cycles = rows(
        won_lf.with_columns(
            seconds=cycle // 1_000_000, rest=cycle - (cycle // 1_000_000) * 1_000_000
        )
        .group_by(column, drop_null_keys=False)
        .agg(seconds=col("seconds").sum(), rest=col("rest").sum(), n=nw.len())
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
    spans: dict[Any, tuple[int, int]] = {
        group[column]: (int(group["seconds"]) * 1_000_000 + int(group["rest"]), int(group["n"]))
        for group in cycles
    }
    for tally in tallies.values():
        tally.won_revenue, tally.pipeline = _plain(tally.won_revenue), _plain(tally.pipeline)
        tally.weighted = _plain(tally.weighted)
    return _finished(
        tallies,
        by=by,
        known=known,
        money=money,
        cycle_days=lambda key, _: _common.mean_days(*spans.get(key, (0, 0))),
    )


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


# -- the history analytics ---------------------------------------------------------------
#
# These read every row with ``recorded_to`` null: the deal's history as known now, one row per
# event (an empty valid span included).  Where a result needs each deal's ordered history
# (slippage, the probability a deal stated), the engine picks the rows and the few columns
# needed and the deal is finished in Python by the same function the object route calls on
# ``Opportunity.versions()``; everything else (time in stage, funnel, win rates, stale deals)
# is grouped and counted on the engine.


def _known(lf: Any) -> Any:
    """The rows not revised since: each deal's history as known now."""
    return lf.filter(_narwhals().col("recorded_to").is_null())


def _current(lf: Any) -> Any:
    nw = _narwhals()
    return lf.filter(nw.col("recorded_to").is_null(), nw.col("valid_to").is_null())


def _stands(t: datetime) -> Any:
    """Whether a row of the history stands at valid time ``t``."""
    nw = _narwhals()
    col, moment = nw.col, nw.lit(t.astimezone(_UTC))
    return (col("valid_from") <= moment) & (col("valid_to").is_null() | (col("valid_to") > moment))


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else _plain(Decimal(value))


def _moment(value: Any) -> datetime:
    return _aware(_python_datetime(value))


def _ordered(found: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows by deal, in opportunity id order, each deal's in the order they happened."""
    by_deal: dict[str, list[dict[str, Any]]] = {}
    for item in found:
        by_deal.setdefault(item["opportunity_id"], []).append(item)
    result = {}
    for key in sorted(by_deal):
        deal = by_deal[key]
        deal.sort(key=lambda item: (_moment(item["valid_from"]), int(item["version"])))
        result[key] = deal
    return result


def pipeline_ids(frame: object) -> list[str]:
    """The ids of the pipelines the frame's deals are in."""
    found = rows(_current(lazy(frame, ["pipeline_id"])).select("pipeline_id").unique())
    return sorted(item["pipeline_id"] for item in found)


def open_deals(
    frame: object, as_of: datetime | None
) -> tuple[list[str], list[tuple[str, Decimal, str, Decimal, date | None]]]:
    """For ``forecast_range``: the currencies of the deals standing at ``as_of`` (None: now)
    that have an amount, and each open deal with an amount as (opportunity id, amount,
    currency, probability, expected close), in opportunity id order."""
    nw = _narwhals()
    col = nw.col
    columns = ["opportunity_id", "outcome", "amount", "currency", "probability", "expected_close"]
    lf = standing(lazy(frame, columns), as_of)
    found = currencies(lf)
    picked = rows(
        lf.filter(col("outcome") == "open", ~col("amount").is_null()).select(
            "opportunity_id", "amount", "currency", "probability", "expected_close"
        )
    )
    deals = []
    for item in picked:
        deals.append(
            (
                item["opportunity_id"],
                _plain(Decimal(item["amount"])),  # never null here: filtered
                item["currency"],
                _plain(Decimal(item["probability"])),  # never null in a deal table
                as_date(item["expected_close"]),
            )
        )
    deals.sort(key=lambda deal: deal[0])
    return found, deals


def movement_states(
    frame: object, first: datetime, last: datetime
) -> list[tuple[str, tuple[str, Any, date | None] | None, tuple[str, Any, date | None] | None]]:
    """For ``pipeline_movement``: each deal standing at ``first`` or ``last`` with its state
    (outcome, amount as Money, expected close) at each, None when not yet open; in
    opportunity id order."""
    from oppcore.domain.money import Money

    columns = ["opportunity_id", "outcome", "amount", "currency", "expected_close"]
    lf = _known(lazy(frame, columns))
    at_first, at_last = _stands(first), _stands(last)
    found = rows(lf.filter(at_first | at_last).select(*columns, at_first=at_first, at_last=at_last))
    ends: dict[str, list[tuple[str, Any, date | None] | None]] = {}
    for item in found:
        amount = _decimal(item["amount"])
        state = (
            item["outcome"],
            None if amount is None else Money._exact(amount, item["currency"]),
            as_date(item["expected_close"]),
        )
        pair = ends.setdefault(item["opportunity_id"], [None, None])
        if item["at_first"]:
            pair[0] = state
        if item["at_last"]:
            pair[1] = state
    return [(key, ends[key][0], ends[key][1]) for key in sorted(ends)]


def expected_closes(frame: object) -> dict[str, list[date]]:
    """For ``slippage``: each deal's expected close dates, in the order its history had
    them (rows without one left out), deals in opportunity id order."""
    nw = _narwhals()
    col = nw.col
    lf = _known(lazy(frame, ["opportunity_id", "expected_close"]))
    found = rows(
        lf.filter(~col("expected_close").is_null()).select(
            "opportunity_id", "valid_from", "version", "expected_close"
        )
    )
    result = {}
    for key, deal in _ordered(found).items():
        closes = [as_date(item["expected_close"]) for item in deal]
        result[key] = [close for close in closes if close is not None]
    return result


def current_values(frame: object, columns: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """Each deal's current values of ``columns``, by opportunity id."""
    lf = _current(lazy(frame, ["opportunity_id", *columns]))
    found = rows(lf.select("opportunity_id", *dict.fromkeys(columns)))
    return {item["opportunity_id"]: tuple(item[name] for name in columns) for item in found}


def closed_histories(
    frame: object,
) -> list[tuple[str, bool, list[tuple[str, str, Decimal]]]]:
    """For ``calibration``: each deal closed now, whether it was won, and its history as
    (stage, outcome, probability) rows in order; deals in opportunity id order."""
    nw = _narwhals()
    col = nw.col
    columns = ["opportunity_id", "stage", "outcome", "probability"]
    lf = _known(lazy(frame, columns))
    closed = lf.filter(col("valid_to").is_null(), col("outcome") != "open").select(
        "opportunity_id", now=col("outcome")
    )
    found = rows(
        lf.select(
            "opportunity_id", "valid_from", "version", "stage", "outcome", "probability"
        ).join(closed, on="opportunity_id")
    )
    result = []
    for key, deal in _ordered(found).items():
        states = []
        for item in deal:  # a deal always has a probability: never null
            states.append((item["stage"], item["outcome"], _plain(Decimal(item["probability"]))))
        result.append((key, deal[-1]["now"] == "won", states))
    return result


def stage_visits(
    frame: object, now: datetime
) -> dict[str, list[tuple[str, bool, datetime, datetime | None]]]:
    """For ``time_in_stage``: each deal's rows in open stages from before ``now``, as visits
    (stage, open, from, to), in the order they happened; deals in opportunity id order.

    Each row of the history stands for the time from its ``valid_from`` to the next event
    (its ``valid_to``): a stage's visits are its rows, so adding them up per deal and stage
    is the deal's time there, and a row with an empty span counts the stage with no time.
    Durations are added in Python: summing spans is not portable across engines (DuckDB and
    pyarrow sum no durations, and Spark turns none into microseconds).
    """
    nw = _narwhals()
    col = nw.col
    lf = _known(lazy(frame, ["opportunity_id", "stage", "outcome"]))
    found = rows(
        lf.filter(
            col("outcome") == "open", col("valid_from") <= nw.lit(now.astimezone(_UTC))
        ).select("opportunity_id", "version", "stage", "valid_from", "valid_to")
    )
    return {
        key: [
            (
                item["stage"],
                True,
                _moment(item["valid_from"]),
                None if item["valid_to"] is None else _moment(item["valid_to"]),
            )
            for item in deal
        ]
        for key, deal in _ordered(found).items()
    }


def _rank(ranks: dict[str, dict[str, int]]) -> Any:
    """An expression for how far along its pipeline a row of the history is: the open
    stage's position, the number of open stages in a won stage, -1 otherwise.

    ``ranks`` maps each pipeline id to its open stages' positions.
    """
    nw = _narwhals()
    col, lit = nw.col, nw.lit
    rank = lit(-1)
    for pipeline_id, positions in ranks.items():
        inside = col("pipeline_id") == pipeline_id
        rank = nw.when(inside & (col("outcome") == "won")).then(lit(len(positions))).otherwise(rank)
        for key, position in positions.items():
            rank = nw.when(inside & (col("stage") == key)).then(lit(position)).otherwise(rank)
    return rank


def furthest(frame: object, ranks: dict[str, dict[str, int]]) -> list[tuple[str, int, str, int]]:
    """For ``funnel`` and ``stage_win_rates``: (pipeline id, furthest position, outcome
    now, deals) — how many deals of each pipeline got that far (see ``_rank``; -1 for deals
    of other pipelines) and stand in that outcome now."""
    nw = _narwhals()
    col = nw.col
    lf = _known(lazy(frame, ["opportunity_id", "pipeline_id", "stage", "outcome"]))
    now = (
        nw.when(col("valid_to").is_null()).then(col("outcome")).otherwise(nw.lit(None, nw.String()))
    )
    found = rows(
        lf.with_columns(rank=_rank(ranks), now=now)
        .group_by("opportunity_id", "pipeline_id")
        .agg(col("rank").max(), col("now").max())
        .group_by("pipeline_id", "rank", "now")
        .agg(n=nw.len())
    )
    return [(item["pipeline_id"], int(item["rank"]), item["now"], int(item["n"])) for item in found]


def stage_entries(
    frame: object, now: datetime, cutoffs: dict[tuple[str, str], datetime] | datetime
) -> list[tuple[str, str, str | None, str, datetime]]:
    """For ``stale``: each deal open at ``now`` in a stage with a limit, that entered it
    before the stage's cutoff, as (opportunity id, stage, owner, pipeline id, entered at).

    ``cutoffs`` maps (pipeline id, stage) to an instant, or is one for every stage: the
    caller's coarse bound, so the engine only compares instants (no engine arithmetic on
    times: Spark has none that narwhals offers); the exact test is the caller's.  When a
    deal last entered its stage is the ``valid_from`` of the row after the last row of its
    history (up to ``now``) in another stage.
    """
    nw = _narwhals()
    col, lit = nw.col, nw.lit
    columns = ["opportunity_id", "pipeline_id", "stage", "outcome", "owner"]
    known = _known(lazy(frame, columns))
    limited = known.filter(_stands(now), col("outcome") == "open")
    if isinstance(cutoffs, datetime):
        cutoff: Any = lit(cutoffs.astimezone(_UTC))
    elif not cutoffs:
        return []
    else:
        cutoff, has_limit = lit(now.astimezone(_UTC)), lit(False)
        for (pipeline_id, key), moment in cutoffs.items():
            here = (col("pipeline_id") == pipeline_id) & (col("stage") == key)
            cutoff = nw.when(here).then(lit(moment.astimezone(_UTC))).otherwise(cutoff)
            has_limit = has_limit | here
        limited = limited.filter(has_limit)
    standing_now = limited.with_columns(cutoff=cutoff).select(
        "opportunity_id", "pipeline_id", "owner", "cutoff", held=col("stage"), at=col("version")
    )
    before = (
        known.select("opportunity_id", "stage", "version")
        .join(standing_now.select("opportunity_id", "held", "at"), on="opportunity_id")
        .with_columns(
            other=nw.when((col("stage") != col("held")) & (col("version") <= col("at")))
            .then(col("version"))
            .otherwise(lit(0))
        )
        .group_by("opportunity_id")
        .agg(col("other").max())
        .with_columns(entered=col("other") + 1)
    )
    entered = before.join(
        known.select("opportunity_id", "version", "valid_from"),
        left_on=["opportunity_id", "entered"],
        right_on=["opportunity_id", "version"],
    ).select("opportunity_id", "valid_from")
    found = rows(
        standing_now.join(entered, on="opportunity_id")
        .filter(col("valid_from") < col("cutoff"))
        .select("opportunity_id", "held", "owner", "pipeline_id", "valid_from")
    )
    return [
        (
            item["opportunity_id"],
            item["held"],
            item["owner"],
            item["pipeline_id"],
            _moment(item["valid_from"]),
        )
        for item in found
    ]

"""Charts of the analytics, as matplotlib figures: ``pip install 'oppcore[plot]'``.

Each function takes what an analytics function returned and gives a new
``matplotlib.figure.Figure``; nothing here touches pyplot, so no GUI backend is chosen, no
global state changes and no figure is kept alive after you drop it::

    fig = forecast_chart(forecast(opps))
    fig.savefig("forecast.png")         # or leave ``fig`` as a notebook cell's last line

matplotlib is imported only when a chart is drawn, so ``import oppcore.plot`` works
without it.  Amounts become floats only to be drawn; every sum and difference is worked
out in Decimal first, and the numbers written on a chart are the Money values rounded to
the currency's minor unit.

Thai text (stage keys, owners, a pipeline's name) is drawn with an installed Thai font
when there is one (Noto Sans Thai, Sarabun, Tahoma, Loma, ...), as a fallback behind your
own font settings.  Without one, matplotlib warns "Glyph ... missing from font(s)" when
the figure is drawn: the warning is kept, because the chart really does show boxes then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs

from oppcore._repr import short
from oppcore.analytics.effectiveness import EffectivenessRow
from oppcore.analytics.forecast import ForecastRow
from oppcore.analytics.movement import BUCKETS, Movement, MovementRow
from oppcore.analytics.stages import FunnelRow
from oppcore.analytics.table import Table
from oppcore.domain.money import EXACT, Money
from oppcore.exceptions import CurrencyMismatchError, ValidationError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

R = TypeVar("R")

_NEEDS_MATPLOTLIB: Final = "oppcore.plot needs matplotlib: pip install 'oppcore[plot]'."

# One palette for every chart: money won or coming in is green, money leaving is red.
_WON: Final = "#2a9d8f"
_COMMIT: Final = "#264653"
_BEST_CASE: Final = "#e9c46a"
_PIPELINE: Final = "#c9ced6"
_WEIGHTED: Final = "#111111"
_TOTAL: Final = "#5c677d"
_RISE: Final = "#2a9d8f"
_FALL: Final = "#e76f51"
_REACHED: Final = "#c9ced6"
_ADVANCED: Final = "#5c8fc7"

#: Movement buckets that add to the pipeline; the others take from it.
_RISES: Final = frozenset({"new", "increased", "reopened", "pulled_in"})

#: Fonts known to hold Thai, most wanted first; any other installed font with "Thai" in its
#: name comes after these.
_THAI_FONTS: Final = (
    "Noto Sans Thai",
    "Noto Sans Thai UI",
    "Noto Sans Thai Looped",
    "Sarabun",
    "IBM Plex Sans Thai",
    "Leelawadee UI",
    "Leelawadee",
    "Thonburi",
    "Sukhumvit Set",
    "Tahoma",
    "Loma",
    "Garuda",
    "Waree",
    "Umpush",
    "Kinnari",
    "Norasi",
    "Arial Unicode MS",
)


# -- the charts ---------------------------------------------------------------------------


def forecast_chart(table: Table[ForecastRow]) -> Figure:
    """The forecast by period as stacked bars, with the weighted pipeline as a line.

    ``table`` is what ``forecast()`` returns.  Each bar stacks four layers that never
    overlap, so its height is ``won + pipeline``:

    - *won*: deals won in the period (by close date), ``row.won``;
    - *commit*: open deals in the Commit forecast category, ``row.commit``;
    - *best case*: open deals in the Best Case category, ``row.best_case``;
    - *pipeline*: the rest of the open pipeline, ``row.pipeline - row.best_case -
      row.commit`` (``row.pipeline`` already holds the commit and best-case amounts).

    The line is ``row.weighted``, the expected revenue of the period's open deals (won deals
    are not in it).  Bars are labelled by period, the open deals without an expected close
    "unscheduled"; the amount axis is in the table's currency.
    """
    _check_matplotlib()
    rows = _rows(table, ForecastRow, "forecast_chart", "forecast()")
    code = _currency(
        money
        for row in rows
        for money in (row.pipeline, row.best_case, row.commit, row.weighted, row.won)
    )
    fig, ax = _new_figure(_width(len(rows)), 4.8)
    ax.set_title(table.title or "Forecast")
    ax.set_ylabel(_amount_label(code))
    _money_axis(ax, "y")
    if not rows:
        return _empty(fig, ax)
    places = range(len(rows))
    layers = [
        ("won", _WON, [_amount(row.won) for row in rows]),
        ("commit", _COMMIT, [_amount(row.commit) for row in rows]),
        ("best case", _BEST_CASE, [_amount(row.best_case) for row in rows]),
        (
            "pipeline",
            _PIPELINE,
            [
                EXACT.subtract(
                    EXACT.subtract(_amount(row.pipeline), _amount(row.best_case)),
                    _amount(row.commit),
                )
                for row in rows
            ],
        ),
    ]
    bottoms = [Decimal(0)] * len(rows)
    for name, colour, heights in layers:
        ax.bar(
            places,
            [float(height) for height in heights],
            bottom=[float(bottom) for bottom in bottoms],
            color=colour,
            label=name,
            width=0.7,
        )
        bottoms = [
            EXACT.add(bottom, height) for bottom, height in zip(bottoms, heights, strict=True)
        ]
    weighted = [float(_amount(row.weighted)) for row in rows]
    # The periods are a time line; the unscheduled row is not on it, so its point stands alone.
    scheduled = [i for i, row in enumerate(rows) if row.period is not None]
    ax.plot(
        scheduled,
        [weighted[i] for i in scheduled],
        color=_WEIGHTED,
        marker="o",
        label="weighted (open deals)",
    )
    for i, row in enumerate(rows):
        if row.period is None:
            ax.plot([i], [weighted[i]], color=_WEIGHTED, marker="o", linestyle="none")
    _categories(
        ax, "x", ["unscheduled" if row.period is None else row.period.label for row in rows]
    )
    _headroom(ax, 0.08)
    _legend(ax)
    return _finish(fig)


def funnel_chart(table: Table[FunnelRow], *, labels: Mapping[str, str] | None = None) -> Figure:
    """The funnel as horizontal bars, first stage at the top, in pipeline order.

    ``table`` is what ``funnel()`` returns.  Each stage's widest bar is the deals that
    reached it; inside it, the ones that advanced past it, and inside that, the ones won.
    Beside each bar: the conversion, advanced of reached.  ``labels`` maps stage keys to the
    names to show (``{s.key: s.label_for("th") for s in pipeline.stages}``); stages not in
    it show their key.
    """
    _check_matplotlib()
    rows = _rows(table, FunnelRow, "funnel_chart", "funnel()")
    names = _labels(labels)
    fig, ax = _new_figure(9.0, max(3.0, 1.5 + 0.6 * len(rows)))
    ax.set_title(table.title or "Funnel")
    ax.set_xlabel("Opportunities")
    _whole_numbers(ax, "x")
    if not rows:
        return _empty(fig, ax)
    places = range(len(rows))
    ax.barh(places, [row.reached for row in rows], height=0.8, color=_REACHED, label="reached")
    ax.barh(places, [row.advanced for row in rows], height=0.5, color=_ADVANCED, label="advanced")
    ax.barh(places, [row.won for row in rows], height=0.25, color=_WON, label="won")
    for i, row in enumerate(rows):
        note = (
            "none reached"
            if row.conversion is None
            else f"{row.advanced} of {row.reached} advanced ({_percent(row.conversion)})"
        )
        ax.text(row.reached, i, f"  {note}", va="center", fontsize="small")
    _categories(ax, "y", [names.get(row.stage, row.stage) for row in rows])
    ax.invert_yaxis()
    ax.margins(x=0.45)  # room for the notes; the bars' sticky edge keeps 0 at the left
    _legend(ax)
    return _finish(fig)


def movement_chart(movement: Movement | Table[MovementRow]) -> Figure:
    """The pipeline movement as a waterfall, from the opening pipeline to the closing one.

    ``movement`` is what ``pipeline_movement()`` returns (or its ``summary()``).  Bars go
    opening, + new, + increased, - decreased, - won, - lost, + reopened, - pushed out,
    + pulled in, closing: each bucket floats from where the one before it left the
    pipeline, green when it adds and red when it takes away, with its amount written on it
    and its number of deals under its name.
    """
    _check_matplotlib()
    rows = _movement_rows(movement)
    code = _currency(row.amount for row in rows)
    fig, ax = _new_figure(9.0, 4.8)
    ax.set_title(
        movement.title if isinstance(movement, Table) and movement.title else "Pipeline movement"
    )
    ax.set_ylabel(_amount_label(code))
    _money_axis(ax, "y")
    if not any(row.count for row in rows):
        return _empty(fig, ax)
    level = Decimal(0)  # where the pipeline stands after each bar
    levels = []
    for i, row in enumerate(rows):
        value = _amount(row.amount)
        text = _money_text(row.amount)
        if row.bucket in ("opening", "closing"):
            bottom, height, colour = Decimal(0), value, _TOTAL
            level = value
        elif row.bucket in _RISES:
            bottom, height, colour = level, value, _RISE
            text = f"+{text}" if value else text
            level = EXACT.add(level, value)
        else:
            level = EXACT.subtract(level, value)
            bottom, height, colour = level, value, _FALL
            text = f"-{text}" if value else text
        levels.append(level)
        ax.bar([i], [float(height)], bottom=[float(bottom)], color=colour, width=0.7)
        top = max(bottom, EXACT.add(bottom, height))
        ax.text(i, float(top), text, ha="center", va="bottom", fontsize="small")
    for i, at in enumerate(levels[:-1]):  # thin steps from each bar to the next
        ax.plot([i + 0.35, i + 0.65], [float(at)] * 2, color=_TOTAL, linewidth=0.8)
    _categories(
        ax, "x", [f"{row.bucket.replace('_', ' ')}\n({row.count})" for row in rows], rotate=False
    )
    _headroom(ax, 0.12)
    return _finish(fig)


def effectiveness_chart(
    table: Table[EffectivenessRow], *, labels: Mapping[Any, str] | None = None
) -> Figure:
    """Won revenue and open pipeline per key (campaign, lead source, owner, ...), side by
    side, with the win rate written over each pair.

    ``table`` is what ``effectiveness()`` (or ``campaign_effectiveness()``,
    ``lead_source_effectiveness()``) returns.  The win rate is ``row.win_rate``, won of
    closed ("-" while none has closed).  Deals without a key show as "(none)"; ``labels``
    maps keys to the names to show (campaign ids to campaign names, say).
    """
    _check_matplotlib()
    rows = _rows(table, EffectivenessRow, "effectiveness_chart", "effectiveness()")
    names = _labels(labels)
    code = _currency(money for row in rows for money in (row.won_revenue, row.pipeline))
    fig, ax = _new_figure(_width(len(rows)), 4.8)
    ax.set_title(table.title or "Effectiveness")
    ax.set_ylabel(_amount_label(code))
    _money_axis(ax, "y")
    if not rows:
        return _empty(fig, ax)
    won = [_amount(row.won_revenue) for row in rows]
    pipeline = [_amount(row.pipeline) for row in rows]
    side = 0.38
    ax.bar(
        [i - side / 2 for i in range(len(rows))],
        [float(v) for v in won],
        width=side,
        color=_WON,
        label="won revenue",
    )
    ax.bar(
        [i + side / 2 for i in range(len(rows))],
        [float(v) for v in pipeline],
        width=side,
        color=_PIPELINE,
        label="pipeline",
    )
    for i, row in enumerate(rows):
        rate = "-" if row.win_rate is None else _percent(row.win_rate)
        top = max(won[i], pipeline[i], Decimal(0))
        ax.text(i, float(top), f"win rate {rate}", ha="center", va="bottom", fontsize="small")
    _categories(
        ax,
        "x",
        ["(none)" if row.key is None else names.get(row.key, str(row.key)) for row in rows],
    )
    ax.margins(y=0.12)
    _legend(ax)
    return _finish(fig)


# -- checking what was passed -------------------------------------------------------------


def _rows(table: object, row_type: type[R], function: str, source: str) -> tuple[R, ...]:
    """The rows of ``table``, when it is a Table of ``row_type`` (checked by its columns too,
    so an empty table of another kind is refused as well)."""
    columns = tuple(field.name for field in attrs.fields(row_type))  # type: ignore[arg-type]
    if (
        not isinstance(table, Table)
        or table.columns != columns
        or not all(isinstance(row, row_type) for row in table.rows)
    ):
        raise ValidationError(
            f"{function} takes the Table that {source} returns, not {short(table)}."
        )
    return tuple(table.rows)


def _movement_rows(movement: object) -> tuple[MovementRow, ...]:
    if isinstance(movement, Movement):
        return tuple(movement.summary().rows)
    order = ("opening", *BUCKETS, "closing")
    if (
        isinstance(movement, Table)
        and all(isinstance(row, MovementRow) for row in movement.rows)
        and tuple(row.bucket for row in movement.rows) == order
    ):
        return tuple(movement.rows)
    raise ValidationError(
        "movement_chart takes the Movement that pipeline_movement() returns (or its summary()), "
        f"not {short(movement)}."
    )


def _labels(labels: object) -> Mapping[Any, str]:
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise ValidationError(f"labels must be a mapping of keys to names, not {short(labels)}.")
    return labels


def _currency(amounts: Iterable[Money | None]) -> str | None:
    codes = sorted({money.currency for money in amounts if money is not None})
    if len(codes) > 1:
        raise CurrencyMismatchError(
            f"The table holds amounts in {', '.join(codes)}: a chart has one money axis, "
            "so make the table with currency= and rates=."
        )
    return codes[0] if codes else None


# -- numbers as text ----------------------------------------------------------------------


def _amount(money: Money | None) -> Decimal:
    return Decimal(0) if money is None else money.amount


def _money_text(money: Money | None) -> str:
    """The amount rounded to its currency's minor unit, with thousands separators and no
    ``.00`` tail: charts are read at a glance."""
    if money is None:
        return "0"
    amount = money.rounded().amount
    return f"{amount:,.0f}" if amount == amount.to_integral_value() else f"{amount:,}"


def _percent(fraction: Decimal) -> str:
    return f"{fraction * 100:.0f} %"


def _amount_label(code: str | None) -> str:
    return "Amount" if code is None else f"Amount ({code})"


def _tick(value: float, _position: int | None) -> str:
    return f"{value:,.0f}" if value == round(value) else f"{value:,.2f}"


# -- matplotlib ---------------------------------------------------------------------------


def _check_matplotlib() -> None:
    try:
        import matplotlib.figure  # noqa: F401  (only to fail early, before the input is read)
    except ImportError:
        raise ImportError(_NEEDS_MATPLOTLIB) from None


def _new_figure(width: float, height: float) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    # A Figure made directly, not through pyplot: no backend, no global figure list.
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _width(bars: int) -> float:
    return min(20.0, max(7.5, 2.5 + 0.75 * bars))


def _money_axis(ax: Axes, which: str) -> None:
    from matplotlib.ticker import FuncFormatter

    axis = ax.yaxis if which == "y" else ax.xaxis
    axis.set_major_formatter(FuncFormatter(_tick))


def _whole_numbers(ax: Axes, which: str) -> None:
    from matplotlib.ticker import MaxNLocator

    axis = ax.yaxis if which == "y" else ax.xaxis
    axis.set_major_locator(MaxNLocator(integer=True))


def _categories(ax: Axes, which: str, names: Sequence[str], *, rotate: bool = True) -> None:
    places = list(range(len(names)))
    if which == "y":
        ax.set_yticks(places, list(names))
        return
    slanted = rotate and (len(names) > 8 or max(len(name) for name in names) > 12)
    if slanted:  # long or many names: slant them so they do not run into each other
        ax.set_xticks(places, list(names), rotation=30, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticks(places, list(names))


def _headroom(ax: Axes, margin: float) -> None:
    """Room above the tallest bar.  A floating bar sticks the axis to its bottom edge, and a
    bar of nothing on top of a stack would then pin the axis to the stack's top: only 0 sticks."""
    for patch in ax.patches:
        patch.sticky_edges.y[:] = [0.0]
    ax.margins(y=margin)


def _legend(ax: Axes) -> None:
    # Beside the plot, never over a bar; the constrained layout makes room for it.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)


def _empty(fig: Figure, ax: Axes) -> Figure:
    ax.text(
        0.5,
        0.5,
        "no data",
        transform=ax.transAxes,
        ha="center",
        va="center",
        color="grey",
        fontsize="large",
    )
    ax.set_xticks([])
    ax.set_yticks([])
    return _finish(fig)


def _finish(fig: Figure) -> Figure:
    """Let every text fall back on an installed Thai font for glyphs its own font lacks."""
    from matplotlib import font_manager, rcParams
    from matplotlib.text import Text

    thai = _thai_fonts(font.name for font in font_manager.fontManager.ttflist)
    if thai:
        family = [*rcParams["font.family"], *thai]
        for text in fig.findobj(Text):
            text.set_fontfamily(family)
    return fig


def _thai_fonts(installed: Iterable[str]) -> list[str]:
    """The installed font families that hold Thai, in the order to try them."""
    names = set(installed)
    known = [name for name in _THAI_FONTS if name in names]
    others = sorted(name for name in names if "thai" in name.casefold() and name not in known)
    return known + others


__all__ = ["effectiveness_chart", "forecast_chart", "funnel_chart", "movement_chart"]

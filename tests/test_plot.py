"""oppcore.plot: each chart draws what its table says, renders to PNG, and refuses what it
cannot draw."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from oppcore import (
    CurrencyMismatchError,
    FixedClock,
    ForecastCategory,
    Money,
    Opportunity,
    Outcome,
    Pipeline,
    Stage,
    ValidationError,
)
from oppcore.analytics import (
    ForecastRow,
    Movement,
    Table,
    effectiveness,
    forecast,
    funnel,
    pipeline_movement,
)
from oppcore.plot import effectiveness_chart, forecast_chart, funnel_chart, movement_chart

START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NEEDS_MATPLOTLIB = "oppcore.plot needs matplotlib: pip install 'oppcore[plot]'."
# Fonts here may lack Thai glyphs; matplotlib then warns when it draws, and that is all.
THAI_GLYPHS = "ignore:Glyph .* missing from font:UserWarning"

SALES = Pipeline(
    "sales",
    "Sales",
    [
        Stage("lead", "Lead", 10),
        Stage("proposal", "Proposal", 50, forecast_category=ForecastCategory.BEST_CASE),
        Stage("commit", "Commit", 90, forecast_category=ForecastCategory.COMMIT),
        Stage("won", "Won", 100, outcome=Outcome.WON),
        Stage("lost", "Lost", 0, outcome=Outcome.LOST),
    ],
)


def _thb(amount: str) -> Money:
    return Money(amount, "THB")


def _open(clock: FixedClock, amount: str, **fields: Any) -> Opportunity:
    return Opportunity.open(
        name=fields.pop("name", "deal"), pipeline=SALES, amount=_thb(amount), clock=clock, **fields
    )


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    data = buffer.getvalue()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 2_000
    return data


def _axes(fig: Figure) -> Axes:
    [ax] = fig.axes
    return ax


def _bars(ax: Axes) -> dict[str, list[Any]]:
    return {
        str(c.get_label()): list(c.patches) for c in ax.containers if isinstance(c, BarContainer)
    }


def _rectangles(ax: Axes) -> list[Rectangle]:
    rectangles = [patch for patch in ax.patches if isinstance(patch, Rectangle)]
    assert len(rectangles) == len(ax.patches)
    return rectangles


def _points(line: Line2D) -> tuple[list[float], list[float]]:
    xy = numpy.asarray(line.get_xydata(), dtype=float)
    return xy[:, 0].tolist(), xy[:, 1].tolist()


def _texts(ax: Axes) -> list[str]:
    return [text.get_text() for text in ax.texts]


def _ticks(labels: list[Any]) -> list[str]:
    return [label.get_text() for label in labels]


# -- the data ------------------------------------------------------------------------------


def _forecast_deals() -> list[Opportunity]:
    clock = FixedClock(START)
    return [
        _open(clock, "1000", expected_close=date(2026, 2, 10)),
        _open(clock, "2000", stage="proposal", expected_close=date(2026, 2, 20)),
        _open(clock, "4000", stage="commit", expected_close=date(2026, 3, 1)),
        _open(clock, "500"),
        _open(clock, "3000", expected_close=date(2026, 6, 1)).win(clock=clock),
    ]


def _funnel_deals() -> list[Opportunity]:
    clock = FixedClock(START)
    deals = [_open(clock, "100", name=f"deal {i}") for i in range(4)]
    clock.advance(timedelta(days=1))
    deals[0] = deals[0].move_to("proposal", clock=clock).move_to("commit", clock=clock)
    deals[0] = deals[0].win(clock=clock)
    deals[1] = deals[1].move_to("proposal", clock=clock)
    deals[2] = deals[2].lose(clock=clock)
    return deals


def _movement() -> Movement:
    clock = FixedClock(START)
    won = _open(clock, "1000")
    grown = _open(clock, "2000")
    shrunk = _open(clock, "800")
    lost = _open(clock, "300")
    clock.advance(timedelta(days=2))
    deals = [
        won.win(clock=clock),
        grown.update(amount=_thb("2500"), clock=clock),
        shrunk.update(amount=_thb("600"), clock=clock),
        lost.lose(clock=clock),
        _open(clock, "700"),
    ]
    return pipeline_movement(deals, start=START + timedelta(days=1), end=START + timedelta(days=30))


def _effectiveness_table() -> Table[Any]:
    clock = FixedClock(START)
    deals = [
        _open(clock, "1000", lead_source="web").win(clock=clock),
        _open(clock, "400", lead_source="web").lose(clock=clock),
        _open(clock, "500", lead_source="web"),
        _open(clock, "2000", lead_source="fair"),
        _open(clock, "300").win(clock=clock),
    ]
    return effectiveness(deals, by="lead_source")


# -- forecast_chart ------------------------------------------------------------------------


def test_forecast_chart_stacks_won_commit_best_case_and_the_rest_of_the_pipeline() -> None:
    """Each layer is its own money: the pipeline layer leaves out commit and best case, so a
    bar is as tall as won plus the whole pipeline."""
    table = forecast(_forecast_deals())

    ax = _axes(forecast_chart(table))

    bars = _bars(ax)
    assert list(bars) == ["won", "commit", "best case", "pipeline"]
    heights = {name: [patch.get_height() for patch in patches] for name, patches in bars.items()}
    assert heights == {
        "won": [3000.0, 0.0, 0.0, 0.0],
        "commit": [0.0, 0.0, 4000.0, 0.0],
        "best case": [0.0, 2000.0, 0.0, 0.0],
        "pipeline": [0.0, 1000.0, 0.0, 500.0],
    }
    tops = [patch.get_y() + patch.get_height() for patch in bars["pipeline"]]
    expected = [
        float((row.won or _thb("0")).amount + (row.pipeline or _thb("0")).amount) for row in table
    ]
    assert tops == expected
    assert len(ax.patches) == 4 * len(table)


def test_forecast_chart_labels_periods_and_the_unscheduled_row_and_names_the_currency() -> None:
    """Bars carry the period labels, the open deals without a date "unscheduled"; the amount
    axis says THB and the title is the table's."""
    table = forecast(_forecast_deals())

    fig = forecast_chart(table)

    ax = _axes(fig)
    assert _ticks(ax.get_xticklabels()) == ["2026-01", "2026-02", "2026-03", "unscheduled"]
    assert ax.get_ylabel() == "Amount (THB)"
    assert ax.get_title() == "Forecast by month"
    _png(fig)


def test_forecast_chart_draws_the_weighted_line_with_the_unscheduled_point_apart() -> None:
    """The weighted line joins the periods; the unscheduled row's point is not joined to them."""
    table = forecast(_forecast_deals())

    ax = _axes(forecast_chart(table))

    line, alone = ax.lines
    assert _points(line) == ([0.0, 1.0, 2.0], [0.0, 1100.0, 3600.0])
    assert _points(alone) == ([3.0], [50.0])
    assert alone.get_linestyle() == "None"
    legend = ax.get_legend()
    assert legend is not None
    assert "weighted (open deals)" in _ticks(legend.get_texts())


# -- funnel_chart --------------------------------------------------------------------------


def test_funnel_chart_draws_reached_advanced_and_won_per_stage_top_down() -> None:
    """Three bars a stage, the first stage at the top, each as long as the table says."""
    table = funnel(_funnel_deals())

    fig = funnel_chart(table)

    ax = _axes(fig)
    bars = _bars(ax)
    assert list(bars) == ["reached", "advanced", "won"]
    assert [p.get_width() for p in bars["reached"]] == [row.reached for row in table]
    assert [p.get_width() for p in bars["advanced"]] == [row.advanced for row in table]
    assert [p.get_width() for p in bars["won"]] == [row.won for row in table]
    assert [row.reached for row in table] == [4, 2, 1]
    assert len(ax.patches) == 3 * len(table)
    assert _ticks(ax.get_yticklabels()) == ["lead", "proposal", "commit"]
    assert ax.yaxis_inverted()
    assert ax.get_title() == "Funnel of Sales"
    _png(fig)


def test_funnel_chart_writes_the_conversion_beside_each_stage() -> None:
    """Advanced of reached, as a percentage."""
    ax = _axes(funnel_chart(funnel(_funnel_deals())))

    assert [text.strip() for text in _texts(ax)] == [
        "2 of 4 advanced (50 %)",
        "1 of 2 advanced (50 %)",
        "1 of 1 advanced (100 %)",
    ]


def test_funnel_chart_shows_stage_labels_when_given() -> None:
    """labels= maps stage keys to names; keys it does not name stay as they are."""
    ax = _axes(funnel_chart(funnel(_funnel_deals()), labels={"lead": "Lead", "commit": "Commit"}))

    assert _ticks(ax.get_yticklabels()) == ["Lead", "proposal", "Commit"]


# -- movement_chart ------------------------------------------------------------------------


def test_movement_chart_is_a_waterfall_from_opening_to_closing() -> None:
    """Ten bars; each bucket floats from where the last left the pipeline, and the closing
    bar stands where the steps end."""
    movement = _movement()

    fig = movement_chart(movement)

    ax = _axes(fig)
    patches = _rectangles(ax)
    assert len(patches) == 10
    spans = [(p.get_y(), p.get_y() + p.get_height()) for p in patches]
    assert spans == [
        (0.0, 4100.0),  # opening
        (4100.0, 4800.0),  # + new
        (4800.0, 5300.0),  # + increased
        (5100.0, 5300.0),  # - decreased
        (4100.0, 5100.0),  # - won
        (3800.0, 4100.0),  # - lost
        (3800.0, 3800.0),  # + reopened
        (3800.0, 3800.0),  # - pushed out
        (3800.0, 3800.0),  # + pulled in
        (0.0, 3800.0),  # closing
    ]
    assert movement.closing == _thb("3800")
    assert ax.get_ylabel() == "Amount (THB)"
    _png(fig)


def test_movement_chart_colours_increases_and_decreases_apart_and_writes_the_amounts() -> None:
    """Buckets that add share one colour, buckets that take away another; every bar has its
    amount written on it, signed."""
    ax = _axes(movement_chart(_movement()))

    colours = [to_rgba(p.get_facecolor()) for p in ax.patches]
    rises = {colours[i] for i in (1, 2, 6, 8)}
    falls = {colours[i] for i in (3, 4, 5, 7)}
    assert len(rises) == len(falls) == 1
    assert rises != falls
    assert colours[0] not in rises | falls
    assert _texts(ax) == ["4,100", "+700", "+500", "-200", "-1,000", "-300", "0", "0", "0", "3,800"]
    assert _ticks(ax.get_xticklabels())[:2] == ["opening\n(4)", "new\n(1)"]
    assert _ticks(ax.get_xticklabels())[-3:] == [
        "pushed out\n(0)",
        "pulled in\n(0)",
        "closing\n(3)",
    ]


def test_movement_chart_takes_the_summary_table_too() -> None:
    """movement.summary() draws the same waterfall as the Movement itself."""
    movement = _movement()

    from_movement = _axes(movement_chart(movement))
    from_summary = _axes(movement_chart(movement.summary()))

    assert [p.get_bbox().bounds for p in _rectangles(from_summary)] == [
        p.get_bbox().bounds for p in _rectangles(from_movement)
    ]
    assert _texts(from_summary) == _texts(from_movement)


# -- effectiveness_chart -------------------------------------------------------------------


def test_effectiveness_chart_pairs_won_revenue_and_pipeline_per_key() -> None:
    """Two bars a key, in the table's order with the keyless deals last as "(none)"."""
    table = _effectiveness_table()

    fig = effectiveness_chart(table)

    ax = _axes(fig)
    bars = _bars(ax)
    assert [p.get_height() for p in bars["won revenue"]] == [0.0, 1000.0, 300.0]
    assert [p.get_height() for p in bars["pipeline"]] == [2000.0, 500.0, 0.0]
    assert len(ax.patches) == 2 * len(table)
    assert _ticks(ax.get_xticklabels()) == ["fair", "web", "(none)"]
    assert ax.get_title() == "Effectiveness by lead_source"
    _png(fig)


def test_effectiveness_chart_writes_the_win_rate_over_each_key() -> None:
    """Won of closed, and a dash for a key with nothing closed yet."""
    ax = _axes(effectiveness_chart(_effectiveness_table()))

    assert _texts(ax) == ["win rate -", "win rate 50 %", "win rate 100 %"]


def test_effectiveness_chart_shows_key_labels_when_given() -> None:
    """labels= names the keys, say campaign ids by campaign name."""
    ax = _axes(effectiveness_chart(_effectiveness_table(), labels={"web": "Website"}))

    assert _ticks(ax.get_xticklabels()) == ["fair", "Website", "(none)"]


# -- empty input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chart", "result"),
    [
        pytest.param(forecast_chart, lambda: forecast([]), id="forecast"),
        pytest.param(funnel_chart, lambda: funnel([]), id="funnel"),
        pytest.param(
            movement_chart, lambda: pipeline_movement([], start=START, end=START), id="movement"
        ),
        pytest.param(
            effectiveness_chart, lambda: effectiveness([], by="owner"), id="effectiveness"
        ),
    ],
)
def test_an_empty_result_gives_an_empty_chart_that_says_so(
    chart: Callable[[Any], Figure], result: Callable[[], Any]
) -> None:
    """No bars, a "no data" note, and a PNG all the same."""
    fig = chart(result())

    ax = _axes(fig)
    assert len(ax.patches) == 0
    assert _texts(ax) == ["no data"]
    assert ax.get_title()
    _png(fig)


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chart", "value", "message"),
    [
        pytest.param(
            forecast_chart,
            lambda: funnel(_funnel_deals()),
            r"forecast_chart takes the Table that forecast\(\) returns, not <Table 'Funnel of Sales'",
            id="funnel-to-forecast",
        ),
        pytest.param(
            forecast_chart,
            lambda: funnel([]),
            r"not <Table 'Funnel': 0 rows",
            id="empty-funnel-to-forecast",
        ),
        pytest.param(
            funnel_chart,
            lambda: forecast(_forecast_deals()),
            r"funnel_chart takes the Table that funnel\(\) returns, not <Table 'Forecast by month'",
            id="forecast-to-funnel",
        ),
        pytest.param(
            effectiveness_chart,
            lambda: [1, 2],
            r"effectiveness_chart takes the Table that effectiveness\(\) returns, not \[1, 2\]\.",
            id="list-to-effectiveness",
        ),
        pytest.param(
            movement_chart,
            lambda: forecast([]),
            r"movement_chart takes the Movement that pipeline_movement\(\) returns .*, not <Table",
            id="forecast-to-movement",
        ),
        pytest.param(funnel_chart, lambda: None, r"not None\.", id="none-to-funnel"),
    ],
)
def test_a_chart_refuses_what_it_does_not_draw_and_names_it(
    chart: Callable[[Any], Figure], value: Callable[[], Any], message: str
) -> None:
    """The error says which chart, what it takes and what it got."""
    with pytest.raises(ValidationError, match=message):
        chart(value())


def test_labels_must_be_a_mapping() -> None:
    """A list of names is not a mapping of keys to names."""
    with pytest.raises(
        ValidationError, match=r"labels must be a mapping of keys to names, not \['a'\]\."
    ):
        funnel_chart(funnel([]), labels=["a"])  # type: ignore[arg-type]


def test_a_table_in_two_currencies_is_refused() -> None:
    """One money axis, one currency: a hand-made table mixing THB and USD cannot be drawn."""

    def row(money: Money) -> ForecastRow:
        return ForecastRow(None, 1, money, money, money, money, 0, money, 0)

    table = Table.of(ForecastRow, [row(_thb("1")), row(Money("1", "USD"))])

    with pytest.raises(CurrencyMismatchError, match="THB, USD"):
        forecast_chart(table)


# -- Thai text -----------------------------------------------------------------------------


@pytest.mark.filterwarnings(THAI_GLYPHS)
def test_thai_names_are_drawn_without_error() -> None:
    """Thai owners, stage names and pipeline names go on the chart as they are."""
    thai = Pipeline(
        "th",
        "ฝ่ายขาย",
        [
            Stage("wait", "รอดำเนินการ", 10),
            Stage("won", "ปิดการขายได้", 100, outcome=Outcome.WON),
            Stage("lost", "ปิดการขายไม่ได้", 0, outcome=Outcome.LOST),
        ],
    )
    clock = FixedClock(START)
    deals = [
        Opportunity.open(name="ดีล", pipeline=thai, owner="สมชาย", amount=_thb("1"), clock=clock),
        Opportunity.open(name="ดีล", pipeline=thai, owner="สมหญิง", amount=_thb("2"), clock=clock),
    ]

    funnel_fig = funnel_chart(funnel(deals), labels={s.key: s.label for s in thai.stages})
    owners_fig = effectiveness_chart(effectiveness(deals, by="owner"))

    assert _axes(funnel_fig).get_title() == "Funnel of ฝ่ายขาย"
    assert _ticks(_axes(funnel_fig).get_yticklabels()) == ["รอดำเนินการ"]
    assert _ticks(_axes(owners_fig).get_xticklabels()) == ["สมชาย", "สมหญิง"]
    _png(funnel_fig)
    _png(owners_fig)


def test_installed_thai_fonts_are_found_known_ones_first() -> None:
    """The fallback fonts: known Thai fonts in their order, then any other named Thai."""
    from oppcore.plot import _thai_fonts

    installed = ["DejaVu Sans", "Zed Thai", "Loma", "Noto Sans Thai", "Abc Thai", "Tahoma"]

    assert _thai_fonts(installed) == ["Noto Sans Thai", "Tahoma", "Loma", "Abc Thai", "Zed Thai"]
    assert _thai_fonts(["DejaVu Sans"]) == []


def test_every_text_falls_back_on_an_installed_thai_font(monkeypatch: pytest.MonkeyPatch) -> None:
    """When a Thai font is installed, each text tries the user's fonts first, then it."""
    import matplotlib
    from matplotlib.text import Text

    import oppcore.plot

    monkeypatch.setattr(oppcore.plot, "_thai_fonts", lambda installed: ["DejaVu Serif"])

    fig = funnel_chart(funnel(_funnel_deals()))

    families = {tuple(text.get_fontfamily()) for text in fig.findobj(Text)}
    assert families == {(*matplotlib.rcParams["font.family"], "DejaVu Serif")}
    _png(fig)


# -- matplotlib stays optional -------------------------------------------------------------


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_module_imports_without_matplotlib_and_each_chart_says_what_to_install() -> None:
    """With matplotlib blocked, import works and every chart raises ImportError naming the extra."""
    out = _python(
        """
        import sys
        sys.modules["matplotlib"] = None  # as if it were not installed
        from datetime import datetime, timezone
        import oppcore.plot as plot
        from oppcore.analytics import effectiveness, forecast, funnel, pipeline_movement
        now = datetime(2026, 1, 5, tzinfo=timezone.utc)
        calls = [
            lambda: plot.forecast_chart(forecast([])),
            lambda: plot.funnel_chart(funnel([])),
            lambda: plot.movement_chart(pipeline_movement([], start=now, end=now)),
            lambda: plot.effectiveness_chart(effectiveness([], by="owner")),
        ]
        for call in calls:
            try:
                call()
            except ImportError as exc:
                print(exc)
        """
    )

    assert out.splitlines() == [NEEDS_MATPLOTLIB] * 4


def test_importing_and_drawing_never_load_pyplot() -> None:
    """Importing loads no matplotlib at all; drawing and saving a chart leave pyplot, and so
    any GUI backend, untouched."""
    out = _python(
        """
        import io, sys
        import oppcore.plot as plot
        print(sorted(name for name in sys.modules if name.startswith("matplotlib")))
        from oppcore.analytics import forecast
        plot.forecast_chart(forecast([])).savefig(io.BytesIO(), format="png")
        print("matplotlib.pyplot" in sys.modules)
        """
    )

    assert out.splitlines() == ["[]", "False"]

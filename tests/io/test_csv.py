"""CSV import and export: the presets against real data, the generic mapping, the round trip."""

from __future__ import annotations

import io
import sys
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from oppcore import (
    FixedClock,
    LineItem,
    Money,
    OppcoreError,
    Opportunity,
    Pipeline,
    StorageError,
    ValidationError,
)
from oppcore._repr import short
from oppcore.analytics import effectiveness, pipeline_movement, sales_cycle
from oppcore.io import csvfiles
from oppcore.io.csvfiles import (
    HISTORY_COLUMNS,
    MAVEN_CRM,
    OPPCORE_COLUMNS,
    OPPCORE_CSV,
    SALESFORCE,
    CsvMapping,
    ImportResult,
    Rejected,
    load_mapping,
    read_csv,
    read_salesforce_history,
    write_csv,
)
from tests.analytics.test_real_cases import MAVEN_UNDATED, _read_maven
from tests.strategies import any_pipelines, opportunities

UTC = timezone.utc
#: A recording time after every time the strategies make, so no imported event is "future".
FAR = FixedClock(datetime(2200, 1, 1, tzinfo=UTC))
NOW = FixedClock(datetime(2026, 6, 1, tzinfo=UTC))


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _csv(text: str) -> io.StringIO:
    return io.StringIO(text, newline="")


#: A small custom export: id, name, status, value, created, closed.
SIMPLE = CsvMapping(
    name="simple",
    columns={
        "id": "id",
        "name": "name",
        "stage": "status",
        "amount": "value",
        "created_at": "created",
        "closed_at": "closed",
    },
    currency="THB",
    optional=["amount", "closed_at"],
)
HEADER = "id,name,status,value,created,closed\r\n"


# -- Maven CRM ------------------------------------------------------------------------------

_MAVEN: dict[tuple[Path, bool], ImportResult] = {}


def _maven(folder: Path, *, dated: bool = True) -> ImportResult:
    """The Maven import, once per module (8,800 rows)."""
    key = (folder, dated)
    if key not in _MAVEN:
        _MAVEN[key] = read_csv(
            folder / "maven_crm" / "sales_pipeline.csv",
            mapping=MAVEN_CRM,
            opened_at=MAVEN_UNDATED if dated else None,
            clock=NOW,
        )
    return _MAVEN[key]


def test_maven_imports_8800_deals_in_its_four_stages_with_no_rejected_rows(
    shared_data: Path,
) -> None:
    """With opened_at for the Prospecting rows: 4,238 won, 2,473 lost, 1,589 engaging, 500 prospecting."""
    result = _maven(shared_data)

    assert result.rejected == ()
    assert len(result.opportunities) == 8800
    assert Counter(opp.stage_key for opp in result.opportunities) == {
        "won": 4238,
        "lost": 2473,
        "engaging": 1589,
        "prospecting": 500,
    }
    assert all(opp.currency in (None, "USD") for opp in result.opportunities)


def test_maven_without_opened_at_rejects_the_500_undated_rows_saying_to_pass_it(
    shared_data: Path,
) -> None:
    """The Prospecting rows have no engage date: each is a rejected row, not a guessed date."""
    result = _maven(shared_data, dated=False)

    assert len(result.opportunities) == 8300
    assert len(result.rejected) == 500
    assert {r.row["deal_stage"] for r in result.rejected} == {"Prospecting"}
    first = result.rejected[0]
    assert first.line == 8302
    assert first.row["opportunity_id"] == "6CWZFOHJ"
    assert "engage_date is blank" in first.reason
    assert "opened_at=" in first.reason


def _percent(fraction: Decimal | None) -> Decimal:
    assert fraction is not None
    return round(fraction * 100, 2)


def test_maven_import_gives_the_published_win_rates_revenue_and_cycle_lengths(
    shared_data: Path,
) -> None:
    """Win rate 63.15 % (closed) and 48.16 % (all), won revenue 10,005,534, average won deal
    2,360.91, mean cycle 51.78 days (won) and 47.99 (won and lost)."""
    deals = _maven(shared_data).opportunities
    [row] = effectiveness(deals, by=lambda opp: "all")
    won = sales_cycle(deals, basis="won")
    closed = sales_cycle(deals, basis="closed")

    assert (row.opportunities, row.open, row.won, row.lost) == (8800, 2089, 4238, 2473)
    assert _percent(row.win_rate) == Decimal("63.15")
    assert _percent(row.win_rate_all) == Decimal("48.16")
    assert row.won_revenue == Money("10005534", "USD")
    assert row.avg_won_deal is not None
    assert row.avg_won_deal.rounded() == Money("2360.91", "USD")
    assert (won.count, closed.count) == (4238, 6711)
    assert won.mean_days is not None
    assert closed.mean_days is not None
    assert round(won.mean_days, 2) == Decimal("51.78")
    assert round(closed.mean_days, 2) == Decimal("47.99")


def _maven_fields(opp: Opportunity) -> tuple[Any, ...]:
    return (
        opp.id,
        opp.name.replace("GTXPro", "GTX Pro"),
        opp.type.replace("GTXPro", "GTX Pro") if opp.type else None,
        opp.stage_key,
        opp.amount,
        opp.probability,
        opp.owner,
        opp.account,
        opp.created_at,
        opp.closed_at,
    )


def test_maven_preset_gives_the_deals_the_analytics_tests_build_by_hand(
    shared_data: Path,
) -> None:
    """Deal for deal the same as tests/analytics' csv-module loader (``GTXPro`` spelled ``GTX Pro``)."""
    imported = _maven(shared_data).opportunities
    by_hand = _read_maven(shared_data)

    assert [_maven_fields(opp) for opp in imported] == [_maven_fields(opp) for opp in by_hand]


def test_maven_product_is_one_line_priced_at_the_close_value(shared_data: Path) -> None:
    """A won GTXPro deal has one ``GTX Pro`` line at its close value; open deals have no line."""
    deals = {opp.id: opp for opp in _maven(shared_data).opportunities}
    won = deals["Z063OYW0"]  # Darcel Schlecht, GTXPro, Isdom, won at 4514
    engaging = next(opp for opp in deals.values() if opp.stage_key == "engaging")

    assert won.name == "Isdom GTX Pro"
    assert won.type == "GTX Pro"
    assert won.line_items == (LineItem("GTX Pro", Money("4514", "USD"), id="line-1"),)
    assert won.amount == Money("4514", "USD")
    assert not won.amount_is_manual
    assert won.pipeline == MAVEN_CRM.pipeline
    assert won.stage_timeline()[0].stage == "engaging"
    assert engaging.line_items == ()
    assert engaging.amount is None


def test_maven_currency_argument_overrides_the_presets_usd() -> None:
    """The file has no currency column: currency= prices every deal in another currency."""
    text = (
        "opportunity_id,sales_agent,product,account,deal_stage,engage_date,close_date,close_value\r\n"
        "1C1I7A6R,Moses Frase,GTX Plus Basic,Cancity,Won,2016-10-20,2017-03-01,1054\r\n"
        "X,Moses Frase,GTX Basic,,Lost,2016-10-20,2017-03-01,0\r\n"
    )

    result = read_csv(_csv(text), mapping=MAVEN_CRM, currency="EUR", clock=NOW)

    won, lost = result.opportunities
    assert won.amount == Money("1054", "EUR")
    assert won.closed_at == datetime(2017, 3, 1, tzinfo=UTC)
    assert lost.amount == Money("0", "EUR")
    assert lost.name == "Unknown account GTX Basic"
    assert lost.account is None


# -- Salesforce -----------------------------------------------------------------------------

SEEDS = "fivetran_salesforce_seeds"
#: The seeds' stage names are anonymised hashes; IsWon / IsClosed tell what they were.
SEED_STAGES = attrs.evolve(
    SALESFORCE,
    stages={
        "GavUFuuf4DrnQAoiRGlWpQ==": "closed_won",
        "tXi3M8u3iPxq0ggxTSxMKw==": "closed_lost",
        "9RN9J3tlxr89gDctReax5w==": "negotiation_review",
    },
)


def test_salesforce_seeds_with_unknown_stage_names_are_rejected_rows_naming_them(
    shared_data: Path,
) -> None:
    """The anonymised StageName values are no stage of Pipeline.salesforce(): every row says so."""
    result = read_csv(
        shared_data / SEEDS / "sf_opportunity_data.csv",
        mapping=SALESFORCE,
        currency="USD",
        clock=NOW,
    )

    assert result.opportunities == ()
    assert [r.line for r in result.rejected] == list(range(2, 12))
    assert "'GavUFuuf4DrnQAoiRGlWpQ==' is not a stage" in result.rejected[0].reason
    assert "Probability '1000' is outside 0 to 100." in result.rejected[0].reason
    assert "'tXi3M8u3iPxq0ggxTSxMKw==' is not a stage" in result.rejected[5].reason


def test_salesforce_seeds_reject_probability_1000_and_read_blank_amounts_as_unknown(
    shared_data: Path,
) -> None:
    """Nine seed deals import; the probability of 1000 is a rejected row naming it."""
    result = read_csv(
        shared_data / SEEDS / "sf_opportunity_data.csv",
        mapping=SEED_STAGES,
        currency="USD",
        clock=NOW,
    )

    assert len(result.opportunities) == 9
    [bad] = result.rejected
    assert bad.line == 2
    assert bad.row["probability"] == "1000"
    assert bad.reason == "Probability '1000' is outside 0 to 100."
    blank = [opp for opp in result.opportunities if opp.amount is None]
    assert len(blank) == 6
    assert all(opp.expected_revenue is None for opp in blank)
    deals = {opp.id: opp for opp in result.opportunities}
    open_deal = deals["006q000000HdOhuAAF"]
    assert open_deal.stage_key == "negotiation_review"
    assert open_deal.probability == 65
    assert open_deal.expected_revenue == Money("136500", "USD")
    assert open_deal.expected_close == date(2018, 12, 19)
    assert open_deal.created_at == datetime(2018, 12, 18, 17, 56, 5, tzinfo=UTC)
    lost = deals["006q000000HK8jdAAD"]
    assert lost.is_lost
    assert lost.closed_at == datetime(2018, 11, 21, tzinfo=UTC)
    assert lost.expected_revenue == Money("0", "USD")


def test_salesforce_close_date_before_creation_closes_at_the_creation_time(
    shared_data: Path,
) -> None:
    """Chewbaca was created on 2018-12-19 with CloseDate 2018-12-07: it closes when it was created."""
    result = read_csv(
        shared_data / SEEDS / "sf_opportunity_data.csv",
        mapping=SEED_STAGES,
        currency="USD",
        clock=NOW,
    )
    chewbaca = next(opp for opp in result.opportunities if opp.name == "Chewbaca")

    assert chewbaca.created_at == datetime(2018, 12, 19, 20, 22, 58, tzinfo=UTC)
    assert chewbaca.closed_at == chewbaca.created_at
    assert chewbaca.expected_close == date(2018, 12, 7)
    assert chewbaca.is_won


def test_salesforce_amount_without_a_currency_is_rejected_not_guessed(shared_data: Path) -> None:
    """An export without CurrencyIsoCode needs currency=; rows with an amount say so."""
    result = read_csv(
        shared_data / SEEDS / "sf_opportunity_data.csv", mapping=SEED_STAGES, clock=NOW
    )

    reasons = [r.reason for r in result.rejected if "currency=" in r.reason]
    assert len(reasons) == 3  # 200000, 1 and 210000; 24120000 has probability 1000 as well
    assert "Amount '200000' has no currency" in reasons[0]
    assert len(result.opportunities) == 6


def test_salesforce_headers_match_ignoring_case_and_underscores() -> None:
    """API names (StageName), snake case (stage_name) and upper case (STAGENAME) all match."""
    rows = "x1,Deal,Closed Won,100,2024-01-10,2024-01-02T10:00:00Z,true,true\r\n"
    for header in (
        "Id,Name,StageName,Amount,CloseDate,CreatedDate,IsClosed,IsWon",
        "id,name,stage_name,amount,close_date,created_date,is_closed,is_won",
        "ID,NAME,STAGENAME,AMOUNT,CLOSEDATE,CREATEDDATE,ISCLOSED,ISWON",
    ):
        result = read_csv(
            _csv(header + "\r\n" + rows), mapping=SALESFORCE, currency="USD", clock=NOW
        )
        [opp] = result.opportunities
        assert opp.is_won
        assert opp.closed_at == datetime(2024, 1, 10, tzinfo=UTC)


def test_salesforce_is_won_that_disagrees_with_the_stage_rejects_the_row() -> None:
    """IsWon true on an open stage is a contradiction, reported rather than resolved."""
    text = (
        "Id,Name,StageName,CloseDate,CreatedDate,IsClosed,IsWon\r\n"
        "x1,Deal,Prospecting,2024-01-10,2024-01-02,true,true\r\n"
    )

    [bad] = read_csv(_csv(text), mapping=SALESFORCE, clock=NOW).rejected

    assert "says won" in bad.reason
    assert "Prospecting" in bad.reason


def test_read_salesforce_history_on_the_fivetran_seeds_gives_deals_that_replay(
    shared_data: Path,
) -> None:
    """The Fivetran history-mode table is read as history; every deal replays to itself."""
    result = read_salesforce_history(
        shared_data / SEEDS / "sf_opportunity_data.csv",
        shared_data / SEEDS / "sf_opportunity_history_data.csv",
        mapping=SEED_STAGES,
        currency="USD",
        clock=NOW,
    )

    assert len(result.opportunities) == 9
    assert {(Path(r.file or "").name, r.line) for r in result.rejected} == {
        ("sf_opportunity_data.csv", 2),
        ("sf_opportunity_history_data.csv", 2),
    }
    assert all("'1000'" in r.reason for r in result.rejected)
    for opp in result.opportunities:
        assert Opportunity.replay(opp.events) == opp
        assert opp.history()
        assert opp.stage_timeline()[-1].stage == opp.stage_key
    lost = next(opp for opp in result.opportunities if opp.id == "006q000000HK8jdAAD")
    assert [entry.event for entry in lost.history()] == ["Opened", "Lost"]
    assert lost.closed_at == datetime(2018, 11, 21, tzinfo=UTC)


OPPORTUNITIES = (
    "Id,Name,StageName,Amount,Probability,CloseDate,CreatedDate,OwnerId\r\n"
    "006A,Solar roof,Closed Won,12000,100,2024-03-14,2024-01-02T09:00:00Z,005X\r\n"
    "006B,Air conditioning,Negotiation/Review,5000,90,2024-04-30,2024-01-05T09:00:00Z,005Y\r\n"
    "006C,Accounting software,Closed Lost,800,0,2024-02-20,2024-01-10T09:00:00Z,005X\r\n"
)
HISTORY = (
    "Id,OpportunityId,CreatedDate,StageName,Amount,Probability,CloseDate\r\n"
    "h1,006A,2024-01-02T09:00:00Z,Prospecting,10000,10,2024-03-01\r\n"
    "h2,006A,2024-01-20T15:00:00Z,Value Proposition,10000,50,2024-03-01\r\n"
    "h3,006A,2024-02-10T15:00:00Z,Negotiation/Review,12000,90,2024-03-31\r\n"
    "h4,006A,2024-03-15T11:00:00Z,Closed Won,12000,100,2024-03-14\r\n"
    "h5,006B,2024-01-05T09:00:00Z,Qualification,5000,10,2024-03-31\r\n"
    "h6,006B,2024-02-01T09:00:00Z,Negotiation/Review,5000,90,2024-04-30\r\n"
    "h7,006C,2024-01-10T09:00:00Z,Prospecting,800,10,2024-02-20\r\n"
    "h8,006C,2024-02-20T12:00:00Z,Qualification,800,10,2024-02-20\r\n"
    "h9,006C,2024-02-21T08:00:00Z,Closed Lost,800,0,2024-02-20\r\n"
    "h10,006C,2024-02-22T08:00:00Z,Stalled,800,0,2024-02-20\r\n"
    "h11,006Z,2024-02-22T08:00:00Z,Prospecting,1,10,2024-02-20\r\n"
)


def test_read_salesforce_history_replays_stage_moves_amounts_and_close_dates() -> None:
    """OpportunityHistory rows become moves, amount and close-date changes in time order."""
    result = read_salesforce_history(_csv(OPPORTUNITIES), _csv(HISTORY), currency="USD", clock=NOW)

    solar, aircon, software = result.opportunities
    assert [interval.stage for interval in solar.stage_timeline()] == [
        "prospecting",
        "value_proposition",
        "negotiation_review",
        "closed_won",
    ]
    assert solar.stage_timeline()[1].entered_at == datetime(2024, 1, 20, 15, tzinfo=UTC)
    assert solar.created_at == datetime(2024, 1, 2, 9, tzinfo=UTC)
    assert solar.closed_at == datetime(2024, 3, 14, tzinfo=UTC)  # the CloseDate, not the edit
    assert solar.amount == Money("12000", "USD")
    changes = [entry.changes for entry in solar.history()]
    assert any(c.get("amount") == (Money("10000", "USD"), Money("12000", "USD")) for c in changes)
    assert any(c.get("expected_close") == (date(2024, 3, 1), date(2024, 3, 31)) for c in changes)
    assert aircon.stage_key == "negotiation_review"
    assert software.is_lost
    # CloseDate 2024-02-20 is midnight, before the move at noon: the close is at the move.
    assert software.closed_at == datetime(2024, 2, 20, 12, tzinfo=UTC)
    assert all(Opportunity.replay(opp.events) == opp for opp in result.opportunities)
    assert [(r.file, r.line, r.row["Id"]) for r in result.rejected] == [
        ("<history>", 11, "h10"),
        ("<history>", 12, "h11"),
    ]
    assert "'Stalled' is not a stage" in result.rejected[0].reason
    assert "'006Z' is not in '<opportunities>'" in result.rejected[1].reason


def test_history_analytics_work_on_migrated_deals() -> None:
    """pipeline_movement reads the migrated history: February grows one deal and loses one,
    March wins the grown one."""
    deals = read_salesforce_history(
        _csv(OPPORTUNITIES), _csv(HISTORY), currency="USD", clock=NOW
    ).opportunities

    def usd(amount: str) -> Money:
        return Money(amount, "USD")

    february = pipeline_movement(
        deals, start=datetime(2024, 2, 1, tzinfo=UTC), end=datetime(2024, 3, 1, tzinfo=UTC)
    )
    march = pipeline_movement(
        deals, start=datetime(2024, 3, 1, tzinfo=UTC), end=datetime(2024, 3, 31, tzinfo=UTC)
    )

    assert (february.opening, february.increased, february.lost) == (
        usd("15800"),
        usd("2000"),
        usd("800"),
    )
    assert february.closing == usd("17000")
    assert (march.opening, march.won, march.closing) == (usd("17000"), usd("12000"), usd("5000"))


# -- the generic mapping ------------------------------------------------------------------


def test_utf8_with_a_byte_order_mark_and_crlf_reads_like_plain_utf8() -> None:
    """A BOM (Excel's "CSV UTF-8") and CRLF line ends change nothing, Thai text included."""
    text = HEADER + "d1,ชุดโซลาร์เซลล์,Wait,5100.50,2026-01-05T09:00:00+07:00,\r\n"
    plain = read_csv(io.BytesIO(text.encode()), mapping=SIMPLE, clock=NOW)
    with_bom = read_csv(io.BytesIO(b"\xef\xbb\xbf" + text.encode()), mapping=SIMPLE, clock=NOW)
    lf = read_csv(io.BytesIO(text.replace("\r\n", "\n").encode()), mapping=SIMPLE, clock=NOW)
    as_text = read_csv(_csv("\ufeff" + text), mapping=SIMPLE, clock=NOW)

    for result in (plain, with_bom, lf, as_text):
        [opp] = result.opportunities
        assert opp.name == "ชุดโซลาร์เซลล์"
        assert opp.amount == Money("5100.50", "THB")
        assert opp.created_at == datetime(2026, 1, 5, 2, tzinfo=UTC)


def test_a_path_reads_like_an_open_file(tmp_path: Path) -> None:
    """read_csv takes a path (str or Path); rejected rows carry the file's path."""
    path = tmp_path / "deals.csv"
    path.write_bytes(
        (HEADER + "d1,Deal,Wait,,2026-01-05,\r\nd2,Deal,Nowhere,,2026-01-05,\r\n").encode()
    )

    for target in (path, str(path)):
        result = read_csv(target, mapping=SIMPLE, clock=NOW)
        assert [opp.id for opp in result.opportunities] == ["d1"]
        assert result.rejected[0].file == str(path)


def test_dates_are_read_in_the_forms_the_mapping_names() -> None:
    """dayfirst reads 05/03/2024 as 5 March; named strptime forms accept only those forms."""
    text = HEADER + "d1,Deal,Wait,,05/03/2024 14:30,\r\nd2,Deal,Wait,,2024-03-05,\r\n"
    dayfirst = attrs.evolve(SIMPLE, dayfirst=True, time_zone="+07:00")
    strict = attrs.evolve(SIMPLE, date_formats=["%d/%m/%Y %H:%M"])

    first, second = read_csv(_csv(text), mapping=dayfirst, clock=NOW).opportunities
    result = read_csv(_csv(text), mapping=strict, clock=NOW)

    assert first.created_at == datetime(2024, 3, 5, 7, 30, tzinfo=UTC)
    assert second.created_at == datetime(2024, 3, 4, 17, tzinfo=UTC)
    assert [opp.id for opp in result.opportunities] == ["d1"]
    [bad] = result.rejected
    assert bad.line == 3
    assert "'2024-03-05' is not in the form the mapping names ('%d/%m/%Y %H:%M')" in bad.reason


def test_a_date_missing_a_part_or_with_an_unknown_zone_is_rejected_not_guessed() -> None:
    """A date with no day, or a zone name nobody can place, is not completed by a guess."""
    text = (
        HEADER
        + "d1,Deal,Wait,,March 2024,\r\n"
        + "d2,Deal,Wait,,not a date,\r\n"
        + "d3,Deal,Wait,,2024-03-05 10:00 XYZ,\r\n"
        + "d4,Deal,Wait,,5 March 2024 10:00 UTC,\r\n"
    )

    result = read_csv(_csv(text), mapping=SIMPLE, clock=NOW)

    [opp] = result.opportunities
    assert opp.created_at == datetime(2024, 3, 5, 10, tzinfo=UTC)
    assert "'March 2024' is not a whole date" in result.rejected[0].reason
    assert "'not a date' is not a date" in result.rejected[1].reason
    assert "'2024-03-05 10:00 XYZ' names a time zone" in result.rejected[2].reason


def test_repeated_ids_reject_the_second_and_later_rows_with_their_line_numbers() -> None:
    """The first row with an id is the deal; later rows are reported, never overwrite it."""
    text = (
        HEADER
        + "d1,First,Wait,100,2026-01-05,\r\n"
        + "d2,Other,Wait,100,2026-01-05,\r\n"
        + "d1,Second,In progress,200,2026-01-05,\r\n"
        + "d1,Third,Wait,300,2026-01-05,\r\n"
    )

    result = read_csv(_csv(text), mapping=SIMPLE, clock=NOW)

    assert [(opp.id, opp.name) for opp in result.opportunities] == [
        ("d1", "First"),
        ("d2", "Other"),
    ]
    assert [r.line for r in result.rejected] == [4, 5]
    assert all("'d1' repeats the row on line 2" in r.reason for r in result.rejected)
    assert result.rejected[0].row["name"] == "Second"


def test_line_numbers_are_physical_lines_when_a_quoted_cell_spans_two() -> None:
    """A row after a two-line quoted cell is reported at its physical line (the header is 1)."""
    text = (
        HEADER
        + 'd1,"Two\r\nlines",Wait,,2026-01-05,\r\n'
        + "d2,Deal,Nowhere,,2026-01-05,\r\n"
        + "d3,Deal,Wait,,2026-01-05\r\n"
    )

    result = read_csv(_csv(text), mapping=SIMPLE, clock=NOW)

    assert [opp.name for opp in result.opportunities] == ["Two\r\nlines"]
    assert [r.line for r in result.rejected] == [4, 5]
    assert (
        "Stage (status) 'Nowhere' is not a stage of pipeline 'default'" in result.rejected[0].reason
    )
    assert result.rejected[1].reason == "The row has 5 cells; the header has 6."


def test_stage_values_match_keys_labels_thai_labels_and_the_mappings_own_values() -> None:
    """'closed_won', 'Closed Won', 'ปิดการขายได้', 'closed won' and a mapped 'Sold' all win."""
    mapping = attrs.evolve(SIMPLE, stages={"Sold": "closed_won"})
    values = ["closed_won", "Closed Won", "ปิดการขายได้", "closed won", "Sold"]
    text = HEADER + "".join(
        f"d{n},Deal,{value},10,2026-01-05,2026-02-01\r\n" for n, value in enumerate(values)
    )

    result = read_csv(_csv(text), mapping=mapping, clock=NOW)

    assert result.rejected == ()
    assert all(opp.stage_key == "closed_won" for opp in result.opportunities)
    assert all(opp.closed_at == datetime(2026, 2, 1, tzinfo=UTC) for opp in result.opportunities)


def test_an_unknown_stage_is_a_rejected_row_naming_the_value() -> None:
    """'Pending' is no stage of the default pipeline: the row is reported with that word."""
    text = HEADER + "d1,Deal,Pending,10,2026-01-05,\r\nd2,Deal,Wait,10,2026-01-05,\r\n"

    result = read_csv(_csv(text), mapping=SIMPLE, clock=NOW)

    assert [opp.id for opp in result.opportunities] == ["d2"]
    assert "'Pending'" in result.rejected[0].reason


def test_a_close_before_the_creation_time_closes_at_the_creation_time() -> None:
    """Closed on the 1st, created on the 5th: the Won event is at the creation time."""
    text = HEADER + "d1,Deal,Closed Won,10,2026-01-05T10:00:00Z,2026-01-01\r\n"

    [opp] = read_csv(_csv(text), mapping=SIMPLE, clock=NOW).opportunities

    assert opp.closed_at == opp.created_at == datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert [type(event).__name__ for event in opp.events] == ["Opened", "Won"]


def test_a_closed_row_without_a_close_time_is_rejected() -> None:
    """Won with a blank close time: the reason says the close time is missing."""
    text = HEADER + "d1,Deal,Closed Lost,10,2026-01-05,\r\n"

    [bad] = read_csv(_csv(text), mapping=SIMPLE, clock=NOW).rejected

    assert "has no close time (its closed is blank)" in bad.reason


def test_a_row_with_several_problems_names_each_and_the_other_rows_import() -> None:
    """A bad amount, stage and date are all in the one reason; the next row still imports."""
    text = HEADER + "d1,Deal,Limbo,12abc,yesterday,\r\nd2,Deal,Wait,,2026-01-05,\r\n"

    result = read_csv(_csv(text), mapping=SIMPLE, clock=NOW)

    [bad] = result.rejected
    assert "'Limbo'" in bad.reason
    assert "Amount '12abc' is not a number." in bad.reason
    assert "'yesterday'" in bad.reason
    assert [opp.id for opp in result.opportunities] == ["d2"]


def test_opened_at_opens_rows_of_a_file_with_no_open_times() -> None:
    """A mapping with no created_at column needs opened_at=; a date means midnight UTC."""
    mapping = CsvMapping(columns={"name": "Deal"})
    text = "Deal\r\nSolar roof\r\n\r\n,\r\nAir conditioning\r\n"

    without = read_csv(_csv(text), mapping=mapping, clock=NOW)
    result = read_csv(_csv(text), mapping=mapping, opened_at=date(2026, 1, 5), clock=NOW)

    assert len(without.rejected) == 2
    assert "the mapping names no open-time column" in without.rejected[0].reason
    assert [opp.name for opp in result.opportunities] == ["Solar roof", "Air conditioning"]
    assert all(opp.created_at == datetime(2026, 1, 5, tzinfo=UTC) for opp in result.opportunities)
    assert all(opp.stage_key == "wait" for opp in result.opportunities)
    assert len({opp.id for opp in result.opportunities}) == 2


def test_a_blank_amount_is_unknown_and_a_zero_amount_is_zero() -> None:
    """Blank is None (no expected revenue); 0 is zero money."""
    text = HEADER + "d1,Deal,Wait,,2026-01-05,\r\nd2,Deal,Wait,0,2026-01-05,\r\n"

    blank, zero = read_csv(_csv(text), mapping=SIMPLE, clock=NOW).opportunities

    assert blank.amount is None
    assert blank.expected_revenue is None
    assert zero.amount == Money("0", "THB")


def test_a_huge_field_is_read_and_the_domains_limit_rejects_its_row() -> None:
    """A 200,000-character name is read whole (past the csv module's 131,072 default) and
    refused by the domain's text limit at its line; later rows import."""
    text = HEADER + f'd1,"{"x" * 200_000}",Wait,,2026-01-05,\r\n' + "d2,Deal,Wait,,2026-01-05,\r\n"

    result = read_csv(_csv(text), mapping=SIMPLE, clock=NOW)

    assert [opp.id for opp in result.opportunities] == ["d2"]
    [bad] = result.rejected
    assert bad.line == 2
    assert bad.row["name"] == "x" * 200_000
    assert bad.reason == "Opportunity name is 200,000 characters; the limit is 100,000."


def test_a_deal_dated_after_the_import_is_rejected() -> None:
    """An open time in the future of the import's clock is reported, not recorded."""
    text = HEADER + "d1,Deal,Wait,,2030-01-05,\r\n"

    [bad] = read_csv(_csv(text), mapping=SIMPLE, clock=NOW).rejected

    assert "after the import's time" in bad.reason


def test_every_event_is_recorded_at_the_imports_time() -> None:
    """recorded_at is when oppcore recorded the row: the import, from the clock given."""
    text = HEADER + "d1,Deal,Closed Won,10,2026-01-05,2026-01-09\r\n"

    [opp] = read_csv(_csv(text), mapping=SIMPLE, clock=NOW).opportunities

    assert {event.recorded_at for event in opp.events} == {NOW.now()}


# -- writing and the round trip -------------------------------------------------------------


def _fields(opp: Opportunity) -> tuple[Any, ...]:
    """Everything a deal is now (its events aside)."""
    return (
        opp.id,
        opp.name,
        opp.type,
        opp.pipeline,
        opp.stage_key,
        opp.currency,
        opp.amount,
        opp.amount_is_manual,
        opp.probability,
        opp.manual_probability,
        opp.expected_close,
        opp.campaign_id,
        opp.lead_id,
        opp.lead_source,
        opp.owner,
        opp.account,
        opp.description,
        opp.lost_reason,
        opp.line_items,
        opp.created_at,
        opp.closed_at,
        opp.last_open_stage,
    )


def _round_trip(deals: list[Opportunity], pipeline: Pipeline) -> ImportResult:
    buffer = io.StringIO(newline="")
    write_csv(deals, buffer)
    buffer.seek(0)
    return read_csv(buffer, mapping=OPPCORE_CSV, pipeline=pipeline, clock=FAR)


@given(
    st.lists(
        opportunities(pipeline_strategy=st.shared(any_pipelines(), key="pipeline"), max_commands=8),
        min_size=1,
        max_size=3,
        unique_by=lambda opp: opp.id,
    ),
    st.shared(any_pipelines(), key="pipeline"),
)
def test_write_csv_then_read_csv_gives_back_the_same_deals(
    deals: list[Opportunity], pipeline: Pipeline
) -> None:
    """Every field, exactly: Decimal digits, Thai text, time zones, line items, manual flags."""
    result = _round_trip(deals, pipeline)

    assert result.rejected == ()
    assert [_fields(opp) for opp in result.opportunities] == [_fields(opp) for opp in deals]


def test_round_trip_of_stock_pipelines_keeps_exact_amounts_and_line_totals() -> None:
    """A hand-typed amount and a line total with eight places both read back exactly."""
    clock = FixedClock(datetime(2026, 1, 5, 9, tzinfo=timezone(timedelta(hours=7))))
    manual = Opportunity.open(
        name="บริษัท สยามเทรดดิ้ง จำกัด",
        amount=Money("5100.123456", "THB"),
        probability="12.5",
        expected_close=date(2026, 3, 31),
        owner="สมชาย",
        description="  spaces kept  ",
        clock=clock,
    )
    lines = Opportunity.open(
        name="Lines",
        line_items=[LineItem("GTX Pro", Money("4821.01", "USD"), quantity="3", discount="12.5")],
        clock=clock,
    ).lose(reason="Price", clock=clock)

    result = _round_trip([manual, lines], Pipeline.default())

    assert [_fields(opp) for opp in result.opportunities] == [_fields(manual), _fields(lines)]
    assert result.opportunities[1].amount == Money("12655.15125", "USD")


def test_write_csv_writes_the_oppcore_columns_with_iso_times_and_exact_numbers() -> None:
    """The header is OPPCORE_COLUMNS; times carry their offset; amounts are not rounded."""
    clock = FixedClock(datetime(2026, 1, 5, 9, tzinfo=UTC))
    opp = Opportunity.open(name="Deal", amount=Money("100.005", "USD"), id="d1", clock=clock)
    buffer = io.StringIO(newline="")

    count = write_csv([opp], buffer)

    header, row = buffer.getvalue().split("\r\n")[:2]
    assert count == 1
    assert header == ",".join(OPPCORE_COLUMNS)
    assert row.startswith("d1,Deal,default,wait,100.005,true,USD,10,false,")
    assert "2026-01-05T09:00:00+00:00" in row


def test_write_csv_with_history_writes_one_row_per_event(tmp_path: Path) -> None:
    """Each event is a row with the state after it and the fields it changed."""
    clock = FixedClock(datetime(2026, 1, 5, 9, tzinfo=UTC))
    first = Opportunity.open(name="One", amount=Money("100", "USD"), id="a", clock=clock)
    clock.advance(timedelta(days=3))
    first = first.move_to("in_progress", clock=clock).update(
        amount=Money("150", "USD"), clock=clock
    )
    clock.advance(timedelta(days=3))
    first = first.win(clock=clock)
    second = Opportunity.open(name="Two", id="b", clock=clock)
    path = tmp_path / "history.csv"

    count = write_csv([first, second], path, history=True)

    lines = path.read_text(encoding="utf-8").splitlines()
    assert count == len(first.events) + len(second.events) == 5
    assert lines[0] == ",".join(HISTORY_COLUMNS)
    assert [line.split(",")[:3] for line in lines[1:]] == [
        ["a", "1", "Opened"],
        ["a", "2", "StageChanged"],
        ["a", "3", "FieldsChanged"],
        ["a", "4", "Won"],
        ["b", "1", "Opened"],
    ]
    assert lines[2].endswith(",best_case,stage probability expected_revenue forecast_category")
    assert ",150,USD,50,75.0," in lines[3]  # exact: 150 x 0.5


def test_write_csv_with_a_bom_is_read_back_the_same(tmp_path: Path) -> None:
    """bom=True is for spreadsheet programs; read_csv skips the mark."""
    opp = Opportunity.open(name="กาแฟดอยช้าง 1 กก.", clock=NOW)
    path = tmp_path / "deals.csv"

    write_csv([opp], path, bom=True)
    [back] = read_csv(path, mapping=OPPCORE_CSV, clock=NOW).opportunities

    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert _fields(back) == _fields(opp)


def test_a_row_in_another_pipeline_is_rejected_saying_which() -> None:
    """An OPPCORE_CSV row names its pipeline; reading it into another pipeline is refused."""
    opp = Opportunity.open(name="Deal", pipeline=Pipeline.salesforce(), clock=NOW)

    result = _round_trip([opp], Pipeline.default())

    assert "in pipeline 'salesforce', not 'default'" in result.rejected[0].reason


# -- progress -------------------------------------------------------------------------------


def test_importing_100000_rows_shows_progress_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A progress line every 10,000 rows on stderr when it is a terminal, then a summary."""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    text = "id,name,status,created\n" + "".join(
        f"d{n},Deal {n},Wait,2026-01-05T09:00:00\n" for n in range(100_000)
    )
    mapping = CsvMapping(
        columns={"id": "id", "name": "name", "stage": "status", "created_at": "created"}
    )

    result = read_csv(_csv(text), mapping=mapping, clock=NOW)

    assert len(result.opportunities) == 100_000
    shown = terminal.getvalue()
    assert shown.count("\r") == 11
    assert "100,000 rows read\r" in shown
    assert shown.endswith("100,000 rows read, 100,000 imported, 0 rejected.\n")


def test_progress_is_silent_when_stderr_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redirected to a file or a pipe, nothing is printed unless progress=True forces it."""
    monkeypatch.setattr(csvfiles, "PROGRESS_EVERY", 1)
    text = HEADER + "d1,Deal,Wait,,2026-01-05,\r\n"
    quiet = io.StringIO()
    monkeypatch.setattr(sys, "stderr", quiet)

    read_csv(_csv(text), mapping=SIMPLE, clock=NOW)
    assert quiet.getvalue() == ""
    read_csv(_csv(text), mapping=SIMPLE, clock=NOW, progress=True)
    assert quiet.getvalue().endswith("1 rows read, 1 imported, 0 rejected.\n")

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    read_csv(_csv(text), mapping=SIMPLE, clock=NOW, progress=False)
    assert terminal.getvalue() == ""


# -- mappings -------------------------------------------------------------------------------


def test_a_toml_mapping_reads_a_custom_export(tmp_path: Path) -> None:
    """The TOML shape in CsvMapping's documentation: columns, stages, values, defaults, dates."""
    if sys.version_info < (3, 11):
        pytest.skip("TOML mappings need Python 3.11")
    toml = tmp_path / "crm.toml"
    toml.write_text(
        """
name = "thai-crm"
pipeline = "default"
currency = "THB"
match = "loose"
dayfirst = true
time_zone = "+07:00"
thousands = ","
name_format = "{Customer|ลูกค้าใหม่} - {Product}"

[columns]
id = "Deal ID"
stage = "Status"
amount = "Value"
created_at = "Created"
closed_at = "Closed"
owner = "Sales Rep"

[stages]
"ปิดการขายได้" = "closed_won"
"Hot" = "in_progress"

[values."Sales Rep"]
"Som" = "Somchai"

[defaults]
type = "new_customer"
""",
        encoding="utf-8",
    )
    text = (
        "deal_id,customer,product,status,value,created,closed,sales_rep\r\n"
        'T1,สยามเทรดดิ้ง,Solar,ปิดการขายได้,"1,250,000.50",02/01/2026,15/02/2026,Som\r\n'
        "T2,,Aircon,Hot,900,03/01/2026,,Nok\r\n"
    )

    mapping = CsvMapping.from_toml(toml)
    won, hot = read_csv(_csv(text), mapping=mapping, clock=NOW).opportunities

    assert load_mapping(toml) == mapping
    assert won.name == "สยามเทรดดิ้ง - Solar"
    assert won.amount == Money("1250000.50", "THB")
    assert won.owner == "Somchai"
    assert won.type == "new_customer"
    assert won.created_at == datetime(2026, 1, 1, 17, tzinfo=UTC)
    assert won.closed_at == datetime(2026, 2, 14, 17, tzinfo=UTC)
    assert hot.name == "ลูกค้าใหม่ - Aircon"
    assert hot.stage_key == "in_progress"


def test_toml_mappings_on_python_3_10_say_they_need_3_11(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No new dependency: before tomllib, a clear ValidationError instead."""
    monkeypatch.setattr(sys, "version_info", (3, 10, 14, "final", 0))

    with pytest.raises(ValidationError, match=r"TOML mappings need Python 3\.11"):
        CsvMapping.from_toml(tmp_path / "crm.toml")


def test_bad_toml_is_a_validation_error_naming_the_file(tmp_path: Path) -> None:
    """Broken TOML and unknown keys are named with the file."""
    broken = tmp_path / "broken.toml"
    broken.write_text("columns = [", encoding="utf-8")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('colums = {id = "Id"}', encoding="utf-8")

    with pytest.raises(ValidationError, match=r"broken\.toml.*not valid TOML"):
        CsvMapping.from_toml(broken)
    with pytest.raises(ValidationError, match=r"unknown\.toml.*unknown key 'colums'"):
        CsvMapping.from_toml(unknown)
    with pytest.raises(StorageError, match=r"missing\.toml"):
        CsvMapping.from_toml(tmp_path / "missing.toml")


@pytest.mark.parametrize("preset", [MAVEN_CRM, SALESFORCE, OPPCORE_CSV])
def test_presets_survive_to_dict_and_from_dict(preset: CsvMapping) -> None:
    """A preset written out as a dict (what a TOML file holds) reads back equal."""
    assert CsvMapping.from_dict(preset.to_dict()) == preset


def test_load_mapping_names_the_presets() -> None:
    """The CLI's --mapping maven|salesforce|oppcore|FILE.toml."""
    assert load_mapping("maven") is MAVEN_CRM
    assert load_mapping("Salesforce") is SALESFORCE
    assert load_mapping("oppcore") is OPPCORE_CSV
    assert load_mapping(MAVEN_CRM) is MAVEN_CRM
    assert load_mapping({"columns": {"name": "Deal"}}) == CsvMapping(columns={"name": "Deal"})
    with pytest.raises(ValidationError, match="'hubspot' is not a preset"):
        load_mapping("hubspot")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"columns": {"stage_name": "Stage"}}, "'stage_name' is not a field"),
        ({"columns": "Stage"}, "columns must be a mapping"),
        ({"stages": {"Sold": "sold"}}, "maps stage value 'Sold' to 'sold'"),
        ({"closed_from": "closed_won"}, "closed_from 'closed_won', which is not an open stage"),
        ({"match": "fuzzy"}, "match 'fuzzy' is not 'exact' or 'loose'"),
        ({"time_zone": "Mars/Olympus"}, "'Mars/Olympus' is not a time zone"),
        ({"date_formats": "%d/%m/%Y"}, "date_formats must be a list"),
        ({"name_format": "Deal"}, "name_format 'Deal' names no column"),
        ({"currency": "BAHT"}, "'BAHT' is not an ISO 4217"),
        ({"optional": ["colour"]}, "'colour' is not a field"),
        ({"thousands": ".", "decimal_point": "."}, "they must differ"),
    ],
)
def test_a_bad_mapping_is_refused_when_built(changes: dict[str, Any], message: str) -> None:
    """Mistakes in a mapping fail at once, naming the value, not on some row later."""
    data = {**SALESFORCE.to_dict(), **changes}

    with pytest.raises(ValidationError, match=message):
        CsvMapping.from_dict(data)


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("mapping", ["maven", {"columns": {"id": "Id"}}, None, 42])
def test_read_csv_refuses_a_mapping_that_is_not_a_csv_mapping(mapping: Any) -> None:
    """A preset's name or a dict goes through load_mapping first; the error says so."""
    with pytest.raises(ValidationError, match="mapping must be a CsvMapping") as caught:
        read_csv(_csv(HEADER), mapping=mapping)

    assert short(mapping) in str(caught.value)


def test_a_missing_required_column_is_a_validation_error_naming_it() -> None:
    """SIMPLE needs 'status': a file without it fails before any row."""
    with pytest.raises(ValidationError, match=r"has no column 'status' \(for field 'stage'\)"):
        read_csv(_csv("id,name,created\r\nd1,Deal,2026-01-05\r\n"), mapping=SIMPLE)


def test_bytes_that_are_not_utf8_name_the_file_and_line(tmp_path: Path) -> None:
    """A cp874 (Thai Windows) byte on line 3 is a ValidationError, not a codec traceback."""
    path = tmp_path / "thai.csv"
    path.write_bytes(
        HEADER.encode() + b"d1,Deal,Wait,,2026-01-05,\r\nd2,\xbb\xd4\xb4,Wait,,2026-01-05,\r\n"
    )

    with pytest.raises(ValidationError, match=r"thai\.csv.*not valid utf-8.*line 3") as caught:
        read_csv(path, mapping=SIMPLE)
    with pytest.raises(ValidationError, match=r"line 3"):
        read_csv(io.BytesIO(path.read_bytes()), mapping=SIMPLE)

    assert caught.value.__cause__ is None
    with (
        path.open(encoding="utf-8", newline="") as text,
        pytest.raises(ValidationError, match=r"thai\.csv.*not valid utf-8 text at line 1 or after"),
    ):
        read_csv(text, mapping=SIMPLE)
    result = read_csv(path, mapping=SIMPLE, encoding="cp874", clock=NOW)
    assert result.opportunities[1].name == "ปิด"


@pytest.mark.parametrize("name", ["missing.csv", "."])
def test_a_path_that_is_not_a_readable_file_is_a_storage_error(tmp_path: Path, name: str) -> None:
    """A missing file or a directory: StorageError naming the path."""
    target = tmp_path / name

    with pytest.raises(StorageError, match="Cannot read CSV file") as caught:
        read_csv(target, mapping=SIMPLE)

    assert str(target) in str(caught.value)


@pytest.mark.parametrize("target", [3, None, b"id,name", ["id,name"]])
def test_something_that_is_not_a_file_is_a_validation_error(target: Any) -> None:
    """An int (a file descriptor to open()), None or bytes are refused, named."""
    with pytest.raises(ValidationError, match="read_csv takes a path or an open file"):
        read_csv(target, mapping=SIMPLE)


def test_an_empty_file_has_no_header() -> None:
    """Nothing to read is an error, not an empty import."""
    with pytest.raises(ValidationError, match="is empty: it has no header line"):
        read_csv(_csv("\r\n\r\n"), mapping=SIMPLE)


def test_a_header_only_file_imports_nothing() -> None:
    """A header and no rows is an empty result."""
    result = read_csv(_csv(HEADER), mapping=SIMPLE)

    assert (result.opportunities, result.rejected) == ((), ())
    assert repr(result) == "<ImportResult: 0 opportunities, 0 rejected>"


@pytest.mark.parametrize(
    ("keyword", "value", "message"),
    [
        ("pipeline", "default", "pipeline must be a Pipeline or None, not 'default'"),
        ("currency", "baht", "'baht' is not an ISO 4217"),
        ("opened_at", datetime(2026, 1, 5), "opened_at '2026-01-05T00:00:00' is naive"),
        ("opened_at", "2026-01-05", "opened_at must be an aware datetime or a date"),
        ("encoding", "utf-16", "encoding 'utf-16' does not write a newline"),
        ("encoding", "klingon", "'klingon' is not a codec"),
        ("progress", "yes", "progress must be True, False or None, not 'yes'"),
    ],
)
def test_bad_arguments_raise_validation_errors_naming_them(
    keyword: str, value: Any, message: str
) -> None:
    """Every argument is checked before the file is read."""
    with pytest.raises(ValidationError, match=message):
        read_csv(_csv(HEADER + "d1,Deal,Wait,,2026-01-05,\r\n"), mapping=SIMPLE, **{keyword: value})


def test_two_columns_that_match_one_name_are_an_error_not_a_guess() -> None:
    """With loose matching, 'Stage_Name' and 'stagename' both match StageName."""
    text = "Id,Name,Stage_Name,stagename,CloseDate,CreatedDate\r\n"

    with pytest.raises(ValidationError, match="2 columns matching 'StageName'"):
        read_csv(_csv(text), mapping=SALESFORCE)


@pytest.mark.parametrize("deals", [Opportunity, "deals", [1], {"a": 1}])
def test_write_csv_refuses_what_is_not_opportunities(deals: Any) -> None:
    """write_csv takes an iterable of Opportunity values and names anything else."""
    with pytest.raises(ValidationError, match="opportunit"):
        write_csv(deals, io.StringIO())


def test_write_csv_to_a_binary_file_or_a_bad_path_is_refused(tmp_path: Path) -> None:
    """A binary file is a ValidationError; an unwritable path a StorageError naming it."""
    with pytest.raises(ValidationError, match="open text file"):
        write_csv([], io.BytesIO())  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="nowhere"):
        write_csv([], tmp_path / "nowhere" / "deals.csv")


def test_every_error_on_bad_input_is_an_oppcore_error() -> None:
    """Rejected rows are values; the errors read_csv raises are OppcoreError subclasses."""
    assert issubclass(ValidationError, OppcoreError)
    assert Rejected(2, {}, "why").file is None

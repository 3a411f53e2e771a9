"""The oppcore command, run as a user runs it: a subprocess in a scratch folder.

Every run happens in a temporary folder (``cwd``), never in the repository, because ``demo``
writes ``oppcore-demo.db`` into the current folder.  A user's mistake is one clear line on
stderr (argparse's usage lines may precede it) and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from oppcore.cli import main

DEMO_DB = "oppcore-demo.db"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SECTIONS = ("forecast", "campaigns", "lead_sources", "types", "funnel", "movement", "as_of")
TABLE_TITLES = (
    "Campaign effectiveness",
    "Lead-source effectiveness",
    "Effectiveness by type of deal",
    "Funnel of pipeline 'b2b'",
    "Funnel of pipeline 'default'",
)

Run = subprocess.CompletedProcess[str]


def oppcore(*args: str | os.PathLike[str], cwd: Path) -> Run:
    """``python -m oppcore ARGS`` in ``cwd``, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "oppcore", *(os.fspath(arg) for arg in args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        check=False,
        timeout=120,
    )


def ok(result: Run) -> str:
    """The output of a run that must succeed quietly."""
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def assert_one_line_error(result: Run, *needles: str) -> str:
    """A user mistake: exit 1, one line on stderr starting ``oppcore:``, nothing on stdout."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("oppcore: ")
    for needle in needles:
        assert needle in lines[0]
    assert result.stdout == ""
    return lines[0]


def assert_usage_error(result: Run, *needles: str) -> str:
    """An argument argparse rejects: exit 2, usage lines and then one ``error:`` line."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("usage: oppcore")
    assert re.match(r"oppcore( \w+)?: error: ", lines[-1]), lines[-1]
    assert all(": error:" not in line for line in lines[:-1])
    for needle in needles:
        assert needle in lines[-1]
    assert result.stdout == ""
    return lines[-1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def report_json(*args: str | os.PathLike[str], cwd: Path) -> dict[str, Any]:
    document = json.loads(ok(oppcore("report", *args, "--format", "json", cwd=cwd)))
    assert isinstance(document, dict)
    return document


def amount(cell: dict[str, str] | None) -> Decimal:
    """An amount of the JSON report (exact, as text); ``None`` when there is none."""
    return Decimal(0) if cell is None else Decimal(cell["amount"])


def csv_sections(text: str) -> dict[str, list[dict[str, str]]]:
    """The ``# name`` sections of ``report --format csv``, each as a list of rows."""
    sections: dict[str, list[dict[str, str]]] = {}
    for block in text.strip("\n").split("\n\n"):
        title, _, body = block.partition("\n")
        assert title.startswith("# "), block
        sections[title[2:]] = list(csv.DictReader(io.StringIO(body)))
    return sections


# -- files the tests write --------------------------------------------------------------

SALESFORCE_CSV = """\
Id,Name,StageName,Amount,CurrencyIsoCode,CloseDate,CreatedDate,Type,LeadSource,IsClosed,IsWon
006A,Acme renewal,Closed Won,1000.00,USD,2026-02-10,2026-01-05,Existing Customer - Renewal,Web,true,true
006B,Globex new,Closed Lost,50000,THB,2026-02-20,2026-01-06,New Customer,Partner,true,false
006C,Initech upsell,Prospecting,2000,USD,2026-05-15,2026-02-01,Existing Customer - Upgrade,Web,false,false
006D,Umbrella,Negotiation/Review,35000,THB,2026-06-15,2026-02-03,New Customer,Phone Inquiry,false,false
006E,Bad stage,Dreaming,10,USD,2026-06-15,2026-02-03,New Customer,Web,false,false
"""

RATES_CSV = "base,quote,date,rate\nUSD,THB,2026-01-01,35\n"

MY_CRM_CSV = """\
Deal ID,Title,Status,Value,Created,Closed,Source
D-1,Alpha,Won,"1,200.50",05/01/2026,20/02/2026,Web
D-2,Beta,Lost,800,06/01/2026,25/02/2026,Partner
D-3,Gamma,Open,500,07/02/2026,,Web
D-4,Delta,Working,,08/02/2026,,Referral
D-5,Epsilon,Maybe,10,08/02/2026,,Referral
D-6,Zeta,Open,10,,,Referral
"""

MY_CRM_TOML = """\
name = "my-crm"
pipeline = "default"
currency = "EUR"
date_formats = ["%d/%m/%Y"]
thousands = ","

[columns]
id = "Deal ID"
name = "Title"
stage = "Status"
amount = "Value"
created_at = "Created"
closed_at = "Closed"
lead_source = "Source"

[stages]
Won = "closed_won"
Lost = "closed_lost"
Open = "wait"
Working = "in_progress"
"""


def salesforce_store(folder: Path) -> Path:
    """A store of four Salesforce deals in THB and USD, made by ``oppcore import``."""
    (folder / "sf.csv").write_text(SALESFORCE_CSV, encoding="utf-8")
    (folder / "rates.csv").write_text(RATES_CSV, encoding="utf-8")
    ok(oppcore("import", "sf.csv", "--store", "sf.db", "--mapping", "salesforce", cwd=folder))
    return folder / "sf.db"


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A demo store (read only for the tests that use it) and what the first demo printed."""
    folder = tmp_path_factory.mktemp("demo")
    first = ok(oppcore("demo", cwd=folder))
    store = folder / DEMO_DB
    before = digest(store)
    yield store, first
    assert digest(store) == before, "a read-only command changed the shared demo store"


@pytest.fixture
def maven_store(shared_data: Path, tmp_path: Path) -> tuple[Path, str]:
    """The Maven CRM sales pipeline imported with an open date for its Prospecting rows."""
    source = shared_data / "maven_crm" / "sales_pipeline.csv"
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    out = ok(
        oppcore(
            "import",
            source,
            "--store",
            "maven.db",
            "--mapping",
            "maven",
            "--opened-at",
            "2017-01-01",
            cwd=tmp_path,
        )
    )
    return tmp_path / "maven.db", out


# -- demo -------------------------------------------------------------------------------


def test_demo_fills_its_store_and_prints_the_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`oppcore demo` fills oppcore-demo.db in the current folder and prints every report."""
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0

    out = capsys.readouterr().out
    assert (tmp_path / "oppcore-demo.db").is_file()
    assert "Filled oppcore-demo.db with a sample year" in out
    for section in (
        "Forecast by quarter",
        "Campaign effectiveness",
        "Lead-source effectiveness",
        "Effectiveness by type of deal",
        "Funnel of pipeline 'b2b'",
        "Pipeline movement over 2026-Q4",
    ):
        assert section in out


def test_demo_run_again_reports_on_the_sample_it_made(tmp_path: Path) -> None:
    """The second demo leaves its store as it is and prints the same reports."""
    first = oppcore("demo", cwd=tmp_path)
    store = tmp_path / DEMO_DB
    filled = digest(store)
    second = oppcore("demo", cwd=tmp_path)

    first_lines, second_lines = ok(first).splitlines(), ok(second).splitlines()
    assert first_lines[0] == (
        "Filled oppcore-demo.db with a sample year (2026-01-05 to 2027-01-05): "
        "300 opportunities, 519 leads, 6 campaigns, 2 pipelines."
    )
    assert second_lines[0] == "Reporting on the sample already in oppcore-demo.db."
    assert first_lines[1:] == second_lines[1:]
    assert first_lines[-1].startswith("Next: oppcore show --store oppcore-demo.db opp-0001")
    assert digest(store) == filled
    assert first.stderr == second.stderr == ""


def test_demo_report_is_the_report_as_of_the_end_of_its_sample_year(
    demo: tuple[Path, str], tmp_path: Path
) -> None:
    """The tables the demo prints are what `report --as-of` the sample's last day prints."""
    store, first = demo
    report = ok(oppcore("report", "--store", store, "--as-of", "2027-01-05", cwd=tmp_path))

    body = first.splitlines()[1:-2]  # without "Filled ..." and the closing hint
    assert report.splitlines() == body
    assert report.startswith("oppcore report (as of 2027-01-05)\n")


@pytest.mark.parametrize("name", ["elsewhere.db", "elsewhere.jsonl"])
def test_demo_with_store_fills_that_store_only(tmp_path: Path, name: str) -> None:
    """`demo --store PATH` fills PATH, not oppcore-demo.db, and reports on it next time."""
    first = ok(oppcore("demo", "--store", name, cwd=tmp_path))
    second = ok(oppcore("demo", "--store", name, cwd=tmp_path))

    assert first.startswith(f"Filled {name} with a sample year")
    assert second.startswith(f"Reporting on the sample already in {name}.")
    assert f"oppcore show --store {name} opp-0001" in first
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(name)) == []
    assert (tmp_path / name).is_file()
    verified = ok(oppcore("verify", "--store", name, cwd=tmp_path))
    assert "sound. 300 opportunities, 519 leads, 6 campaigns, 2 pipelines" in verified


def test_demo_fills_an_empty_store(tmp_path: Path) -> None:
    """An empty file is an empty store: the demo fills it."""
    (tmp_path / "empty.db").touch()

    out = ok(oppcore("demo", "--store", "empty.db", cwd=tmp_path))

    assert out.startswith("Filled empty.db with a sample year")


def test_demo_refuses_a_store_holding_other_data_and_leaves_it_unchanged(
    tmp_path: Path,
) -> None:
    """A store made by `import` is not the demo's: one clear error, not a byte changed."""
    store = salesforce_store(tmp_path)
    before = digest(store)
    files = sorted(p.name for p in tmp_path.iterdir())

    result = oppcore("demo", "--store", "sf.db", cwd=tmp_path)

    assert_one_line_error(result, "'sf.db' holds other data", "--store")
    assert digest(store) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == files


def test_demo_refuses_other_deals_that_share_the_sample_ids(tmp_path: Path) -> None:
    """A store of the user's own deals named opp-0001 to opp-0300 is not the demo's sample.

    DESIGN §6: the demo "refuses a store holding other data".  Here no lead, campaign or
    pipeline of the sample is stored, and no deal is the sample's, yet the ids match.
    """
    rows = ["id,name,stage,created_at"] + [
        f"opp-{n:04d},My own deal {n},wait,2026-03-01T00:00:00+00:00" for n in range(1, 301)
    ]
    (tmp_path / "mine.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    imported = oppcore(
        "import", "mine.csv", "--store", "mine.db", "--mapping", "oppcore", cwd=tmp_path
    )
    assert ok(imported).startswith("Imported 300 opportunities")
    before = digest(tmp_path / "mine.db")

    result = oppcore("demo", "--store", "mine.db", cwd=tmp_path)

    assert_one_line_error(result, "holds other data")
    assert digest(tmp_path / "mine.db") == before


def test_demo_piped_into_a_reader_that_stops_early_is_not_an_error(tmp_path: Path) -> None:
    """`oppcore demo | head -1` exits cleanly, with no broken-pipe traceback."""
    result = subprocess.run(
        f"{sys.executable} -m oppcore demo | head -1",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )

    assert "Filled oppcore-demo.db" in result.stdout
    assert "Traceback" not in result.stderr
    assert result.stderr == ""
    assert result.returncode == 0


@pytest.mark.parametrize(
    "command",
    [
        ["show", "--store", DEMO_DB, "opp-0001"],
        ["export", "--store", DEMO_DB, "--history"],
        ["report", "--store", DEMO_DB, "--format", "csv", "--period", "week"],
    ],
    ids=["show", "export-history", "report-csv"],
)
def test_other_commands_piped_into_head_exit_cleanly(
    demo: tuple[Path, str], tmp_path: Path, command: list[str]
) -> None:
    """A reader that stops early is not an error for the commands that print a lot either."""
    shutil.copy(demo[0], tmp_path / DEMO_DB)
    line = " ".join([sys.executable, "-m", "oppcore", *command, "| head -1"])
    result = subprocess.run(
        f"set -o pipefail; {line}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )

    assert result.stderr == ""
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 1


# -- import -----------------------------------------------------------------------------


def test_import_maven_with_opened_at_imports_every_row(maven_store: tuple[Path, str]) -> None:
    """The Maven file with --opened-at: 8,800 deals in the issue's stage counts, none rejected."""
    store, out = maven_store

    assert out == "Imported 8800 opportunities into maven.db; 0 rows rejected.\n"
    exported = ok(oppcore("export", "--store", store, cwd=store.parent))
    stages = Counter(row["stage"] for row in csv.DictReader(io.StringIO(exported)))
    assert stages == {"won": 4238, "lost": 2473, "engaging": 1589, "prospecting": 500}


def test_report_json_on_maven_gives_the_analytics_i_figures(
    maven_store: tuple[Path, str],
) -> None:
    """One JSON object, a key per section, and the Analytics I figures in it."""
    store, _ = maven_store

    document = report_json("--store", store, cwd=store.parent)

    assert set(document) == set(SECTIONS)
    assert document["as_of"] is None
    # No deal has a campaign or a lead source: one row of every deal in each table.
    for name in ("campaigns", "lead_sources"):
        (everything,) = document[name]
        assert everything["key"] is None
        assert everything["opportunities"] == 8800
        assert (everything["won"], everything["lost"], everything["open"]) == (4238, 2473, 2089)
        assert round(Decimal(everything["win_rate"]), 4) == Decimal("0.6315")
        assert round(Decimal(everything["win_rate_all"]), 4) == Decimal("0.4816")
        assert amount(everything["won_revenue"]) == Decimal(10_005_534)
        assert everything["won_revenue"]["currency"] == "USD"
        assert round(amount(everything["avg_won_deal"]), 2) == Decimal("2360.91")
        assert round(Decimal(everything["avg_cycle_days"]), 2) == Decimal("51.78")

    types = document["types"]
    assert {row["key"] for row in types} >= {"GTX Pro", "GTX Basic", "GTK 500"}
    assert "GTXPro" not in {row["key"] for row in types}
    assert sum(row["opportunities"] for row in types) == 8800
    assert sum(row["won"] for row in types) == 4238
    assert sum(row["lost"] for row in types) == 2473
    assert sum(amount(row["won_revenue"]) for row in types) == Decimal(10_005_534)

    forecast = document["forecast"]
    assert sum(row["won_count"] for row in forecast) == 4238
    assert sum(row["lost_count"] for row in forecast) == 2473
    assert sum(amount(row["won"]) for row in forecast) == Decimal(10_005_534)
    won_over_closed = Decimal(4238) / Decimal(4238 + 2473)
    assert round(won_over_closed * 100, 2) == Decimal("63.15")

    (maven,) = document["funnel"].values()
    assert [row["stage"] for row in maven] == ["prospecting", "engaging"]
    assert maven[0]["reached"] == 8800
    assert maven[0]["advanced"] == 8300
    assert maven[1]["won"] == 4238
    assert set(document["movement"]) >= {"period", "counts", "entries", "won", "lost"}


def test_import_maven_without_opened_at_lists_the_rejected_rows(
    shared_data: Path, tmp_path: Path
) -> None:
    """Without --opened-at the 500 Prospecting rows are rejected, each with its line."""
    source = shared_data / "maven_crm" / "sales_pipeline.csv"
    if not source.is_file():
        pytest.skip(f"{source} is absent")

    out = ok(oppcore("import", source, "--store", "m.db", "--mapping", "maven", cwd=tmp_path))

    lines = out.splitlines()
    assert lines[0] == "Imported 8300 opportunities into m.db; 500 rows rejected."
    rejected = lines[1:]
    assert len(rejected) == 500
    numbers = []
    for line in rejected:
        match = re.fullmatch(r"  line (\d+): (.+)", line)
        assert match, line
        numbers.append(int(match[1]))
        assert "no time it opened" in match[2]
        assert "engage_date" in match[2]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == 500
    # The line numbers are physical lines of the file (header = 1): those rows are Prospecting.
    file_lines = source.read_text(encoding="utf-8").splitlines()
    for number in numbers[:5] + numbers[-5:]:
        assert ",Prospecting,," in file_lines[number - 1]


def test_import_a_salesforce_export_with_a_rejected_row(tmp_path: Path) -> None:
    """The Salesforce preset reads API-name headers; an unknown stage is a rejected row."""
    (tmp_path / "sf.csv").write_text(SALESFORCE_CSV, encoding="utf-8")

    out = ok(
        oppcore("import", "sf.csv", "--store", "sf.db", "--mapping", "salesforce", cwd=tmp_path)
    )

    lines = out.splitlines()
    assert lines[0] == "Imported 4 opportunities into sf.db; 1 row rejected."
    assert len(lines) == 2
    assert lines[1].startswith("  line 6: ")
    assert "'Dreaming'" in lines[1]
    shown = ok(oppcore("show", "--store", "sf.db", "006A", cwd=tmp_path))
    assert "Acme renewal  (006A" in shown
    assert "1,000.00 USD" in shown


def test_import_currency_names_the_currency_of_amounts_the_file_does_not(
    tmp_path: Path,
) -> None:
    """Without a currency column, amounts need --currency; with it, they are read in it."""
    rows = [line.split(",") for line in SALESFORCE_CSV.splitlines()]
    without = "\n".join(",".join(row[:4] + row[5:]) for row in rows) + "\n"
    (tmp_path / "plain.csv").write_text(without, encoding="utf-8")

    refused = ok(
        oppcore("import", "plain.csv", "--store", "a.db", "--mapping", "salesforce", cwd=tmp_path)
    )
    read = ok(
        oppcore(
            "import",
            "plain.csv",
            "--store",
            "b.db",
            "--mapping",
            "salesforce",
            "--currency",
            "USD",
            cwd=tmp_path,
        )
    )

    assert refused.splitlines()[0] == "Imported 0 opportunities into a.db; 5 rows rejected."
    assert "has no currency" in refused.splitlines()[1]
    assert read.splitlines()[0] == "Imported 4 opportunities into b.db; 1 row rejected."
    forecast = report_json("--store", "b.db", "--as-of", "2026-06-30", cwd=tmp_path)["forecast"]
    assert {row["won"]["currency"] for row in forecast} == {"USD"}
    assert sum(amount(row["pipeline"]) for row in forecast) == Decimal(37_000)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="TOML mappings need tomllib")
def test_import_with_a_toml_mapping_file(tmp_path: Path) -> None:
    """A TOML mapping names the columns, stage values, date format and currency."""
    (tmp_path / "crm.csv").write_text(MY_CRM_CSV, encoding="utf-8")
    (tmp_path / "crm.toml").write_text(MY_CRM_TOML, encoding="utf-8")

    out = ok(
        oppcore("import", "crm.csv", "--store", "crm.db", "--mapping", "crm.toml", cwd=tmp_path)
    )

    lines = out.splitlines()
    assert lines[0] == "Imported 4 opportunities into crm.db; 2 rows rejected."
    assert lines[1].startswith("  line 6: ")
    assert "'Maybe'" in lines[1]
    assert lines[2].startswith("  line 7: ")
    assert "no time it opened" in lines[2]
    document = report_json("--store", "crm.db", "--as-of", "2026-03-31", cwd=tmp_path)
    (everything,) = document["campaigns"]
    assert (everything["won"], everything["lost"], everything["open"]) == (1, 1, 2)
    assert everything["won_revenue"] == {"amount": "1200.50", "currency": "EUR"}
    # 05/01/2026 is the 5th of January (the mapping's %d/%m/%Y): won on 20 February.
    assert Decimal(everything["avg_cycle_days"]) == 46
    assert {row["key"] for row in document["lead_sources"]} == {"Web", "Partner", "Referral"}


# -- report -----------------------------------------------------------------------------


def test_report_table_by_month_as_of_a_day(demo: tuple[Path, str], tmp_path: Path) -> None:
    """The table form: a header naming the day, then every section by month."""
    store, _ = demo

    out = ok(
        oppcore(
            "report", "--store", store, "--period", "month", "--as-of", "2026-09-15", cwd=tmp_path
        )
    )

    assert out.startswith("oppcore report (as of 2026-09-15)\n\nForecast by month\n")
    for title in TABLE_TITLES:
        assert f"\n{title}\n" in out
    assert "\nPipeline movement over 2026-08 (deals expected to close in it)\n" in out
    forecast = out.split("\n\n")[1].splitlines()[3:]  # below the title and the header
    periods = [line.split()[0] for line in forecast]
    assert "2026-09" in periods
    assert all(re.fullmatch(r"\d{4}-\d\d", period) for period in periods), periods


def test_report_csv_with_a_fiscal_year_starting_in_october(
    demo: tuple[Path, str], tmp_path: Path
) -> None:
    """The CSV form: one `# name` section per report; fiscal quarters start in October."""
    store, _ = demo

    out = ok(
        oppcore(
            "report",
            "--store",
            store,
            "--format",
            "csv",
            "--fiscal-start",
            "10",
            "--as-of",
            "2026-11-15",
            cwd=tmp_path,
        )
    )

    sections = csv_sections(out)
    assert list(sections) == [
        "forecast",
        "campaigns",
        "lead_sources",
        "types",
        "funnel:b2b",
        "funnel:default",
        "movement",
    ]
    periods = [row["period"] for row in sections["forecast"]]
    assert all(re.fullmatch(r"FY20\d\d-Q[1-4]", period) for period in periods)
    assert "FY2027-Q1" in periods  # October to December 2026
    assert {row["bucket"] for row in sections["movement"]} >= {"opening", "won", "lost"}
    assert "won_revenue_currency" in sections["campaigns"][0]
    types = {row["key"]: row for row in sections["types"]}
    assert set(types) == {"new_customer", "renewal", "upsell"}

    document = report_json(
        "--store", store, "--fiscal-start", "10", "--as-of", "2026-11-15", cwd=tmp_path
    )
    assert document["movement"]["period"] == "FY2026-Q4"  # July to September 2026
    assert [row["period"] for row in document["forecast"]] == periods
    assert [row["won_count"] for row in document["forecast"]] == [
        int(row["won_count"]) for row in sections["forecast"]
    ]
    assert [amount(row["won"]) for row in document["forecast"]] == [
        Decimal(row["won"]) for row in sections["forecast"]
    ]
    assert {
        bucket: int(row["count"]) for row in sections["movement"] for bucket in [row["bucket"]]
    } == document["movement"]["counts"]


def test_report_json_as_of_a_day_and_by_month(demo: tuple[Path, str], tmp_path: Path) -> None:
    """The JSON form: one object, a key per section; --as-of sees only what had happened."""
    store, _ = demo

    earlier = report_json(
        "--store", store, "--period", "month", "--as-of", "2026-06-15", cwd=tmp_path
    )
    later = report_json("--store", store, "--as-of", "2027-01-05", cwd=tmp_path)

    assert set(earlier) == set(later) == set(SECTIONS)
    assert earlier["as_of"] == "2026-06-15T23:59:59.999999+00:00"
    assert earlier["movement"]["period"] == "2026-05"
    assert later["movement"]["period"] == "2026-Q4"
    assert all(re.fullmatch(r"\d{4}-\d\d", row["period"]) for row in earlier["forecast"])
    assert set(earlier["funnel"]) == set(later["funnel"]) == {"b2b", "default"}
    total_later = sum(row["opportunities"] for row in later["types"])
    total_earlier = sum(row["opportunities"] for row in earlier["types"])
    assert total_later == 300
    assert 0 < total_earlier < total_later
    won_earlier = sum(row["won_count"] for row in earlier["forecast"])
    won_later = sum(row["won_count"] for row in later["forecast"])
    assert won_earlier < won_later
    assert won_later == sum(row["won"] for row in later["types"])


def test_report_converts_a_mixed_currency_store_with_rates(tmp_path: Path) -> None:
    """Deals in THB and USD: --currency THB --rates RATES.csv sums them in THB."""
    salesforce_store(tmp_path)

    table = ok(
        oppcore(
            "report",
            "--store",
            "sf.db",
            "--currency",
            "THB",
            "--rates",
            "rates.csv",
            "--as-of",
            "2026-06-30",
            cwd=tmp_path,
        )
    )
    document = report_json(
        "--store",
        "sf.db",
        "--currency",
        "THB",
        "--rates",
        "rates.csv",
        "--as-of",
        "2026-06-30",
        cwd=tmp_path,
    )

    assert "USD" not in table
    assert "35,000.00 THB" in table  # the won 1,000 USD at 35
    forecast = document["forecast"]
    cells = [row[key] for row in forecast for key in ("pipeline", "weighted", "won")]
    assert {cell["currency"] for cell in cells} == {"THB"}
    assert sum(amount(row["won"]) for row in forecast) == Decimal(35_000)
    # Open: 2,000 USD (70,000 THB) and 35,000 THB.
    assert sum(amount(row["pipeline"]) for row in forecast) == Decimal(105_000)


def test_report_on_mixed_currencies_needs_a_currency_and_rates(tmp_path: Path) -> None:
    """Nothing is summed across currencies: one clear error names them."""
    salesforce_store(tmp_path)

    without = oppcore("report", "--store", "sf.db", cwd=tmp_path)
    no_rates = oppcore("report", "--store", "sf.db", "--currency", "THB", cwd=tmp_path)

    assert_one_line_error(without, "THB", "USD")
    assert_one_line_error(no_rates, "USD")


def test_rates_without_currency_is_an_error(demo: tuple[Path, str], tmp_path: Path) -> None:
    (tmp_path / "rates.csv").write_text(RATES_CSV, encoding="utf-8")

    result = oppcore("report", "--store", demo[0], "--rates", "rates.csv", cwd=tmp_path)

    assert_one_line_error(result, "--rates needs --currency")


def test_report_chart_writes_png_files(demo: tuple[Path, str], tmp_path: Path) -> None:
    """--chart DIR creates DIR and writes a PNG per chart, naming each on stderr."""
    store, _ = demo

    result = oppcore("report", "--store", store, "--chart", "charts/q", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("oppcore report (now)")
    folder = tmp_path / "charts" / "q"
    names = sorted(path.name for path in folder.iterdir())
    assert names == [
        "campaigns.png",
        "forecast.png",
        "funnel-b2b.png",
        "funnel-default.png",
        "movement.png",
    ]
    for name in names:
        data = (folder / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 1000
    assert sorted(result.stderr.splitlines()) == sorted(
        f"wrote {Path('charts/q') / name}" for name in names
    )


def test_report_never_changes_the_store(tmp_path: Path) -> None:
    """Reports read: the store's bytes are the same afterwards."""
    store = salesforce_store(tmp_path)
    before = digest(store)

    options = ("--store", "sf.db", "--currency", "THB", "--rates", "rates.csv")
    for form in ("table", "csv", "json"):
        ok(oppcore("report", *options, "--format", form, cwd=tmp_path))

    assert digest(store) == before


# -- show -------------------------------------------------------------------------------


def test_show_prints_a_deal_and_its_history(demo: tuple[Path, str], tmp_path: Path) -> None:
    """show: the deal's state, its line items, every event in order and days per stage."""
    store, _ = demo

    out = ok(oppcore("show", "--store", store, "opp-0001", cwd=tmp_path))

    lines = out.splitlines()
    assert "(opp-0001, " in lines[0]
    assert lines[1].startswith("  Lost / ")
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("v  when (UTC)"))
    assert set(lines[header + 1]) == {"-"}
    events = []
    for line in lines[header + 2 :]:
        if not line:
            break
        events.append(line.split())
    assert [int(event[0]) for event in events] == list(range(1, len(events) + 1))
    assert events[0][3] == "Opened"
    assert events[-1][3] == "Lost"
    assert "Days in each stage:" in lines
    history = ok(oppcore("export", "--store", store, "--history", cwd=tmp_path))
    rows = [r for r in csv.DictReader(io.StringIO(history)) if r["opportunity_id"] == "opp-0001"]
    assert [row["event"] for row in rows] == [event[3] for event in events]


def test_show_an_unknown_id_is_one_clear_error(demo: tuple[Path, str], tmp_path: Path) -> None:
    result = oppcore("show", "--store", demo[0], "opp-9999", cwd=tmp_path)

    assert_one_line_error(result, "'opp-9999'")


# -- export -----------------------------------------------------------------------------


def test_export_csv_to_a_file_and_to_stdout(demo: tuple[Path, str], tmp_path: Path) -> None:
    """export --format csv: one row per deal, the same bytes to a file as to stdout."""
    store, _ = demo

    printed = oppcore("export", "--store", store, "--format", "csv", cwd=tmp_path)
    written = oppcore(
        "export", "--store", store, "--format", "csv", "-o", "deals.csv", cwd=tmp_path
    )

    assert ok(written) == ""
    assert written.stderr == "wrote deals.csv\n"
    assert printed.stderr == ""
    text = (tmp_path / "deals.csv").read_text(encoding="utf-8")
    assert text == ok(printed)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 300
    assert rows[0]["id"] == "opp-0001"
    assert {row["pipeline"] for row in rows} == {"b2b", "default"}


def test_export_json_to_a_file_and_to_stdout(demo: tuple[Path, str], tmp_path: Path) -> None:
    """export --format json: the whole store as one document."""
    store, _ = demo

    printed = oppcore("export", "--store", store, "--format", "json", cwd=tmp_path)
    written = oppcore(
        "export", "--store", store, "--format", "json", "--output", "store.json", cwd=tmp_path
    )

    assert written.returncode == 0
    assert written.stderr == "wrote store.json\n"
    text = (tmp_path / "store.json").read_text(encoding="utf-8")
    assert text == ok(printed)
    document = json.loads(text)
    assert document["format"] == "oppcore-document"
    assert len(document["opportunities"]) == 300
    assert len(document["leads"]) == 519
    assert len(document["campaigns"]) == 6
    assert len(document["pipelines"]) == 2


@pytest.mark.skipif(sys.version_info < (3, 11), reason="TOML mappings need tomllib")
def test_exported_csv_imports_back_into_the_same_report(tmp_path: Path) -> None:
    """What export writes, `import --mapping oppcore` reads back: the report is identical."""
    (tmp_path / "crm.csv").write_text(MY_CRM_CSV, encoding="utf-8")
    (tmp_path / "crm.toml").write_text(MY_CRM_TOML, encoding="utf-8")
    ok(oppcore("import", "crm.csv", "--store", "a.db", "--mapping", "crm.toml", cwd=tmp_path))

    ok(oppcore("export", "--store", "a.db", "-o", "a.csv", cwd=tmp_path))
    back = ok(oppcore("import", "a.csv", "--store", "b.db", "--mapping", "oppcore", cwd=tmp_path))

    assert back == "Imported 4 opportunities into b.db; 0 rows rejected.\n"
    for form in ("table", "csv", "json"):
        reports = [
            ok(
                oppcore(
                    "report",
                    "--store",
                    name,
                    "--format",
                    form,
                    "--as-of",
                    "2026-03-31",
                    cwd=tmp_path,
                )
            )
            for name in ("a.db", "b.db")
        ]
        assert reports[0] == reports[1]


def test_exported_salesforce_store_imports_back_into_the_same_report(tmp_path: Path) -> None:
    """The round trip holds for deals of a stock pipeline other than 'default' too.

    `import --mapping oppcore` is documented as reading "what export writes"; the command
    has no way to name the pipeline, so every row must come back.
    """
    salesforce_store(tmp_path)
    ok(oppcore("export", "--store", "sf.db", "-o", "sf-out.csv", cwd=tmp_path))

    back = ok(
        oppcore("import", "sf-out.csv", "--store", "back.db", "--mapping", "oppcore", cwd=tmp_path)
    )

    assert back == "Imported 4 opportunities into back.db; 0 rows rejected.\n"
    options = ("--currency", "THB", "--rates", "rates.csv", "--as-of", "2026-06-30")
    before = ok(oppcore("report", "--store", "sf.db", *options, "--format", "json", cwd=tmp_path))
    after = ok(oppcore("report", "--store", "back.db", *options, "--format", "json", cwd=tmp_path))
    assert before == after


# -- verify -----------------------------------------------------------------------------


def test_verify_a_sound_store(demo: tuple[Path, str], tmp_path: Path) -> None:
    store, _ = demo

    out = ok(oppcore("verify", "--store", store, cwd=tmp_path))

    assert out.splitlines() == [
        f"{store}: sound. 300 opportunities, 519 leads, 6 campaigns, 2 pipelines; every "
        "record reads and every history replays.",
        "The deal table reflects every event.",
    ]


def test_verify_says_when_the_deal_table_is_not_built_yet_and_builds_nothing(
    tmp_path: Path,
) -> None:
    """A store oppcore 0.1 wrote: sound, its table not built yet (verify writes nothing)."""
    import hashlib
    import shutil

    path = tmp_path / "old.db"
    shutil.copyfile(Path(__file__).parent / "fixtures" / "format1" / "store.db", path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    out = ok(oppcore("verify", "--store", "old.db", cwd=tmp_path))
    assert out.splitlines()[-1].startswith("The deal table is not built yet: the first query")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param("'{not json'", id="not-json"),
        pytest.param("'{\"x\": 1}'", id="wrong-shape"),
        pytest.param(
            'replace(payload, \'"to_stage":"lost"\', \'"to_stage":"nowhere"\')',
            id="does-not-replay",
        ),
    ],
)
def test_verify_names_the_damaged_stream_and_changes_nothing(
    demo: tuple[Path, str], tmp_path: Path, payload: str
) -> None:
    """One damaged record: verify exits 1, names its stream, and leaves the file as it was."""
    store = tmp_path / "damaged.db"
    shutil.copy(demo[0], store)
    with sqlite3.connect(store) as connection:
        changed = connection.execute(
            f"UPDATE events SET payload = {payload} WHERE stream_id = 'opp-0002' AND version = 2"
        ).rowcount
    connection.close()
    assert changed == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.db"]
    before = digest(store)

    result = oppcore("verify", "--store", "damaged.db", cwd=tmp_path)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("damaged.db: ")
    assert lines[-1].endswith("found; the store was not changed.")
    problems = lines[:-1]
    assert problems
    assert all("opp-0002" in problem for problem in problems), problems
    assert not any("opp-0001" in problem or "opp-0003" in problem for problem in problems)
    assert digest(store) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.db"]


# -- a store that is not there ----------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["report", "--store", "missing.db"],
        ["report", "--store", "missing.jsonl", "--format", "json"],
        ["show", "--store", "missing.db", "opp-0001"],
        ["verify", "--store", "missing.db"],
        ["verify", "--store", "missing.jsonl"],
        ["export", "--store", "missing.db", "-o", "out.csv"],
        ["export", "--store", "missing.db", "--format", "json"],
        ["report", "--store", "no/such/folder/missing.db"],
    ],
)
def test_a_missing_store_is_one_clear_error_and_nothing_is_created(
    tmp_path: Path, command: list[str]
) -> None:
    """report, show, verify and export never create a store that does not exist."""
    result = oppcore(*command, cwd=tmp_path)

    assert_one_line_error(result, "no store at")
    assert list(tmp_path.iterdir()) == []


# -- help -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ([], ["demo", "import", "report", "show", "export", "verify"]),
        (["demo"], ["--store", "oppcore-demo.db"]),
        (["import"], ["CSV", "--store", "--mapping", "--opened-at", "--currency"]),
        (
            ["report"],
            [
                "--store",
                "--period",
                "--fiscal-start",
                "--as-of",
                "--currency",
                "--rates",
                "--format",
                "--chart",
            ],
        ),
        (["show"], ["--store", "ID"]),
        (["export"], ["--store", "--format", "--history", "--output"]),
        (["verify"], ["--store"]),
    ],
    ids=["oppcore", "demo", "import", "report", "show", "export", "verify"],
)
def test_help_on_every_command(tmp_path: Path, command: list[str], words: list[str]) -> None:
    result = oppcore(*command, "--help", cwd=tmp_path)

    out = ok(result)
    assert result.stderr == ""
    assert out.startswith(" ".join(["usage: oppcore", *command]))
    for word in words:
        assert word in out
    assert list(tmp_path.iterdir()) == []


# -- user mistakes ----------------------------------------------------------------------


def test_no_command_is_a_usage_error_without_a_traceback(tmp_path: Path) -> None:
    """Running oppcore with no command prints usage on stderr and exits non-zero."""
    result = subprocess.run(
        [sys.executable, "-m", "oppcore"], capture_output=True, text=True, check=False, cwd=tmp_path
    )

    assert result.returncode == 2
    assert "usage: oppcore" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_command_is_one_clear_error(tmp_path: Path) -> None:
    """An unknown command names itself and exits non-zero."""
    result = subprocess.run(
        [sys.executable, "-m", "oppcore", "dance"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )

    assert result.returncode == 2
    assert "invalid choice: 'dance'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("command", "needles"),
    [
        (
            ["report", "--store", "{demo}", "--as-of", "2026-13-01"],
            ["--as-of", "'2026-13-01'", "YYYY-MM-DD"],
        ),
        (["report", "--store", "{demo}", "--as-of", "tomorrow"], ["--as-of", "'tomorrow'"]),
        (["report", "--store", "{demo}", "--period", "fortnight"], ["--period", "'fortnight'"]),
        (["report", "--store", "{demo}", "--fiscal-start", "13"], ["--fiscal-start", "'13'"]),
        (["report", "--store", "{demo}", "--fiscal-start", "0"], ["--fiscal-start", "'0'"]),
        (["report", "--store", "{demo}", "--fiscal-start", "-1"], ["--fiscal-start"]),
        (["report", "--store", "{demo}", "--format", "xml"], ["--format", "'xml'"]),
        (["report"], ["--store"]),
        (["show", "--store", "{demo}"], ["ID"]),
        (
            [
                "import",
                "sf.csv",
                "--store",
                "new.db",
                "--mapping",
                "salesforce",
                "--opened-at",
                "2026-02-30",
            ],
            ["--opened-at", "'2026-02-30'"],
        ),
        (["export", "--store", "{demo}", "--format", "xlsx"], ["--format", "'xlsx'"]),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, list) else None,
)
def test_bad_arguments_are_a_usage_error(
    demo: tuple[Path, str], tmp_path: Path, command: list[str], needles: list[str]
) -> None:
    """argparse rejects them: usage, one error line naming the argument, exit 2."""
    (tmp_path / "sf.csv").write_text(SALESFORCE_CSV, encoding="utf-8")
    args = [arg.replace("{demo}", str(demo[0])) for arg in command]

    result = oppcore(*args, cwd=tmp_path)

    assert_usage_error(result, *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sf.csv"]


def _mistake_files(folder: Path, demo_store: Path) -> None:
    (folder / "sf.csv").write_text(SALESFORCE_CSV, encoding="utf-8")
    (folder / "rates.csv").write_text(RATES_CSV, encoding="utf-8")
    (folder / "bad-rates.csv").write_text("base,quote,date,rate\nUSD,THB,soon,35\n", "utf-8")
    (folder / "broken.toml").write_text('name = "x"\n[columns\n', encoding="utf-8")
    (folder / "unknown-key.toml").write_text('foo = 1\n[columns]\nid = "Id"\n', "utf-8")
    (folder / "junk.db").write_text("this is not a database\n", encoding="utf-8")
    (folder / "folder.db").mkdir()
    (folder / "folder.csv").mkdir()
    shutil.copy(demo_store, folder / DEMO_DB)


@pytest.mark.parametrize(
    ("command", "needles"),
    [
        (["import", "sf.csv", "--store", "new.db", "--mapping", "hubspot"], ["'hubspot'"]),
        (
            ["import", "missing.csv", "--store", "new.db", "--mapping", "salesforce"],
            ["'missing.csv'"],
        ),
        (
            ["import", "sf.csv", "--store", "new.db"],
            ["--mapping"],
        ),
        (
            ["import", "folder.csv", "--store", "new.db", "--mapping", "salesforce"],
            ["'folder.csv'"],
        ),
        (
            ["import", "sf.csv", "--store", "new.db", "--mapping", "missing.toml"],
            ["'missing.toml'"],
        ),
        (
            ["import", "sf.csv", "--store", "new.db", "--mapping", "broken.toml"],
            ["'broken.toml'", "TOML"],
        ),
        (["import", "sf.csv", "--store", "new.db", "--mapping", "unknown-key.toml"], ["'foo'"]),
        (["import", "sf.csv", "--store", "new.db", "--mapping", "maven"], ["'opportunity_id'"]),
        (["import", "sf.csv", "--store", "folder.db", "--mapping", "salesforce"], ["'folder.db'"]),
        (["import", "sf.csv", "--store", "new.txt", "--mapping", "salesforce"], ["'new.txt'"]),
        (
            ["import", "sf.csv", "--store", "no/such/new.db", "--mapping", "salesforce"],
            ["no/such/new.db"],
        ),
        (["report", "--store", "folder.db"], ["'folder.db'"]),
        (["report", "--store", "junk.db"], ["'junk.db'", "not a database"]),
        (["show", "--store", "junk.db", "opp-0001"], ["'junk.db'"]),
        (["verify", "--store", "junk.db"], ["'junk.db'"]),
        (["export", "--store", "junk.db"], ["'junk.db'"]),
        (["demo", "--store", "junk.db"], ["'junk.db'"]),
        (["demo", "--store", "folder.db"], ["'folder.db'"]),
        (["demo", "--store", "sample.txt"], ["'sample.txt'"]),
        (
            ["report", "--store", DEMO_DB, "--currency", "THB", "--rates", "missing.csv"],
            ["'missing.csv'"],
        ),
        (
            ["report", "--store", DEMO_DB, "--currency", "THB", "--rates", "bad-rates.csv"],
            ["'bad-rates.csv'", "line 2"],
        ),
        (["report", "--store", DEMO_DB, "--currency", "XX", "--rates", "rates.csv"], ["'XX'"]),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, list) else None,
)
def test_user_mistakes_are_one_clear_line(
    demo: tuple[Path, str], tmp_path: Path, command: list[str], needles: list[str]
) -> None:
    """A mistake the command finds: one line `oppcore: ...`, exit 1, nothing created or changed."""
    _mistake_files(tmp_path, demo[0])
    before = {p.name: (digest(p) if p.is_file() else "dir") for p in tmp_path.iterdir()}

    result = oppcore(*command, cwd=tmp_path)

    assert_one_line_error(result, *needles)
    after = {p.name: (digest(p) if p.is_file() else "dir") for p in tmp_path.iterdir()}
    assert after == before
    assert list((tmp_path / "folder.db").iterdir()) == []

"""The ``oppcore`` command: ``demo``, ``import``, ``report``, ``show``, ``export``, ``verify``.

User mistakes print one clear line on stderr and exit non-zero, never a traceback.
``report``, ``show`` and ``verify`` never create a store that does not exist.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import IO, Any

import attrs

from oppcore import analytics, sample
from oppcore.analytics import FiscalCalendar, Period, Table
from oppcore.clock import FixedClock
from oppcore.domain import ExchangeRates, Money, Opportunity, Pipeline
from oppcore.exceptions import (
    ConcurrencyError,
    NotFoundError,
    OppcoreError,
    StorageError,
    ValidationError,
)
from oppcore.storage import Repository, open_repository

DEMO_STORE = "oppcore-demo.db"
_UTC = timezone.utc

# -- arguments -------------------------------------------------------------------------


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date; write it as YYYY-MM-DD"
        ) from None


def _fiscal_start(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 12:
        raise argparse.ArgumentTypeError(f"{text!r} is not a month number from 1 to 12")
    return int(text)


def _end_of(day: date) -> datetime:
    """The last moment of ``day`` in UTC: a report "as of" a day includes all of it."""
    return datetime.combine(day, time.max, _UTC)


def _shown(store: str) -> str:
    """The store as messages name it: a database URL without its password."""
    if store.lower().startswith(("postgresql://", "postgres://")):
        from oppcore.storage.postgres import redacted

        return redacted(store)
    return store


def _existing(path: str) -> Repository:
    """Open a store that must already exist (``report``, ``show``, ``verify``, ``export``);
    a ``postgresql://`` URL names a database, whose tables are made on first use."""
    if path.lower().startswith(("postgresql://", "postgres://")):
        return open_repository(path)
    if not Path(path).is_file():
        raise NotFoundError(f"There is no store at {path!r}; check the path (nothing was created).")
    return open_repository(path)


def _read_rates(path: str) -> ExchangeRates:
    """Rates from a CSV with the columns base, quote, date, rate (one rate per line)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise StorageError(f"Cannot read rates file {path!r}: {exc.strerror}.") from None
    except UnicodeDecodeError:
        raise ValidationError(f"Rates file {path!r} is not UTF-8 text.") from None
    entries = []
    for line, row in enumerate(rows, start=2):
        try:
            entries.append(
                (row["base"], row["quote"], date.fromisoformat(row["date"]), row["rate"])
            )
        except (KeyError, TypeError, ValueError):
            raise ValidationError(
                f"Rates file {path!r} line {line}: expected the columns base, quote, date "
                f"(YYYY-MM-DD) and rate, got {dict(row)!r}."
            ) from None
    return ExchangeRates(entries)


# -- reports ---------------------------------------------------------------------------

_EFFECTIVENESS_COLUMNS = (
    "key",
    "opportunities",
    "open",
    "won",
    "lost",
    "win_rate",
    "won_revenue",
    "pipeline",
    "weighted",
    "avg_cycle_days",
)
_CAMPAIGN_COLUMNS = (*_EFFECTIVENESS_COLUMNS, "cost", "roi")


@attrs.frozen
class _Options:
    period: str
    calendar: FiscalCalendar | None
    as_of: datetime | None
    currency: str | None
    rates: ExchangeRates | None


def _last_full_period(moment: datetime, options: _Options) -> Period:
    """The last period that had ended by ``moment`` (the one holding it, at its last instant)."""
    current = analytics.period_of(moment.date(), options.period, options.calendar)  # type: ignore[arg-type]
    if moment >= _end_of(current.end):
        return current
    return analytics.period_of(
        current.start - timedelta(days=1),
        options.period,  # type: ignore[arg-type]
        options.calendar,
    )


def _reports(repo: Repository, options: _Options, now: datetime) -> dict[str, Any]:
    """Every section of the report, by name: tables, and the movement."""
    opps = repo.opportunities()
    money: dict[str, Any] = {"currency": options.currency, "rates": options.rates}
    moment = options.as_of or now
    sections: dict[str, Any] = {
        "forecast": analytics.forecast(
            opps,
            period=options.period,  # type: ignore[arg-type]
            calendar=options.calendar,
            as_of=options.as_of,
            **money,
        ),
        "campaigns": analytics.campaign_effectiveness(
            opps, repo.campaigns(), as_of=options.as_of, **money
        ),
        "lead_sources": analytics.lead_source_effectiveness(opps, as_of=options.as_of, **money),
        "types": analytics.effectiveness(opps, by="type", as_of=options.as_of, **money),
    }
    standing = opps if options.as_of is None else analytics.snapshot(opps, as_of=options.as_of)
    by_pipeline: dict[str, list[Opportunity]] = {}
    for opp in standing:
        by_pipeline.setdefault(opp.pipeline.id, []).append(opp)
    for pipeline_id in sorted(by_pipeline):
        sections[f"funnel:{pipeline_id}"] = analytics.funnel(by_pipeline[pipeline_id])
    window = _last_full_period(moment, options)
    sections["movement"] = (
        window,
        analytics.pipeline_movement(
            opps,
            start=datetime.combine(window.start, time.min, _UTC),
            end=_end_of(window.end),
            window=window,
            **money,
        ),
    )
    return sections


_TITLES = {
    "forecast": "Forecast by {period}",
    "campaigns": "Campaign effectiveness",
    "lead_sources": "Lead-source effectiveness",
    "types": "Effectiveness by type of deal",
}


def _title(name: str, options: _Options) -> str:
    if name.startswith("funnel:"):
        return f"Funnel of pipeline {name.partition(':')[2]!r}"
    return _TITLES[name].format(period=options.period)


def _print_tables(sections: dict[str, Any], options: _Options, out: IO[str]) -> None:
    when = "now" if options.as_of is None else f"as of {options.as_of:%Y-%m-%d}"
    print(f"oppcore report ({when})", file=out)
    for name, value in sections.items():
        print(file=out)
        if name == "movement":
            window, movement = value
            print(
                f"Pipeline movement over {window.label} (deals expected to close in it)",
                file=out,
            )
            print(_without_title(movement.summary()), file=out)
        else:
            print(_title(name, options), file=out)
            print(_without_title(value, _NARROW.get(name, value.columns)), file=out)


# A terminal is narrow: the effectiveness tables show their main columns there (CSV and JSON
# carry every column).
_NARROW = {
    "campaigns": _CAMPAIGN_COLUMNS,
    "lead_sources": _EFFECTIVENESS_COLUMNS,
    "types": _EFFECTIVENESS_COLUMNS,
}


def _without_title(table: Table[Any], columns: Sequence[str] | None = None) -> str:
    return str(Table(table.rows, tuple(columns or table.columns), ""))


def _print_csv(sections: dict[str, Any], options: _Options, out: IO[str]) -> None:
    first = True
    for name, value in sections.items():
        if not first:
            print(file=out)
        first = False
        table = value[1].summary() if name == "movement" else value
        print(f"# {name}", file=out)
        buffer = io.StringIO()
        table.to_csv(buffer)
        out.write(buffer.getvalue().replace("\r\n", "\n"))


def _plain(value: object) -> Any:
    """A JSON value for one cell: exact amounts as text, so no cent is lost to a float."""
    if isinstance(value, Money):
        return {"amount": str(value.amount), "currency": value.currency}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Period):
        return value.label
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(Decimal(value.total_seconds()) / 86400)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _rows(table: Table[Any]) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in table.to_dicts()]


def _print_json(sections: dict[str, Any], options: _Options, out: IO[str]) -> None:
    document: dict[str, Any] = {
        "as_of": None if options.as_of is None else options.as_of.isoformat()
    }
    funnels: dict[str, Any] = {}
    for name, value in sections.items():
        if name == "movement":
            window, movement = value
            document["movement"] = {
                "period": window.label,
                **{row.bucket: _plain(row.amount) for row in movement.summary()},
                "counts": dict(movement.counts),
                "entries": _rows(movement.entries),
            }
        elif name.startswith("funnel:"):
            funnels[name.partition(":")[2]] = _rows(value)
        else:
            document[name] = _rows(value)
    document["funnel"] = funnels
    json.dump(document, out, ensure_ascii=False, indent=2)
    print(file=out)


def _write_charts(sections: dict[str, Any], folder: str) -> list[Path]:
    from oppcore import plot

    target = Path(folder)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"Cannot create the chart folder {folder!r}: {exc.strerror}.") from None
    figures: list[tuple[str, Any]] = [
        ("forecast", plot.forecast_chart(sections["forecast"])),
        ("campaigns", plot.effectiveness_chart(sections["campaigns"])),
        ("movement", plot.movement_chart(sections["movement"][1])),
    ]
    for name, value in sections.items():
        if name.startswith("funnel:"):
            figures.append((f"funnel-{name.partition(':')[2]}", plot.funnel_chart(value)))
    written = []
    for name, figure in figures:
        path = target / f"{_safe(name)}.png"
        try:
            figure.savefig(path, format="png", dpi=100, bbox_inches="tight")
        except OSError as exc:
            raise StorageError(f"Cannot write {str(path)!r}: {exc.strerror}.") from None
        written.append(path)
    return written


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


_PRINTERS: dict[str, Callable[[dict[str, Any], _Options, IO[str]], None]] = {
    "table": _print_tables,
    "csv": _print_csv,
    "json": _print_json,
}


def _options(args: argparse.Namespace) -> _Options:
    if (args.currency is None) != (args.rates is None) and args.rates is not None:
        raise ValidationError("--rates needs --currency: the currency to convert the deals to.")
    return _Options(
        period=args.period,
        calendar=None if args.fiscal_start is None else FiscalCalendar(args.fiscal_start),
        as_of=None if args.as_of is None else _end_of(args.as_of),
        currency=args.currency,
        rates=None if args.rates is None else _read_rates(args.rates),
    )


def _report(args: argparse.Namespace) -> int:
    options = _options(args)
    with _existing(args.store) as repo:
        sections = _reports(repo, options, datetime.now(_UTC))
    written = [] if args.chart is None else _write_charts(sections, args.chart)
    _PRINTERS[args.format](sections, options, sys.stdout)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


# -- demo ------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    path = args.store
    begin, end = sample.history_span()
    made = sample.generate()
    with open_repository(path, clock=FixedClock(end)) as repo:
        stored = set(repo.store.stream_ids())
        if not stored:
            repo.save_all(made.values())
            print(
                f"Filled {_shown(path)} with a sample year ({begin:%Y-%m-%d} to {end:%Y-%m-%d}): "
                f"{len(made.opportunities)} opportunities, {len(made.leads)} leads, "
                f"{len(made.campaigns)} campaigns, {len(made.pipelines)} pipelines."
            )
        elif _holds_only(repo, made, stored):
            print(f"Reporting on the sample already in {_shown(path)}.")
        else:
            raise ValidationError(
                f"{_shown(path)!r} holds other data than the demo's sample; the demo will not touch "
                "it. Pass --store with a new file name."
            )
        options = _Options("quarter", None, end - timedelta(microseconds=1), None, None)
        sections = _reports(repo, options, end)
    _print_tables(sections, options, sys.stdout)
    print()
    print(
        "Next: oppcore show --store "
        f"{path} {made.opportunities[0].id}  |  oppcore report --store {path} --format json"
    )
    return 0


def _holds_only(repo: Repository, made: sample.Sample, stored: set[str]) -> bool:
    """Whether the store holds the demo's sample and nothing else, deal for deal."""
    expected = {opp.id for opp in made.opportunities}
    expected |= {f"lead:{lead.id}" for lead in made.leads}
    expected |= {f"campaign:{campaign.id}" for campaign in made.campaigns}
    expected |= {f"pipeline:{pipeline.id}" for pipeline in made.pipelines}
    if stored != expected:
        return False
    held = {opp.id: opp for opp in repo.opportunities()}
    return all(held.get(opp.id) == opp for opp in made.opportunities)


# -- import, show, export, verify ------------------------------------------------------


def _import(args: argparse.Namespace) -> int:
    from oppcore import io as oppcore_io

    if args.file.lower().endswith(".json"):  # a whole-repository document from `export`
        with open_repository(args.store) as repo:
            before = sum(1 for _ in repo.store.stream_ids())
            _saving(args, lambda: oppcore_io.load_json(args.file, into=repo))
            after = sum(1 for _ in repo.store.stream_ids())
        print(
            f"Loaded {args.file} into {_shown(args.store)}: {_plural(after - before, 'new stream')}."
        )
        return 0
    if args.mapping is None:
        raise ValidationError(
            "--mapping is needed for a CSV file: maven, salesforce, oppcore or a .toml file."
        )
    opened_at = None if args.opened_at is None else datetime.combine(args.opened_at, time.min, _UTC)
    mapping = _mapping(args.mapping)
    pipeline: Pipeline | None = None
    if args.pipeline is not None:
        pipeline = _read_pipeline(args.pipeline)
    elif mapping is oppcore_io.OPPCORE_CSV:
        pipeline = _exported_pipeline(args.file, args.store)
    result = oppcore_io.read_csv(
        args.file, mapping=mapping, pipeline=pipeline, currency=args.currency, opened_at=opened_at
    )
    with open_repository(
        args.store
    ) as repo:  # only now: a file that cannot be read creates no store
        _saving(args, lambda: repo.save_all(result.opportunities))
    print(
        f"Imported {_plural(len(result.opportunities), 'opportunity', 'opportunities')} into "
        f"{_shown(args.store)}; {_plural(len(result.rejected), 'row')} rejected."
    )
    for rejected in result.rejected:
        print(f"  line {rejected.line}: {rejected.reason}")
    return 0


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def _saving(args: argparse.Namespace, save: Callable[[], object]) -> None:
    """Save, turning "someone else saved it" into what it means here: already imported."""
    try:
        save()
    except ConcurrencyError as exc:
        raise ConcurrencyError(
            f"{_shown(args.store)} already holds opportunity {exc.stream_id!r} with another history; "
            "nothing was imported. Import into a new store, or remove those deals first.",
            stream_id=exc.stream_id,
            expected=exc.expected,
            actual=exc.actual,
        ) from None


def _exported_pipeline(path: str, store: str) -> Pipeline | None:
    """The pipeline a file ``oppcore export`` wrote names: one the store holds, or a stock
    one; None leaves the choice to ``read_csv``."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            named = {row.get("pipeline") or "" for row in csv.DictReader(handle)} - {""}
    except (OSError, UnicodeDecodeError, csv.Error):
        return None  # read_csv reports what is wrong with the file
    if len(named) != 1:
        if len(named) > 1:
            raise ValidationError(
                f"{path!r} holds deals of pipelines {', '.join(sorted(map(repr, named)))}; a CSV "
                "import takes one pipeline. Use `oppcore export --format json` to move a whole "
                "store, or split the file."
            )
        return None
    [pipeline_id] = named
    if Path(store).is_file() or store.lower().startswith(("postgresql://", "postgres://")):
        with open_repository(store) as repo:
            known = {pipeline.id: pipeline for pipeline in repo.pipelines()}
        if pipeline_id in known:
            return known[pipeline_id]
    from oppcore import io as oppcore_io

    for stock in (Pipeline.default(), Pipeline.salesforce(), oppcore_io.MAVEN_CRM.pipeline):
        if stock is not None and stock.id == pipeline_id:
            return stock
    raise ValidationError(
        f"{path!r} holds deals of pipeline {pipeline_id!r}, which is neither a stock pipeline "
        "nor saved in the store; pass --pipeline with its JSON (Pipeline.to_dict())."
    )


def _read_pipeline(path: str) -> Pipeline:
    """A pipeline from a JSON file holding ``Pipeline.to_dict()``."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise StorageError(f"Cannot read pipeline file {path!r}: {exc.strerror}.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"Pipeline file {path!r} is not JSON: {exc}.") from None
    return Pipeline.from_dict(data)


def _mapping(name: str) -> Any:
    from oppcore import io as oppcore_io

    key = {"maven_crm": "maven"}.get(name.lower(), name.lower())
    if key in ("maven", "salesforce", "oppcore"):
        return oppcore_io.load_mapping(key)
    if key.endswith(".toml"):
        return oppcore_io.load_mapping(name)
    raise ValidationError(
        f"--mapping {name!r} is not maven, salesforce, oppcore or a .toml file naming the columns."
    )


def _show(args: argparse.Namespace) -> int:
    with _existing(args.store) as repo:
        opp = repo.get(args.id)
    _print_history(opp)
    return 0


def _money(value: Money | None) -> str:
    return "-" if value is None else str(value)


def _print_history(opp: Opportunity) -> None:
    print(f"{opp.name}  ({opp.id}, {opp.account or 'no account'})")
    print(
        f"  {opp.stage.label} / {opp.stage.label_for('th')}: "
        f"amount {_money(opp.amount)}, probability {opp.probability} %, "
        f"expected revenue {_money(opp.expected_revenue)}, "
        f"expected close {opp.expected_close or '-'}"
    )
    for item in opp.line_items:
        print(f"  - {item.kind.value:<8} {item.product}: {item.quantity} x {item.unit_price}")
    print()
    header = (
        f"{'v':>2}  {'when (UTC)':<16}  {'event':<15} {'stage':<12} {'amount':>18} "
        f"{'prob':>5} {'expected':>18}  by"
    )
    print(header)
    print("-" * len(header))
    for entry in opp.history():
        print(
            f"{entry.version:>2}  {entry.at.astimezone(_UTC):%Y-%m-%d %H:%M}  "
            f"{entry.event:<15} {entry.stage:<12} {_money(entry.amount):>18} "
            f"{entry.probability:>5} {_money(entry.expected_revenue):>18}  {entry.by or '-'}"
        )
    print()
    print("Days in each stage:")
    for stage, spent in opp.time_in_stage(now=opp.events[-1].at).items():
        print(f"  {opp.pipeline.stage(stage).label:<14} {spent / timedelta(days=1):6.1f}")


def _export(args: argparse.Namespace) -> int:
    from oppcore import io as oppcore_io

    with _existing(args.store) as repo:
        target = sys.stdout if args.output in (None, "-") else args.output
        if args.format == "json":
            oppcore_io.dump_json(repo, target)
        else:
            oppcore_io.write_csv(repo.opportunities(), target, history=args.history)
    if target is not sys.stdout:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _verify(args: argparse.Namespace) -> int:
    with _existing(args.store) as repo:
        problems = repo.verify()
        counts = _count_streams(repo.store.stream_ids())
    if problems:
        for problem in problems:
            print(problem)
        print(
            f"{_shown(args.store)}: {_plural(len(problems), 'problem')} found; the store was not changed."
        )
        return 1
    print(
        f"{_shown(args.store)}: sound. {counts['opportunities']} opportunities, {counts['lead']} leads, "
        f"{counts['campaign']} campaigns, {counts['pipeline']} pipelines; every record reads "
        "and every history replays."
    )
    return 0


def _count_streams(stream_ids: Iterable[str]) -> dict[str, int]:
    counts = {"opportunities": 0, "lead": 0, "campaign": 0, "pipeline": 0}
    for stream_id in stream_ids:
        kind, colon, _ = stream_id.partition(":")
        counts[kind if colon and kind in counts else "opportunities"] += 1
    return counts


# -- the parser ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oppcore",
        description="The pipeline core for sales opportunities: forecasts, effectiveness, "
        "funnels and pipeline movement from a store of deals and their history.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    demo = commands.add_parser(
        "demo",
        help="fill a store with a realistic sample year and print its reports",
        description="Generate a realistic sample pipeline with a year of history into a "
        f"store (by default {DEMO_STORE} in the current folder) and print its reports. "
        "Run again, it reports on the sample it made; it never touches a store holding "
        "other data.",
    )
    demo.add_argument("--store", default=DEMO_STORE, help=f"the store (default {DEMO_STORE})")
    demo.set_defaults(run=_demo)

    importer = commands.add_parser(
        "import",
        help="import opportunities from a CSV file into a store",
        description="Read a CSV export and save its deals into a store (created if absent). "
        "Rows that cannot be read are listed with their line number and reason; the other "
        "rows are imported.",
    )
    importer.add_argument(
        "file",
        metavar="FILE",
        help="a CSV file, or a JSON document written by `oppcore export --format json`",
    )
    importer.add_argument("--store", required=True, help="the store to save into")
    importer.add_argument(
        "--pipeline",
        metavar="PIPELINE.json",
        help="the pipeline the rows are in, as Pipeline.to_dict() JSON (for custom pipelines)",
    )
    importer.add_argument(
        "--mapping",
        help="maven, salesforce, oppcore (what export writes) or a TOML file naming the columns",
    )
    importer.add_argument(
        "--opened-at",
        type=_day,
        metavar="DATE",
        help="the open date (YYYY-MM-DD) for rows that have none",
    )
    importer.add_argument("--currency", help="the currency of amounts the file does not name")
    importer.set_defaults(run=_import)

    report = commands.add_parser(
        "report",
        help="print the forecast, effectiveness, funnel and movement reports",
        description="Forecast by period, campaign, lead-source and type effectiveness, the "
        "funnel of each pipeline, and the pipeline movement over the last full period.",
    )
    report.add_argument("--store", required=True, help="the store to report on")
    report.add_argument("--period", choices=("week", "month", "quarter", "year"), default="quarter")
    report.add_argument(
        "--fiscal-start",
        type=_fiscal_start,
        metavar="MONTH",
        help="the month the fiscal year starts (10 for October)",
    )
    report.add_argument(
        "--as-of", type=_day, metavar="DATE", help="report as the pipeline stood at the end of DATE"
    )
    report.add_argument("--currency", help="convert every amount to this currency")
    report.add_argument(
        "--rates", metavar="RATES.csv", help="exchange rates: columns base, quote, date, rate"
    )
    report.add_argument("--format", choices=tuple(_PRINTERS), default="table")
    report.add_argument("--chart", metavar="DIR", help="also write the charts as PNG files")
    report.set_defaults(run=_report)

    show = commands.add_parser("show", help="print one opportunity and its history")
    show.add_argument("--store", required=True)
    show.add_argument("id", metavar="ID", help="the opportunity's id")
    show.set_defaults(run=_show)

    export = commands.add_parser(
        "export", help="write a store's opportunities as CSV or the whole store as JSON"
    )
    export.add_argument("--store", required=True)
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument(
        "--history", action="store_true", help="CSV: one row per event instead of per deal"
    )
    export.add_argument(
        "--output", "-o", metavar="FILE", help="the file to write (default: stdout)"
    )
    export.set_defaults(run=_export)

    verify = commands.add_parser(
        "verify", help="check a store end to end and report damage without changing it"
    )
    verify.add_argument("--store", required=True)
    verify.set_defaults(run=_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
        sys.stdout.flush()
    except OppcoreError as exc:
        print(f"oppcore: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:  # an optional extra (matplotlib) is missing
        print(f"oppcore: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`oppcore demo | head`): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    return code

"""The ``oppcore`` command: ``demo``, ``import``, ``report``, ``show``, ``export``, ``verify``.

User mistakes print one clear line on stderr and exit non-zero, never a traceback.
``report``, ``show`` and ``verify`` never create a store that does not exist, and a command
that fails leaves no store it created behind.  No command writes over the store it works on:
every file it writes (``--output``, the ``--chart`` files, standard output redirected to a
file) and the file ``import`` reads are checked against the store's files first.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from enum import Enum
from functools import partial
from pathlib import Path
from typing import IO, Any

import attrs

from oppcore import analytics, sample
from oppcore._repr import short
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


def _zone(text: str) -> tzinfo:
    """``--time-zone``: ``UTC``, an offset such as ``+07:00`` or a zone such as ``Asia/Bangkok``
    (read as a mapping's ``time_zone`` is)."""
    from oppcore.io.csvfiles import _time_zone

    try:
        return _time_zone(text)
    except ValidationError:
        raise argparse.ArgumentTypeError(
            f"{short(text)} is not a time zone; write UTC, an offset such as +07:00 or a zone "
            "such as Asia/Bangkok"
        ) from None


def _end_of(day: date, zone: tzinfo = _UTC) -> datetime:
    """The last moment of ``day`` in ``zone``: a report "as of" a day includes all of it."""
    return datetime.combine(day, time.max, zone)


def _shown(store: str) -> str:
    """The store as messages name it: a database URL without its password."""
    if _is_url(store) or _may_hold_password(store):
        from oppcore.storage.postgres import redacted

        return redacted(store)
    return store


def _may_hold_password(text: str) -> bool:
    """A ``key=value`` connection string or a ``user:secret@host`` form: never echo it."""
    lowered = text.lower()
    return "password" in lowered or ("=" in text and " " in text) or "@" in text


# -- paths -----------------------------------------------------------------------------
# Every file argument is checked before anything is opened or created, so that a path no file
# can have, a folder where a file belongs, or an output that is the store itself is one clear
# line and not a traceback (or a destroyed store).

_URL_SCHEMES = ("postgresql://", "postgres://")
# The files a file store keeps: the store itself, SQLite's write-ahead log, shared-memory index
# and rollback journal, and the JSON Lines journal's lock file.  Writing over any of them
# damages the store as surely as writing over the store.
_COMPANIONS = ("", "-wal", "-shm", "-journal", ".lock")


def _is_url(store: str) -> bool:
    return store.lower().startswith(_URL_SCHEMES)


def _status(text: str, what: str) -> os.stat_result | None:
    """What the system knows of the file ``text`` names: its status, None when it does not
    exist, or a clear error when no file could have that name or it cannot be reached."""
    if not text:
        raise ValidationError(f"{what} is empty; name a file.")
    if "\0" in text:
        raise ValidationError(
            f"{what} {short(_shown(text))} holds a NUL byte, which no file name can."
        )
    try:
        return os.stat(text)
    except FileNotFoundError:
        return None
    except UnicodeEncodeError:
        raise ValidationError(
            f"{what} {short(_shown(text))} is not a file name this system can write."
        ) from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise StorageError(
                f"{what} {short(_shown(text))} is longer than the file system allows "
                f"({len(text):,} characters)."
            ) from None
        raise StorageError(f"Cannot reach {what} {short(_shown(text))}: {exc.strerror}.") from None


def _input(text: str, what: str) -> str:
    """A file to read: it exists, is not a folder, and this user may read it."""
    status = _status(text, what)
    if status is None:
        raise StorageError(f"There is no {what} {short(_shown(text))}; check the path.")
    if stat.S_ISDIR(status.st_mode):
        raise ValidationError(f"{what} {short(_shown(text))} is a folder, not a file.")
    if not os.access(text, os.R_OK):
        raise StorageError(f"Cannot read {what} {short(_shown(text))}: permission denied.")
    return text


def _output(text: str, what: str) -> str:
    """A file to write: not a folder, in a folder that exists, writable by this user."""
    status = _status(text, what)
    if status is not None:
        if stat.S_ISDIR(status.st_mode):
            raise ValidationError(f"{what} {short(_shown(text))} is a folder; name a file in it.")
        if not os.access(text, os.W_OK):
            raise StorageError(f"Cannot write {what} {short(_shown(text))}: permission denied.")
        return text
    _folder_of(text, what)
    return text


def _folder_of(text: str, what: str) -> None:
    """The folder a new file ``text`` goes into exists and takes new files."""
    parent = os.path.dirname(text) or os.curdir
    status = _status(parent, f"the folder of {what}")
    if status is None or not stat.S_ISDIR(status.st_mode):
        raise StorageError(
            f"Cannot create {what} {short(_shown(text))}: there is no folder {short(parent)}."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StorageError(
            f"Cannot create {what} {short(_shown(text))}: the folder {short(parent)} is not writable."
        )


def _store_path(text: str, *, existing: bool) -> str:
    """``--store``: a database URL, or a file path that can be a store.  With ``existing``
    the store must be there already (``report``, ``show``, ``verify``, ``export``)."""
    if _is_url(text):
        return text
    status = _status(text, "--store")
    if status is None:
        if existing:
            raise NotFoundError(
                f"There is no store at {short(_shown(text))}; check the path (nothing was created)."
            )
        _folder_of(text, "the store")
        return text
    if stat.S_ISDIR(status.st_mode):
        raise ValidationError(f"--store {short(_shown(text))} is a folder, not a store file.")
    if not stat.S_ISREG(status.st_mode):
        raise ValidationError(
            f"--store {short(_shown(text))} is not a regular file, so not a store."
        )
    return text


def _same_file(one: str | os.PathLike[str], other: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file: the same inode when both exist (a link, a symlink,
    ``./d.db``, ``a/../d.db``, another case on a case-insensitive file system), else the same
    path once symlinks and ``..`` are resolved."""
    try:
        return os.path.samefile(one, other)
    except (OSError, ValueError):  # one of them does not exist (yet)
        pass
    first, second = os.path.realpath(one), os.path.realpath(other)
    if _folds_case(first) or _folds_case(second):
        return first.casefold() == second.casefold()
    return first == second


def _folds_case(path: str) -> bool:
    """Whether the folder of ``path`` ignores case (macOS, Windows, a casefold ext4 folder):
    told by the folder itself, under another case, being the same folder."""
    folder = Path(path).parent
    for ancestor in (folder, *folder.parents):
        swapped = ancestor.with_name(ancestor.name.swapcase()) if ancestor.name else ancestor
        if swapped != ancestor:
            try:
                return os.path.samefile(ancestor, swapped)
            except (OSError, ValueError):
                return False
    return False


@attrs.frozen
class _StoreFiles:
    """The files of the store ``store`` (none for a database URL), to refuse any command that
    would write over one of them: the check every command that writes a file makes."""

    store: str

    @property
    def paths(self) -> tuple[str, ...]:
        if _is_url(self.store):
            return ()
        spellings = dict.fromkeys((self.store, os.path.realpath(self.store)))
        return tuple(spelling + suffix for spelling in spellings for suffix in _COMPANIONS)

    def holds(self, path: str | os.PathLike[str]) -> bool:
        return any(_same_file(path, own) for own in self.paths)

    def refuse(
        self,
        path: str | os.PathLike[str],
        what: str,
        why: str = "writing it would destroy the store",
    ) -> None:
        """Refuse ``path`` (a file the command would write, or read into the store) when it
        is one of the store's files."""
        if self.holds(path):
            raise ValidationError(
                f"{what} {short(os.fspath(path))} is the store {short(self.store)} itself (or "
                f"one of its files); {why}. Nothing was written: choose another file."
            )

    def refuse_stdout(self) -> None:
        """Refuse to print into the store: standard output redirected to one of its files
        (``oppcore export --store d.jsonl >> d.jsonl``)."""
        try:
            out = os.fstat(sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):  # not a real file (a test's capture)
            return
        if not stat.S_ISREG(out.st_mode):
            return
        for own in self.paths:
            try:
                held = os.stat(own)
            except (OSError, ValueError):
                continue
            if (held.st_dev, held.st_ino) == (out.st_dev, out.st_ino):
                raise ValidationError(
                    f"Standard output is the store {short(self.store)} itself (or one of its "
                    "files); printing into it would destroy the store. Nothing was written: "
                    "redirect the output to another file."
                )


def _existing(path: str) -> Repository:
    """Open a store that must already exist (``report``, ``show``, ``verify``, ``export``);
    a ``postgresql://`` URL names a database, whose tables are made on first use."""
    return open_repository(_store_path(path, existing=True))


@contextlib.contextmanager
def _creating(path: str, **kw: Any) -> Iterator[Repository]:
    """Open the store ``path``, created when absent (``import``, ``demo``).  When the command
    then fails, a store it created is removed with every file that came with it (a store that
    existed before is never touched): no failed command leaves a store behind."""
    _store_path(path, existing=False)
    made = [own for own in _StoreFiles(path).paths if not os.path.lexists(own)]
    try:
        with open_repository(path, **kw) as repo:
            yield repo
    except BaseException:
        if path in made:
            _discard(path, made)
        raise


def _discard(path: str, made: Sequence[str]) -> None:
    """Remove the files of a store this command created, unless another process has saved
    into it since (it is theirs then)."""
    # A store that no longer opens was made by this command's failure: removed as well.
    with contextlib.suppress(Exception), open_repository(path) as repo:
        if next(iter(repo.store.stream_ids()), None) is not None:
            return
    for own in made:
        with contextlib.suppress(OSError):
            os.unlink(own)


def _read_rates(path: str) -> ExchangeRates:
    """Rates from a CSV with the columns base, quote, date, rate (one rate per line)."""
    from oppcore.io.csvfiles import read_rates

    _input(path, "rates file")
    return read_rates(path)


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
    # The zone whose calendar the report reads: its days, periods, "as of" and "now".
    time_zone: tzinfo = _UTC


def _movement_window(moment: datetime, options: _Options) -> tuple[Period, datetime]:
    """The period the movement covers, and the moment it ends: the last period that had
    ended by ``moment`` (the one holding it, at its last instant), up to its end.  Before the
    calendar's first period has ended there is none: that first period, up to ``moment``."""
    zone = options.time_zone
    local = moment if moment.tzinfo is zone else moment.astimezone(zone)
    current = analytics.period_of(local.date(), options.period, options.calendar)  # type: ignore[arg-type]
    if local >= _end_of(current.end, zone):
        return current, _end_of(current.end, zone)
    if current.start == date.min:
        return current, local
    previous = analytics.period_of(
        current.start - timedelta(days=1),
        options.period,  # type: ignore[arg-type]
        options.calendar,
    )
    return previous, _end_of(previous.end, zone)


def _reports(repo: Repository, options: _Options, now: datetime) -> dict[str, Any]:
    """Every section of the report, by name: tables, and the movement."""
    opps = repo.opportunities()
    money: dict[str, Any] = {"currency": options.currency, "rates": options.rates}
    zone: dict[str, Any] = {"time_zone": options.time_zone}
    moment = options.as_of or now
    sections: dict[str, Any] = {
        "forecast": analytics.forecast(
            opps,
            period=options.period,  # type: ignore[arg-type]
            calendar=options.calendar,
            as_of=options.as_of,
            **money,
            **zone,
        ),
        "campaigns": analytics.campaign_effectiveness(
            opps, repo.campaigns(), as_of=options.as_of, **money, **zone
        ),
        "lead_sources": analytics.lead_source_effectiveness(
            opps, as_of=options.as_of, **money, **zone
        ),
        "types": analytics.effectiveness(opps, by="type", as_of=options.as_of, **money, **zone),
    }
    standing = (
        opps if options.as_of is None else analytics.snapshot(opps, as_of=options.as_of, **zone)
    )
    by_pipeline: dict[str, list[Opportunity]] = {}
    for opp in standing:
        by_pipeline.setdefault(opp.pipeline.id, []).append(opp)
    for pipeline_id in sorted(by_pipeline):
        sections[f"funnel:{pipeline_id}"] = analytics.funnel(by_pipeline[pipeline_id])
    window, end = _movement_window(moment, options)
    sections["movement"] = (
        window,
        analytics.pipeline_movement(
            opps,
            start=datetime.combine(window.start, time.min, options.time_zone),
            end=end,
            window=window,
            **money,
            **zone,
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
    # isoformat, not %Y: strftime writes the year 1 as "1", not "0001".
    when = "now" if options.as_of is None else f"as of {options.as_of.date().isoformat()}"
    if options.time_zone is not _UTC:
        when += f", {_zone_name(options.time_zone)}"
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


def _zone_name(zone: tzinfo) -> str:
    """A zone as the user wrote it: its name (``Asia/Bangkok``) or its offset (``+07:00``)."""
    key = getattr(zone, "key", None)
    if isinstance(key, str):
        return key
    offset = zone.utcoffset(None) or timedelta(0)
    sign, offset = ("-", -offset) if offset < timedelta(0) else ("+", offset)
    minutes = int(offset.total_seconds()) // 60
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


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


def _chart_folder(folder: str) -> str:
    """``--chart DIR``: a folder that exists or can be made (not a file, a usable path)."""
    status = _status(folder, "--chart")
    if status is not None and not stat.S_ISDIR(status.st_mode):
        raise ValidationError(f"--chart {short(folder)} is a file; name a folder for the charts.")
    return folder


def _write_charts(sections: dict[str, Any], folder: str, store: _StoreFiles) -> list[Path]:
    from oppcore import plot

    target = Path(folder)
    charts: list[tuple[str, Callable[[], Any]]] = [
        ("forecast", lambda: plot.forecast_chart(sections["forecast"])),
        ("campaigns", lambda: plot.effectiveness_chart(sections["campaigns"])),
        ("movement", lambda: plot.movement_chart(sections["movement"][1])),
    ]
    for name, value in sections.items():
        if name.startswith("funnel:"):
            charts.append((f"funnel-{name.partition(':')[2]}", partial(plot.funnel_chart, value)))
    paths = [target / f"{_safe(name)}.png" for name, _ in charts]
    for path in paths:  # every file, before the first is written
        store.refuse(path, "The chart file")
    figures = [chart() for _, chart in charts]
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"Cannot create the chart folder {short(folder)}: {exc.strerror}."
        ) from None
    written = []
    for path, figure in zip(paths, figures, strict=True):
        try:
            figure.savefig(path, format="png", dpi=100, bbox_inches="tight")
        except OSError as exc:
            raise StorageError(f"Cannot write {short(str(path))}: {exc.strerror}.") from None
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
    zone = _UTC if args.time_zone is None else args.time_zone
    return _Options(
        period=args.period,
        calendar=None if args.fiscal_start is None else FiscalCalendar(args.fiscal_start),
        as_of=None if args.as_of is None else _end_of(args.as_of, zone),
        currency=args.currency,
        rates=None if args.rates is None else _read_rates(args.rates),
        time_zone=zone,
    )


def _report(args: argparse.Namespace) -> int:
    _store_path(args.store, existing=True)
    store = _StoreFiles(args.store)
    store.refuse_stdout()
    if args.chart is not None:
        _chart_folder(args.chart)
    options = _options(args)
    with _existing(args.store) as repo:
        sections = _reports(repo, options, datetime.now(_UTC))
    written = [] if args.chart is None else _write_charts(sections, args.chart, store)
    _PRINTERS[args.format](sections, options, sys.stdout)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


# -- demo ------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    path = _store_path(args.store, existing=False)
    _StoreFiles(path).refuse_stdout()
    begin, end = sample.history_span()
    made = sample.generate()
    with _creating(path, clock=FixedClock(end)) as repo:
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
        options = _Options("quarter", None, end - timedelta(microseconds=1), None, None, _UTC)
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
    # Pipeline definitions (stores of format 2) come with the deals; they are not data.
    if {s for s in stored if not s.startswith("definition:")} != expected:
        return False
    held = {opp.id: opp for opp in repo.opportunities()}
    return all(held.get(opp.id) == opp for opp in made.opportunities)


# -- import, show, export, verify ------------------------------------------------------


def _import(args: argparse.Namespace) -> int:
    from oppcore import io as oppcore_io

    # Everything is read and checked before the store is opened: a file that cannot be read
    # creates no store, and a store that this import created is removed if it then fails.
    _store_path(args.store, existing=False)
    store = _StoreFiles(args.store)
    _input(args.file, "file to import")
    store.refuse(args.file, "The file to import", "a store cannot be imported into itself")
    store.refuse_stdout()
    if args.file.lower().endswith(".json"):  # a whole-repository document from `export`
        document = _Text(_read_document(args.file))
        with _creating(args.store) as repo:
            before = sum(1 for _ in repo.store.stream_ids())
            _saving(args, lambda: oppcore_io.load_json(document, into=repo))
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
    with _creating(args.store) as repo:
        _saving(args, lambda: repo.save_all(result.opportunities))
    print(
        f"Imported {_plural(len(result.opportunities), 'opportunity', 'opportunities')} into "
        f"{_shown(args.store)}; {_plural(len(result.rejected), 'row')} rejected."
    )
    for rejected in result.rejected:
        print(f"  line {rejected.line}: {rejected.reason}")
    return 0


@attrs.frozen
class _Text:
    """A document already read, for ``load_json`` (which reads anything with ``read()``)."""

    text: str

    def read(self) -> str:
        return self.text


def _read_document(path: str) -> str:
    """The text of a JSON document to import, read before any store is opened."""
    try:
        with open(path, encoding="utf-8-sig") as source:
            return source.read()
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"The document {short(path)} is not UTF-8 text (byte {exc.start:,} cannot be read)."
        ) from None
    except OSError as exc:
        raise StorageError(f"Cannot read the document {short(path)}: {exc.strerror}.") from None


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
    from oppcore.io import csvfiles

    try:
        # Read as read_csv reads the file: cells past the csv module's limit too.
        named = set(csvfiles.exported_pipelines(path))
    except OppcoreError:
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
    if _is_url(store) or os.path.isfile(store):
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
    _input(path, "pipeline file")
    try:
        with open(path, encoding="utf-8-sig") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise StorageError(f"Cannot read pipeline file {short(path)}: {exc.strerror}.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"Pipeline file {short(path)} is not JSON: {exc}.") from None
    except RecursionError:
        raise ValidationError(f"Pipeline file {short(path)} is nested too deeply.") from None
    return Pipeline.from_dict(data)


def _mapping(name: str) -> Any:
    from oppcore import io as oppcore_io

    key = {"maven_crm": "maven"}.get(name.lower(), name.lower())
    if key in ("maven", "salesforce", "oppcore"):
        return oppcore_io.load_mapping(key)
    if key.endswith(".toml"):
        return oppcore_io.load_mapping(_input(name, "mapping file"))
    raise ValidationError(
        f"--mapping {name!r} is not maven, salesforce, oppcore or a .toml file naming the columns."
    )


def _show(args: argparse.Namespace) -> int:
    _store_path(args.store, existing=True)
    _StoreFiles(args.store).refuse_stdout()
    with _existing(args.store) as repo:
        opp = repo.get(args.id)
    _print_history(opp)
    return 0


def _money(value: Money | None) -> str:
    return "-" if value is None else str(value)


def _print_history(opp: Opportunity) -> None:
    # Counted before the first line is printed: a failure prints nothing but its one line.
    try:
        spent = opp.time_in_stage(now=opp.events[-1].at)
    except ValidationError as exc:  # a time the domain cannot count from (the calendar's edge)
        spent, uncounted = {}, str(exc)
    else:
        uncounted = ""
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
            f"{entry.version:>2}  {_utc_minute(entry.at)}  "
            f"{entry.event:<15} {entry.stage:<12} {_money(entry.amount):>18} "
            f"{entry.probability:>5} {_money(entry.expected_revenue):>18}  {entry.by or '-'}"
        )
    print()
    print("Days in each stage:")
    for stage, days in spent.items():
        print(f"  {opp.pipeline.stage(stage).label:<14} {days / timedelta(days=1):6.1f}")
    if uncounted:
        print(f"  not counted: {uncounted}")


def _utc_minute(moment: datetime) -> str:
    """``moment`` in UTC as ``YYYY-MM-DD HH:MM``, also when its UTC time falls just outside
    the calendar (``0001-01-01T00:30+01:00`` is 23:30 on 31 December of the year 0)."""
    offset = moment.utcoffset() or timedelta(0)
    local = moment.replace(tzinfo=None)
    try:
        utc = local - offset
    except OverflowError:
        # An offset is under a day, so the UTC time is on the day just past either end; the
        # same clock time a day nearer the calendar's middle has the hour and minute.
        if offset > timedelta(0):
            return f"0000-12-31 {local + (timedelta(days=1) - offset):%H:%M}"
        return f"10000-01-01 {local - (timedelta(days=1) + offset):%H:%M}"
    return f"{utc.date().isoformat()} {utc:%H:%M}"


def _export(args: argparse.Namespace) -> int:
    from oppcore import io as oppcore_io

    parquet = args.format == "parquet"
    if args.events and not parquet:
        raise ValidationError("--events writes the event records as Parquet: add --format parquet.")
    if parquet:
        _check_parquet(args)
    _store_path(args.store, existing=True)
    store = _StoreFiles(args.store)
    if args.output in (None, "-"):
        store.refuse_stdout()
    else:
        store.refuse(_output(args.output, "--output"), "--output")
    with _existing(args.store) as repo:
        target = sys.stdout if args.output in (None, "-") else args.output
        if parquet:
            _write_parquet(repo, args.output, events=args.events)
        elif args.format == "json":
            oppcore_io.dump_json(repo, target)
        else:
            oppcore_io.write_csv(repo.opportunities(), target, history=args.history)
    if target is not sys.stdout:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _check_parquet(args: argparse.Namespace) -> None:
    """What ``--format parquet`` needs, checked before the store is read: a file to write
    (Parquet is binary, written whole) and the ``frame`` extra."""
    if args.output in (None, "-"):
        raise ValidationError(
            "--format parquet writes a file, not standard output: give --output FILE."
        )
    if args.history:
        raise ValidationError(
            "--history is for CSV; the Parquet deal table already holds every version of "
            "every deal (and --events every event)."
        )
    from oppcore.frame import _polars

    _polars()  # ImportError naming the extra, before anything is read


def _write_parquet(repo: Repository, path: str, *, events: bool) -> None:
    """The deal table (or, with ``events``, every event record) of ``repo`` as Parquet at
    ``path``: written beside it and renamed into place, so the file appears whole or not at
    all (a failed export never leaves half a file where a good one was)."""
    from oppcore.frame import deal_frame, event_frame

    frame = event_frame(repo) if events else deal_frame(repo)
    folder, name = os.path.split(os.path.abspath(path))
    try:
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    except OSError as exc:
        raise StorageError(f"Could not write {short(path)}: {exc.strerror or exc}.") from None
    os.close(fd)
    try:
        frame.write_parquet(temporary)
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise StorageError(f"Could not write {short(path)}: {exc.strerror or exc}.") from None
        raise


def _verify(args: argparse.Namespace) -> int:
    _store_path(args.store, existing=True)
    _StoreFiles(args.store).refuse_stdout()
    with _existing(args.store) as repo:
        # Count first: a store that verify finds damaged refuses every later read.
        try:
            counts = _count_streams(repo.store.stream_ids())
        except OppcoreError:
            counts = {}
        problems = repo.verify()
        status = "" if problems else repo.deal_table_status()
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
    print(f"{status[:1].upper()}{status[1:]}.")
    return 0


def _count_streams(stream_ids: Iterable[str]) -> dict[str, int]:
    counts = {"opportunities": 0, "lead": 0, "campaign": 0, "pipeline": 0}
    for stream_id in stream_ids:
        kind, colon, _ = stream_id.partition(":")
        if colon and kind == "definition":
            continue  # a pipeline definition deals reference, not a value of its own
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
    report.add_argument(
        "--time-zone",
        type=_zone,
        metavar="ZONE",
        help="read days and periods in this zone: UTC (the default), +07:00 or Asia/Bangkok",
    )
    report.add_argument("--format", choices=tuple(_PRINTERS), default="table")
    report.add_argument("--chart", metavar="DIR", help="also write the charts as PNG files")
    report.set_defaults(run=_report)

    show = commands.add_parser("show", help="print one opportunity and its history")
    show.add_argument("--store", required=True)
    show.add_argument("id", metavar="ID", help="the opportunity's id")
    show.set_defaults(run=_show)

    export = commands.add_parser(
        "export",
        help="write a store's opportunities as CSV, the whole store as JSON, or the deal "
        "table (or every event) as Parquet",
    )
    export.add_argument("--store", required=True)
    export.add_argument("--format", choices=("csv", "json", "parquet"), default="csv")
    export.add_argument(
        "--history", action="store_true", help="CSV: one row per event instead of per deal"
    )
    export.add_argument(
        "--events",
        action="store_true",
        help="Parquet: every event record of the store (deals, pipelines, leads, campaigns) "
        "instead of the deal table, for oppcore.frame.project",
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
    except OSError as exc:  # the system refused a file the checks above let through (a race)
        where = "" if exc.filename is None else f" {short(os.fsdecode(exc.filename))}"
        print(f"oppcore: Cannot use{where}: {exc.strerror or exc}.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code

"""The ``oppcore`` command.

User mistakes print one clear line on stderr and exit non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone

from oppcore.clock import FixedClock
from oppcore.domain import LineItem, LineKind, Money, Opportunity
from oppcore.exceptions import OppcoreError


def _demo_opportunity() -> Opportunity:
    """A realistic small deal, opened, worked, won: dated so the output never changes."""
    clock = FixedClock(datetime(2026, 9, 1, 9, 30, tzinfo=timezone.utc))
    opp = Opportunity.open(
        id="opp-demo-1",
        name="Siam Logistics - fleet tracking",
        type="new_customer",
        account="Siam Logistics Co., Ltd.",
        owner="Naree",
        lead_source="web",
        campaign_id="cmp-expo-2026",
        currency="THB",
        expected_close=date(2026, 11, 30),
        by="naree",
        clock=clock,
    )
    clock.advance(timedelta(days=6, hours=2))
    opp = opp.add_line_item(
        LineItem("GPS tracker T4", Money("4850.00", "THB"), quantity=40, id="line-1"),
        by="naree",
        clock=clock,
    )
    opp = opp.add_line_item(
        LineItem(
            "Installation",
            Money("350.00", "THB"),
            quantity=40,
            kind=LineKind.SERVICE,
            id="line-2",
        ),
        by="naree",
        clock=clock,
    )
    clock.advance(timedelta(days=3))
    opp = opp.move_to("in_progress", by="naree", clock=clock)
    clock.advance(timedelta(days=12, hours=5))
    opp = opp.update_line_item("line-1", discount=5, by="naree", clock=clock)
    opp = opp.update(probability=70, by="somchai", clock=clock)
    clock.advance(timedelta(days=20))
    opp = opp.update(expected_close=date(2026, 12, 15), by="naree", clock=clock)
    clock.advance(timedelta(days=9, hours=3))
    return opp.win(by="naree", clock=clock)


def _money(value: Money | None) -> str:
    return "-" if value is None else str(value)


def _print_history(opp: Opportunity) -> None:
    print(f"{opp.name}  ({opp.id}, {opp.account})")
    print(
        f"  {opp.stage.label} / {opp.stage.label_for('th')}: "
        f"amount {_money(opp.amount)}, probability {opp.probability} %, "
        f"expected revenue {_money(opp.expected_revenue)}"
    )
    print()
    header = f"{'v':>2}  {'when (UTC)':<16}  {'event':<15} {'stage':<12} {'amount':>16} {'prob':>5} {'expected':>16}  by"
    print(header)
    print("-" * len(header))
    for entry in opp.history():
        print(
            f"{entry.version:>2}  {entry.at:%Y-%m-%d %H:%M}  {entry.event:<15} {entry.stage:<12} "
            f"{_money(entry.amount):>16} {entry.probability:>5} {_money(entry.expected_revenue):>16}  "
            f"{entry.by or '-'}"
        )
    print()
    print("Days in each stage:")
    for stage, spent in opp.time_in_stage(now=opp.events[-1].at).items():
        print(f"  {opp.pipeline.stage(stage).label:<12} {spent / timedelta(days=1):6.1f}")


def _demo(_: argparse.Namespace) -> int:
    opp = _demo_opportunity()
    _print_history(opp)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oppcore", description="The pipeline core for sales opportunities."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    demo = commands.add_parser(
        "demo", help="open, work and win a sample deal, and print its history"
    )
    demo.set_defaults(run=_demo)
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
    except BrokenPipeError:
        # The reader went away (`oppcore demo | head`): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code

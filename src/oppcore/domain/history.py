"""Read-only views of an opportunity's history."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import attrs

from oppcore.domain.money import Money
from oppcore.domain.stages import ForecastCategory


@attrs.frozen
class HistoryEntry:
    """The deal's state right after one event.

    ``event`` is the event's class name; ``changes`` maps each field that changed to
    ``(old, new)``, knock-on changes included (a stage move's probability reset, the
    amount a new line brings).
    """

    version: int
    at: datetime
    recorded_at: datetime
    by: str | None
    event: str
    stage: str
    amount: Money | None
    probability: Decimal
    expected_revenue: Money | None
    expected_close: date | None
    forecast_category: ForecastCategory
    changes: Mapping[str, tuple[Any, Any]]


@attrs.frozen
class StageInterval:
    """A stretch of time the deal spent in ``stage``; ``exited_at`` is None for the current one."""

    stage: str
    entered_at: datetime
    exited_at: datetime | None

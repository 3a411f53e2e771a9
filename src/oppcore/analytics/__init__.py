"""Analytics over any iterable of opportunities (a repository's ``opportunities()`` included).

Imports the domain, never storage.
"""

from oppcore.analytics.effectiveness import (
    CycleStats,
    EffectivenessRow,
    campaign_effectiveness,
    effectiveness,
    lead_source_effectiveness,
    sales_cycle,
)
from oppcore.analytics.forecast import ForecastRangeRow, ForecastRow, forecast, forecast_range
from oppcore.analytics.periods import FiscalCalendar, Period, period_of
from oppcore.analytics.table import Table

__all__ = [
    "CycleStats",
    "EffectivenessRow",
    "FiscalCalendar",
    "ForecastRangeRow",
    "ForecastRow",
    "Period",
    "Table",
    "campaign_effectiveness",
    "effectiveness",
    "forecast",
    "forecast_range",
    "lead_source_effectiveness",
    "period_of",
    "sales_cycle",
]

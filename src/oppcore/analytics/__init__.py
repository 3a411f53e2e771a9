"""Analytics over any iterable of opportunities (a repository's ``opportunities()`` included),
or a deal frame of any engine narwhals supports (``oppcore.frame.deal_frame``), with exactly
the same results.

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
from oppcore.analytics.history import (
    SlippageRow,
    SlippageSummaryRow,
    slippage,
    slippage_summary,
    snapshot,
)
from oppcore.analytics.learning import (
    Calibration,
    CalibrationBin,
    StageWinRateRow,
    as_probabilities,
    calibration,
    stage_win_rates,
)
from oppcore.analytics.movement import (
    BUCKETS,
    Movement,
    MovementEntry,
    MovementRow,
    pipeline_movement,
)
from oppcore.analytics.periods import FiscalCalendar, Period, period_of
from oppcore.analytics.stages import (
    FunnelRow,
    StageTimeRow,
    StaleRow,
    funnel,
    stale,
    time_in_stage,
)
from oppcore.analytics.table import Table

__all__ = [
    "BUCKETS",
    "Calibration",
    "CalibrationBin",
    "CycleStats",
    "EffectivenessRow",
    "FiscalCalendar",
    "ForecastRangeRow",
    "ForecastRow",
    "FunnelRow",
    "Movement",
    "MovementEntry",
    "MovementRow",
    "Period",
    "SlippageRow",
    "SlippageSummaryRow",
    "StageTimeRow",
    "StageWinRateRow",
    "StaleRow",
    "Table",
    "as_probabilities",
    "calibration",
    "campaign_effectiveness",
    "effectiveness",
    "forecast",
    "forecast_range",
    "funnel",
    "lead_source_effectiveness",
    "period_of",
    "pipeline_movement",
    "sales_cycle",
    "slippage",
    "slippage_summary",
    "snapshot",
    "stage_win_rates",
    "stale",
    "time_in_stage",
]

"""The usage one request may ask for: a budget that every usage report draws on.

Rules:

* One request (an HTTP request, one operation on a websocket, one event of a
  subscription) may ask for at most ``max_reports`` usage reports: every
  ``Account.usage``, ``Member.usage`` and ``Inbox.usage`` it reaches counts, aliases and
  list items included. Each report reads the database on its own, so this bounds the
  round trips.
* And for at most ``max_buckets`` buckets over all its reports. A report costs its series
  (its totals, plus one per group) times its buckets: what it reads, holds and sends.
* A report draws on the budget before it reads anything (its count) and before it sums
  any rollup (its buckets), in one piece: a report is refused whole, never half built.
  Going over is ``UsageBudgetExceeded``, which the edge reports as QUERY_TOO_COMPLEX.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.calendar import Granularity
from services.errors import UsageBudgetExceeded

__all__ = ["UsageBudget"]


@dataclass(slots=True)
class UsageBudget:
    """What is left of one request's budget; ``spent_*`` grow as reports draw on it."""

    max_reports: int
    max_buckets: int
    spent_reports: int = 0
    spent_buckets: int = 0

    def open_report(self) -> None:
        """Count one more report, or refuse it when the request has had its maximum."""
        if self.spent_reports >= self.max_reports:
            raise UsageBudgetExceeded(
                f"This request asks for more than {self.max_reports} usage reports. Ask "
                "for fewer: one Account.usage with groupBy MEMBER or SHARED_INBOX reports "
                "every member or shared inbox at once.",
                limit="usageReports",
                maximum=self.max_reports,
            )
        self.spent_reports += 1

    def take_buckets(self, *, series: int, buckets: int, granularity: Granularity) -> None:
        """Take ``series`` x ``buckets`` buckets for one report, or refuse the report whole."""
        cost = series * buckets
        left = self.max_buckets - self.spent_buckets
        if cost > left:
            raise UsageBudgetExceeded(
                f"This usage report needs {series} series of {buckets} {granularity.value} "
                f"buckets ({cost:,} buckets), and this request has {left:,} of its "
                f"{self.max_buckets:,} left. Narrow the range, use a coarser granularity, "
                "group by less, or ask for fewer reports in one request.",
                limit="usageBuckets",
                maximum=self.max_buckets,
            )
        self.spent_buckets += cost

"""The run-out forecast: Account.forecast's CreditForecast."""

from __future__ import annotations

from datetime import date

import strawberry

from services.forecast import Forecast, ForecastStatus

strawberry.enum(ForecastStatus)


@strawberry.type
class CreditForecast:
    status: ForecastStatus
    daily_burn: float | None = strawberry.field(
        description=(
            "Credits a day (inbound and outbound, net of refunds) over the measured days; "
            "null for INSUFFICIENT_HISTORY."
        )
    )
    based_on_days: int = strawberry.field(
        description="How many complete local days the pace was measured over (0 to 28)."
    )
    run_out_date: date | None = strawberry.field(
        description=(
            "The first local day whose usage the balance can no longer cover, "
            "without purchases or auto-recharges."
        )
    )
    subscription_credits_expiring: int = strawberry.field(
        description="Subscription credits forecast to expire unused at periodEnd."
    )

    @classmethod
    def from_result(cls, forecast: Forecast) -> CreditForecast:
        burn = forecast.daily_burn
        return cls(
            status=forecast.status,
            daily_burn=None if burn is None else float(burn),
            based_on_days=forecast.based_on_days,
            run_out_date=forecast.run_out_date,
            subscription_credits_expiring=forecast.subscription_credits_expiring,
        )

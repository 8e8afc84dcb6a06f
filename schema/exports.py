"""Usage exports: createUsageExport, the UsageExport type and ExportFormat."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from schema.context import Context
from schema.errors import UserError, reports_user_errors
from schema.ids import to_id
from schema.pagination import DateRangeInput
from schema.permissions import IsAdmin
from schema.usage import Granularity, UsageGroupBy, days_of
from services import exports
from services.exports import CreatedExport, ExportFormat

strawberry.enum(ExportFormat)


@strawberry.input
class UsageExportInput:
    range: DateRangeInput | None = None
    granularity: Granularity = Granularity.DAY
    group_by: UsageGroupBy = UsageGroupBy.NONE
    format: ExportFormat = ExportFormat.CSV


@strawberry.type
class UsageExport:
    id: strawberry.ID
    format: ExportFormat
    url: str
    expires_at: datetime
    rows: int

    @classmethod
    def from_result(cls, created: CreatedExport) -> UsageExport:
        return cls(
            id=to_id(created.id),
            format=created.format,
            url=created.url,
            expires_at=created.expires_at,
            rows=created.rows,
        )


@strawberry.type
class CreateUsageExportPayload:
    export: UsageExport | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ExportMutation:
    @strawberry.mutation(
        description=(
            "ADMIN: a usage report as a file; the URL works without a bearer token until it "
            "expires."
        ),
        permission_classes=[IsAdmin],
    )
    @reports_user_errors
    async def create_usage_export(
        self, info: strawberry.Info[Context, Any], input: UsageExportInput
    ) -> CreateUsageExportPayload:
        created = await exports.create_export(
            actor=info.context.actor,
            days=days_of(input.range),
            granularity=input.granularity,
            group_by=input.group_by,
            format=input.format,
            clock=info.context.clock,
            public_url=info.context.settings.public_url,
            secret=info.context.settings.secret_key,
        )
        return CreateUsageExportPayload(export=UsageExport.from_result(created))

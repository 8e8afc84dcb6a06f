"""Field permissions: the contract's ADMIN marks."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.permission import BasePermission

from schema.context import Context


class IsAdmin(BasePermission):
    message = "Only an admin may use this field."
    error_extensions = {"code": "FORBIDDEN"}

    def has_permission(
        self, source: Any, info: strawberry.Info[Context, Any], **kwargs: Any
    ) -> bool:
        return info.context.actor.is_admin

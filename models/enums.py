"""Enumerations stored in the database; their values are the contract's enum values."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "ADMIN"
    MEMBER = "MEMBER"


class InboxKind(StrEnum):
    PERSONAL = "PERSONAL"
    SHARED = "SHARED"


class WeekStart(StrEnum):
    MONDAY = "MONDAY"
    SUNDAY = "SUNDAY"

"""Tortoise models: the tables of Tally. Only services/ queries them."""

from models.accounts import Account, ApiToken, Inbox, InboxAccess, Member

__all__ = ["Account", "ApiToken", "Inbox", "InboxAccess", "Member"]

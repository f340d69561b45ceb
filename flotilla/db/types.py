"""Column types shared by the models, portable across SQLite and PostgreSQL."""

from __future__ import annotations

import datetime

import sqlalchemy as sa


def utcnow() -> datetime.datetime:
    """The current time, timezone-aware in UTC (the only kind we store)."""
    return datetime.datetime.now(datetime.UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL keeps ``timestamptz`` natively; SQLite has no time zone type
    and hands back naive values. Rules: a naive value written here is taken
    as UTC, an aware one is converted to UTC, and every value read is aware
    UTC, so comparisons never mix naive and aware datetimes.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        value = value.astimezone(datetime.UTC)
        if dialect.name == "sqlite":
            # Stored naive so that SQLite's text comparison orders correctly.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=datetime.UTC)
        return value.astimezone(datetime.UTC)

"""The database replay store of shared-queue servers (flotilla.rpc.replay).

:meth:`DatabaseSeenStore.first_sighting` INSERTs the key as the primary key
of ``rpc_seen_messages``: exactly one of any number of processes sharing
the database succeeds, the others get an integrity error, so a copy of a
message that reaches another conductor or scheduler process is still
recognised. Rows past their deadline are deleted at most once a minute
per process.
"""

from __future__ import annotations

import datetime
import time

import sqlalchemy as sa

from flotilla.db.engine import session_scope
from flotilla.db.models import RPCSeenMessage


class DatabaseSeenStore:
    PURGE_INTERVAL = 60.0

    def __init__(self) -> None:
        self._next_purge = 0.0

    def first_sighting(self, key: str, expires_at: float) -> bool:
        expires = datetime.datetime.fromtimestamp(expires_at, datetime.UTC)
        if time.monotonic() >= self._next_purge:
            self._next_purge = time.monotonic() + self.PURGE_INTERVAL
            self.purge()
        try:
            with session_scope() as session:
                session.add(RPCSeenMessage(key=key[:255], expires_at=expires))
        except sa.exc.IntegrityError:
            return False
        return True

    @staticmethod
    def purge(now: datetime.datetime | None = None) -> int:
        """Delete the ids past their deadline; return how many."""
        now = now or datetime.datetime.now(datetime.UTC)
        with session_scope() as session:
            return session.execute(sa.delete(RPCSeenMessage).where(
                RPCSeenMessage.expires_at < now)).rowcount

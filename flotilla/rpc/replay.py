"""Replay and duplicate protection: each message runs at most once.

Every request carries ``sent_at`` and ``ttl`` (signed with the rest of the
body when a key is set), so it has a deadline, ``sent_at + ttl``. A server
refuses a message past its deadline (:class:`flotilla.rpc.envelope.Expired`)
or sent more than ``[rpc] max_clock_skew`` seconds in the future, and asks a
:class:`SeenStore` whether it saw the message's id before; a message seen
before its deadline is dropped with a log line. An entry is kept until the
message's deadline (plus the skew): after that the expiry check refuses any
copy, so no copy can run twice and the store never grows past the messages
of one window.

Copies arrive two ways: a replay by someone who can publish to the broker
(a captured signed message), and the publisher's own retry after a lost
confirm (RabbitMQ may have queued a message whose confirm never came back,
so a retried cast is at-least-once).

The guarantee depends on which store a server uses; each is keyed by the
server's queue name plus the message id, so a fanout copy meant for every
agent is not mistaken for a duplicate:

* :class:`MemorySeenStore` (the default): exact for every copy that reaches
  this process while it runs. It holds for a per-host queue
  (``compute.<host>``), whose only consumer is its agent, and for
  ``memory://``, where the process is the whole broker. A copy delivered
  after the agent restarted is not recognised, so the window left open is
  one message ttl across a restart.
* :class:`flotilla.db.rpc_seen.DatabaseSeenStore`: used by the conductor
  and the scheduler, whose shared queues have competing consumers in
  several processes (a copy may reach another process than the first). Its
  check is an INSERT of the id as a primary key in the shared database,
  which is atomic across processes, so exactly one process wins; it also
  survives restarts.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from typing import Protocol

LOG = logging.getLogger(__name__)


class SeenStore(Protocol):
    def first_sighting(self, key: str, expires_at: float) -> bool:
        """True the first time ``key`` is offered before ``expires_at``
        (UNIX time), False for every later offer until then."""


class MemorySeenStore:
    """Ids seen by this process, kept until their deadline.

    ``max_entries`` bounds memory: beyond it the entries nearest to their
    deadline are forgotten first (with a warning: the guarantee then only
    holds for the window the store could keep).
    """

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._max = max_entries
        self._warned = False

    def __len__(self) -> int:
        return len(self._expiry)

    def first_sighting(self, key: str, expires_at: float,
                       now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._lock:
            self._purge(now)
            if key in self._expiry:
                return False
            self._expiry[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            if len(self._expiry) > self._max:
                _, dropped = heapq.heappop(self._heap)
                self._expiry.pop(dropped, None)
                if not self._warned:
                    self._warned = True
                    LOG.warning("RPC replay store full (%d ids): forgetting the "
                                "ids nearest their deadline", self._max)
            return True

    def _purge(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] < now:
            _, key = heapq.heappop(heap)
            if self._expiry.get(key, now + 1) < now:
                del self._expiry[key]

"""``memory://``: the in-process broker, for tests and ``flotilla-all``.

One broker per process (:data:`BROKER`), shared by every transport, so all
services of a process see each other. It keeps the AMQP driver's semantics
where the layers above can observe them:

* queues ``<topic>`` (competing consumers, round robin), ``<topic>.<server>``
  and one fanout queue per server; a queue exists while something consumes
  it (nothing here survives the process anyway);
* a cast or call routed to no queue raises MessageUndeliverable at once
  (AMQP: ``mandatory`` + basic.return);
* a call waits on its own reply slot, addressed like direct reply-to;
* messages are handed to listeners immediately (no polling), each listener
  runs its handler on its own thread, bounded by its capacity semaphore.

Bodies are the same bytes the AMQP driver would send, so envelope, signing
and dispatch code paths are exercised identically.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable

from flotilla import concurrency, exception
from flotilla.rpc.transport import IncomingMessage, Options, Target

LOG = logging.getLogger(__name__)

_STOP = object()


class _Queue:
    """A named queue: a round-robin list of consuming listeners' inboxes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.inboxes: list[queue.Queue] = []
        self._next = itertools.count()

    def pick(self) -> queue.Queue:
        return self.inboxes[next(self._next) % len(self.inboxes)]


class Broker:
    """The process-wide in-memory broker (thread- and green-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[tuple[str, str], _Queue] = {}   # (exchange, key)
        self._fanout: dict[str, list[queue.Queue]] = {}    # exchange -> inboxes
        self._replies: dict[str, queue.Queue] = {}

    def bind(self, exchange: str, key: str, inbox: queue.Queue) -> None:
        with self._lock:
            q = self._queues.setdefault((exchange, key),
                                        _Queue("%s/%s" % (exchange, key)))
            q.inboxes.append(inbox)

    def bind_fanout(self, exchange: str, inbox: queue.Queue) -> None:
        with self._lock:
            self._fanout.setdefault(exchange, []).append(inbox)

    def unbind(self, inbox: queue.Queue) -> None:
        with self._lock:
            for key, q in list(self._queues.items()):
                if inbox in q.inboxes:
                    q.inboxes.remove(inbox)
                if not q.inboxes:
                    del self._queues[key]
            for name, inboxes in list(self._fanout.items()):
                if inbox in inboxes:
                    inboxes.remove(inbox)
                if not inboxes:
                    del self._fanout[name]

    def publish(self, exchange: str, key: str, message: IncomingMessage,
                fanout: bool, method: str) -> None:
        with self._lock:
            if fanout:
                targets = list(self._fanout.get(exchange, ()))
            else:
                q = self._queues.get((exchange, key))
                targets = [q.pick()] if q and q.inboxes else []
        if not targets:
            raise exception.MessageUndeliverable(
                routing_key=key, exchange=exchange, method=method)
        for inbox in targets:
            inbox.put(message)

    def open_reply_slot(self) -> tuple[str, queue.Queue]:
        address = "memory.reply-to." + uuid.uuid4().hex
        slot: queue.Queue = queue.Queue()
        with self._lock:
            self._replies[address] = slot
        return address, slot

    def close_reply_slot(self, address: str) -> None:
        with self._lock:
            self._replies.pop(address, None)

    def reply(self, address: str, correlation_id: str | None,
              body: bytes) -> None:
        with self._lock:
            slot = self._replies.get(address)
        if slot is not None:  # the caller may have given up already
            slot.put((correlation_id, body))


BROKER = Broker()


class MemoryListener:
    """Consumes the queues of one server from an inbox on its own thread."""

    def __init__(self, broker: Broker, exchange: str, target: Target,
                 handler: Callable[[IncomingMessage], None],
                 capacity: threading.Semaphore) -> None:
        self._broker = broker
        self._exchange = exchange
        self._target = target
        self._handler = handler
        self._capacity = capacity
        self._inbox: queue.Queue = queue.Queue()
        self._done = concurrency.Event()

    def start(self) -> None:
        t = self._target
        if t.server:
            self._broker.bind(self._exchange, "%s.%s" % (t.topic, t.server),
                              self._inbox)
            self._broker.bind_fanout(
                "%s_fanout_%s" % (self._exchange, t.topic), self._inbox)
        # Shared queue too: a named server is also one of the competing
        # consumers of its topic, as with the AMQP driver.
        self._broker.bind(self._exchange, t.topic, self._inbox)
        concurrency.spawn(self._run)

    def _run(self) -> None:
        try:
            while True:
                message = self._inbox.get()
                if message is _STOP:
                    return
                self._capacity.acquire()
                try:
                    self._handler(message)
                except Exception:  # the handler owns the slot on success
                    self._capacity.release()
                    LOG.exception("RPC handler failed on %s", message.queue)
        finally:
            self._done.set()

    def stop(self) -> None:
        """Stop consuming: unbind at once; queued messages are dropped."""
        self._broker.unbind(self._inbox)
        self._inbox.put(_STOP)

    def join(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


class _Settled:
    """A cast confirmation that is already known (the in-process broker
    takes or refuses a message at once)."""

    def __init__(self, error: BaseException | None) -> None:
        self._error = error

    def done(self) -> bool:
        return True

    def wait(self, timeout: float | None = None) -> None:
        if self._error is not None:
            raise self._error


class MemoryDriver:
    """The driver for ``memory://`` (see the module docstring)."""

    reply_to = "memory.reply-to"

    def __init__(self, options: Options, broker: Broker | None = None) -> None:
        self.options = options
        self.broker = broker or BROKER

    def _publish(self, target: Target, message: IncomingMessage,
                 method: str) -> None:
        exchange = self.options.control_exchange
        if target.fanout:
            self.broker.publish("%s_fanout_%s" % (exchange, target.topic),
                                target.topic, message, True, method)
        else:
            self.broker.publish(exchange, target.routing_key, message,
                                False, method)

    def cast(self, target: Target, body: bytes, method: str) -> None:
        self._publish(target, IncomingMessage(body, queue=target.routing_key),
                      method)

    def submit_cast(self, target: Target, body: bytes, method: str):
        """Deliver at once; the confirmation is already settled."""
        try:
            self.cast(target, body, method)
        except exception.MessagingException as exc:
            return _Settled(exc)
        return _Settled(None)

    def call(self, target: Target, body: bytes, correlation_id: str,
             method: str, timeout: float) -> bytes:
        address, slot = self.broker.open_reply_slot()
        try:
            self._publish(target, IncomingMessage(
                body, reply_to=address, correlation_id=correlation_id,
                queue=target.routing_key), method)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    corr, reply = slot.get(
                        timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    raise exception.MessagingTimeout(
                        timeout=timeout, method=method,
                        topic=target.routing_key) from None
                if corr == correlation_id:
                    return reply
        finally:
            self.broker.close_reply_slot(address)

    def reply(self, address: str, correlation_id: str | None,
              body: bytes) -> None:
        self.broker.reply(address, correlation_id, body)

    def listen(self, target: Target,
               handler: Callable[[IncomingMessage], None],
               capacity: threading.Semaphore) -> MemoryListener:
        return MemoryListener(self.broker, self.options.control_exchange,
                              target, handler, capacity)

    def cleanup(self) -> None:
        pass

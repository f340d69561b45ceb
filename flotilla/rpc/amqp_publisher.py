"""Confirmed casts, pipelined: many casts in flight on one confirm channel.

:class:`ConfirmingPublisher` owns one connection with one channel in
publisher-confirm mode and one I/O thread that alone touches them (py-amqp
is not thread-safe). Any number of threads call :meth:`publish`; each
message is queued for the I/O thread, which publishes everything queued,
then reads the broker's ``Basic.Ack``/``Basic.Nack`` frames and tells each
caller about its own message by delivery tag (RabbitMQ numbers a confirm
channel's publishes 1, 2, 3...; an ack with ``multiple`` confirms every tag
up to its own). A caller returns only once the broker confirmed its
message: persistent messages (``[rpc] persistent_casts``) are confirmed
once written to disk, so confirmation is what makes a cast durable.

py-amqp's own ``basic_publish_confirm`` waits for one confirm per message
and accepts the first ack it reads whatever its tag, so after a lost
confirm it can report the wrong message as confirmed; here every ack is
matched to its tags.

Rules:

* ``mandatory``: a message no queue is bound for comes back as
  ``Basic.Return`` (before its ack); it is matched by the ``message_id``
  property this publisher sets, and its caller gets MessageUndeliverable.
* A nack (the broker could not take the message) is MessagingUnavailable.
* Connection lost, or a confirm overdue by :data:`CONFIRM_TIMEOUT`: the
  connection is dropped, a new one is opened (exponential backoff with
  jitter, as :mod:`flotilla.rpc.retry`), and every unconfirmed message is
  published again in order. A message whose confirm was lost may already
  be queued, so a cast is delivered at least once; servers drop the second
  copy by message id (:mod:`flotilla.rpc.replay`).
* A caller waits at most ``timeout`` (``[rpc] reconnect_timeout``); a
  message not yet sent by then is withdrawn, and the caller gets
  MessagingUnavailable (one already sent may or may not be queued).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import random
import select
import socket
import time

import amqp

from flotilla import concurrency, exception
from flotilla.rpc.amqp_connection import (
    RECOVERABLE,
    declare_exchange,
    open_connection,
)
from flotilla.rpc.amqp_frames import CastFrames
from flotilla.rpc.transport import Options, Target, mask_url

LOG = logging.getLogger(__name__)

#: Seconds a confirm may be overdue before the connection is presumed dead.
CONFIRM_TIMEOUT = 10.0
#: Seconds between two looks at timers when nothing happens.
TICK = 0.25


class _Pending:
    """One submitted message. ``done`` (with ``error``) is set once, under
    the publisher's lock; ``waiter`` is an Event made only for a caller
    that has to block (most pipelined callers find their cast confirmed
    already, and an Event per cast cost more than the frames)."""

    __slots__ = ("target", "body", "method", "token", "done", "waiter", "error",
                 "returned", "abandoned", "sent_at")

    def __init__(self, target: Target, body: bytes, method: str, token: str):
        self.target = target
        self.body = body
        self.method = method
        self.token = token
        self.done = False
        self.waiter = None
        self.error: BaseException | None = None
        self.returned = False
        self.abandoned = False
        self.sent_at = 0.0


class Confirmation:
    """The broker's answer about one submitted message."""

    __slots__ = ("_publisher", "_pending")

    def __init__(self, publisher: ConfirmingPublisher, pending: _Pending) -> None:
        self._publisher = publisher
        self._pending = pending

    def done(self) -> bool:
        return self._pending.done

    def wait(self, timeout: float) -> None:
        """Return once confirmed; raise MessageUndeliverable (no queue),
        MessagingUnavailable (nacked, closed, or not confirmed within
        ``timeout``: then withdrawn if it was not sent yet)."""
        pending = self._pending
        if not pending.done and not self._publisher._block(pending, timeout):
            never_sent = self._publisher._withdraw(pending)
            raise exception.MessagingUnavailable(
                reason="cast %s on %s not confirmed within %ss (%s)" % (
                    pending.method, self._publisher._where, timeout,
                    "never sent" if never_sent
                    else "it may or may not have been queued"))
        if pending.error is not None:
            raise pending.error


class ConfirmingPublisher:
    """Pipelined confirmed publishing on one connection (see module rules)."""

    def __init__(self, url: str, options: Options) -> None:
        self._url = url
        self._where = mask_url(url)
        self._options = options
        self._lock = concurrency.Lock()
        self._outbox: collections.deque[_Pending] = collections.deque()
        self._unconfirmed: dict[int, _Pending] = {}   # delivery tag -> message
        self._by_token: dict[str, _Pending] = {}
        self._tokens = itertools.count(1)
        self._next_tag = 1
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._woken = False
        self._closed = False
        self._current: _Pending | None = None
        self._thread = None
        self._done = concurrency.Event()
        self._tick = max(0.05, options.heartbeat / 4) if options.heartbeat else TICK
        self._last_tick = 0.0
        self.reconnects = 0  # for tests and metrics

    # -- callers ---------------------------------------------------------------

    def publish(self, target: Target, body: bytes, method: str,
                timeout: float) -> None:
        """Publish and wait for the broker's confirm (see module rules)."""
        self.submit(target, body, method).wait(timeout)

    def submit(self, target: Target, body: bytes, method: str) -> Confirmation:
        """Queue a message for publishing; its :class:`Confirmation` says
        when the broker confirmed it (many can be in flight at once)."""
        pending = _Pending(target, body, method, "c%d" % next(self._tokens))
        with self._lock:
            if self._closed:
                raise exception.MessagingUnavailable(
                    reason="cast %s: the transport is closed" % method)
            if self._thread is None:
                self._thread = concurrency.spawn(self._run)
            self._outbox.append(pending)
            wake = not self._woken
            self._woken = True
        if wake:
            self._wake()
        return Confirmation(self, pending)

    def _block(self, pending: _Pending, timeout: float) -> bool:
        """Wait for ``pending`` to be done; False after ``timeout``."""
        with self._lock:
            if pending.done:
                return True
            if pending.waiter is None:
                pending.waiter = concurrency.Event()
            waiter = pending.waiter
        return waiter.wait(timeout)

    def _complete(self, done: list[_Pending]) -> None:
        """Tell the callers of ``done`` (their ``error`` set already)."""
        waiters = []
        with self._lock:
            for pending in done:
                pending.done = True
                if pending.waiter is not None:
                    waiters.append(pending.waiter)
        for waiter in waiters:
            waiter.set()

    def _withdraw(self, pending: _Pending) -> bool:
        """Give up on ``pending``: True when it was never sent."""
        with self._lock:
            pending.abandoned = True
            try:
                self._outbox.remove(pending)
            except ValueError:
                return False
            return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop the I/O thread; waiting callers get MessagingUnavailable."""
        with self._lock:
            self._closed = True
            started = self._thread is not None
        self._wake()
        if started:
            self._done.wait(timeout)
        for sock in (self._wake_r, self._wake_w):
            sock.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass  # already full of wake-ups, or closed

    # -- the I/O thread --------------------------------------------------------

    def _run(self) -> None:
        delay, failures = 0.1, 0
        conn = None
        try:
            while True:
                with self._lock:
                    if self._closed:
                        break
                if conn is None:
                    try:
                        conn = self._connect()
                        if failures:
                            LOG.warning("Cast publisher reconnected to %s after %d "
                                        "failed attempts", self._where, failures)
                        delay, failures = 0.1, 0
                    except RECOVERABLE as exc:
                        failures += 1
                        # One line per outage, not one per attempt.
                        LOG.log(logging.WARNING if failures == 1 else logging.DEBUG,
                                "Cast publisher: connecting to %s failed (%s: %s); "
                                "retrying with backoff", self._where,
                                type(exc).__name__, exc)
                        self._sleep(random.uniform(0, delay))
                        delay = min(delay * 2, self._options.reconnect_max_delay)
                        continue
                try:
                    self._flush(conn)
                    self._pump(conn)
                except (TimeoutError, *RECOVERABLE) as exc:
                    LOG.warning("Cast publisher lost its connection to %s "
                                "(%s: %s); %d unconfirmed casts will be sent "
                                "again", self._where, type(exc).__name__, exc,
                                len(self._unconfirmed))
                    self._drop(conn)
                    conn = None
        except Exception:
            LOG.exception("Cast publisher on %s died", self._where)
        finally:
            if conn is not None:
                self._drop(conn)
            self._fail_all(exception.MessagingUnavailable(
                reason="the transport to %s was closed" % self._where))
            self._done.set()

    def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when closed."""
        try:
            select.select([self._wake_r], [], [], seconds)
        except (OSError, ValueError):
            pass
        self._drain_wake()

    def _connect(self):
        conn = open_connection(self._url, self._options)
        try:
            channel = conn.channel()
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            channel.events["basic_return"].add(self._on_return)
        except BaseException:
            conn.release()
            raise
        self._channel = channel
        self._exchanges: dict[Target, str] = {}
        self._encoders: dict[Target, CastFrames] = {}
        self._next_tag = 1
        self.reconnects += 1
        return conn

    def _drop(self, conn) -> None:
        """Forget a dead connection; its unconfirmed messages go back to the
        front of the outbox, in their order."""
        with contextlib.suppress(Exception):  # already dead
            conn.release()
        with self._lock:
            ordered = [p for _, p in sorted(self._unconfirmed.items())]
            again = [p for p in ordered if not p.abandoned]
            for pending in ordered:
                if pending.abandoned:
                    self._by_token.pop(pending.token, None)
            self._unconfirmed.clear()
            self._outbox.extendleft(reversed(again))

    def _flush(self, conn) -> None:
        """Publish everything queued, in one socket write per batch.

        A cast's frames come from :class:`~flotilla.rpc.amqp_frames.CastFrames`
        (py-amqp's generic encoder cost most of a cast's CPU, and py-amqp
        writes each frame with its own sendall: a thousand small writes cost
        the broker as much as the client). An exchange declaration is a
        round trip through py-amqp: what is batched is sent first.
        """
        raw = conn.connection
        channel = self._channel
        if channel.connection is None or not channel.is_open:
            raise amqp.exceptions.RecoverableConnectionError("cast channel closed")
        write = raw.transport.write
        frames: list = []
        sent = 0

        def send_batch() -> None:
            nonlocal sent
            if frames:
                data = b"".join(frames)
                frames.clear()
                write(data)
                raw.bytes_sent += sent  # py-amqp's count: heartbeats use it
                sent = 0

        # A failure below leaves the messages not yet written among the
        # unconfirmed ones: the reconnect publishes them again, in order.
        while True:
            with self._lock:
                if not self._outbox:
                    break
                pending = self._outbox.popleft()
            target = pending.target
            encoder = self._encoders.get(target)
            if encoder is None:
                self._current = pending
                try:
                    send_batch()
                    exchange = declare_exchange(channel, self._options, target)
                except amqp.exceptions.ChannelError:
                    raise
                except BaseException:
                    with self._lock:  # not sent: first in line next time
                        self._outbox.appendleft(pending)
                    raise
                self._current = None
                self._exchanges[target] = exchange
                encoder = self._encoders[target] = CastFrames(
                    channel.channel_id, raw.frame_max, exchange,
                    target.routing_key, self._options.persistent_casts)
            tag = self._next_tag
            self._next_tag += 1
            pending.sent_at = time.monotonic()
            pending.returned = False
            self._unconfirmed[tag] = pending
            self._by_token[pending.token] = pending
            frames += encoder.frames(pending.body, pending.token)
            sent += 1
        send_batch()

    def _pump(self, conn) -> None:
        """Wait for the broker or a caller; handle what the broker sent."""
        raw = conn.connection
        sock = raw.transport.sock
        readable, _, _ = select.select([sock, self._wake_r], [], [], TICK)
        if self._wake_r in readable:
            self._drain_wake()
        if sock in readable:
            for _ in range(10000):
                try:
                    raw.drain_events(timeout=0)
                except TimeoutError:
                    break
        now = time.monotonic()
        # Heartbeats are due every heartbeat/2 s at most: looking four times
        # per heartbeat is enough (not at every flush, which under load
        # comes thousands of times a second).
        if self._options.heartbeat and now - self._last_tick >= self._tick:
            self._last_tick = now
            raw.heartbeat_tick()
        if self._unconfirmed:
            oldest = next(iter(self._unconfirmed.values()))
            if now - oldest.sent_at > CONFIRM_TIMEOUT:
                raise amqp.exceptions.RecoverableConnectionError(
                    "no confirm for %.0fs" % CONFIRM_TIMEOUT)

    def _drain_wake(self) -> None:
        # Read the wake-ups first, then clear the flag: a caller that queues
        # after this sends a new wake-up, one that queued before is flushed
        # next (clearing first could swallow a wake-up and strand a cast).
        with contextlib.suppress(BlockingIOError, OSError):
            while self._wake_r.recv(4096):
                pass
        with self._lock:
            self._woken = False

    # -- broker callbacks (on the I/O thread) ----------------------------------

    def _confirmed(self, delivery_tag: int, multiple: bool):
        if not multiple:
            pending = self._unconfirmed.pop(delivery_tag, None)
            return [pending] if pending is not None else []
        done = []
        for tag in list(self._unconfirmed):
            if tag > delivery_tag:
                break
            done.append(self._unconfirmed.pop(tag))
        return done

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        done = self._confirmed(delivery_tag, multiple)
        for pending in done:
            self._by_token.pop(pending.token, None)
            if pending.returned:
                pending.error = exception.MessageUndeliverable(
                    routing_key=pending.target.routing_key,
                    exchange=self._exchanges.get(pending.target),
                    method=pending.method)
        self._complete(done)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        done = self._confirmed(delivery_tag, multiple)
        for pending in done:
            self._by_token.pop(pending.token, None)
            pending.error = exception.MessagingUnavailable(
                reason="the broker refused cast %s (nack)" % pending.method)
        self._complete(done)

    def _on_return(self, exc, exchange, routing_key, message) -> None:
        pending = self._by_token.get(message.properties.get("message_id"))
        if pending is not None:
            pending.returned = True

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            waiting = list(self._outbox) + list(self._unconfirmed.values())
            self._outbox.clear()
            self._unconfirmed.clear()
        for pending in waiting:
            pending.error = error
        self._complete(waiting)

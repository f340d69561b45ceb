"""``rabbit://`` and ``amqp://``: RabbitMQ through kombu and py-amqp.

Topology (see DESIGN.md, "The RPC contract"):

* topic exchange ``[rpc] control_exchange`` (durable);
* ``<topic>``: shared, durable queue (quorum with ``[rpc] quorum_queues``),
  competing consumers, bound with key ``<topic>``;
* ``<topic>.<server>``: durable queue of one server, bound with that key;
  durable so casts to an agent that is restarting wait for it;
* ``<control_exchange>_fanout_<topic>``: fanout exchange; every named
  server binds its own exclusive auto-delete queue to it.

Client side: casts go through :mod:`flotilla.rpc.amqp_publisher` (one
connection per transport in confirm mode, casts of every thread pipelined,
each caller returning once the broker confirmed its own message); calls and
replies through :mod:`flotilla.rpc.amqp_connection` (a pool of warm
connections, direct reply-to). Server side: :class:`AMQPListener`, one
connection and thread per server.

Failures: a cast whose confirm did not come back is published again on a
new connection until ``[rpc] reconnect_timeout`` (so it is delivered at
least once, never lost once confirmed; servers drop the second copy by
message id). A call or reply that fails on a dead connection is retried on
a fresh one through :func:`flotilla.rpc.retry.call_with_retry` for up to
``[rpc] reconnect_timeout``. A call whose connection dies while it waits
for the reply raises MessagingUnavailable at once: its reply address died
with the connection, and resending could run the method twice. Listeners
reconnect forever, with the same backoff policy.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable

import amqp

from flotilla import concurrency, exception
from flotilla.rpc import retry
from flotilla.rpc.amqp_connection import (
    RECOVERABLE,
    ClientConnection,
    ConnectionPool,
    declare_exchange,
    open_connection,
)
from flotilla.rpc.amqp_frames import ack_frame
from flotilla.rpc.amqp_publisher import ConfirmingPublisher
from flotilla.rpc.transport import IncomingMessage, Options, Target, mask_url

LOG = logging.getLogger(__name__)


class AMQPDriver:
    """The RabbitMQ driver (see the module docstring)."""

    reply_to = "amq.rabbitmq.reply-to"

    def __init__(self, url: str, options: Options) -> None:
        self.url = url
        self.masked_url = mask_url(url)
        self.options = options
        self.pool = ConnectionPool(url, options)
        self.publisher = ConfirmingPublisher(url, options)

    def _retry(self, fn: Callable, what: str):
        return retry.call_with_retry(
            fn, retry_on=RECOVERABLE, what=what, where=self.masked_url,
            max_delay=self.options.reconnect_max_delay,
            deadline=self.options.reconnect_timeout)

    def _publish(self, op: Callable[[ClientConnection], None],
                 what: str) -> ClientConnection:
        """Run ``op`` on a pooled connection, reconnecting as needed;
        return the connection, still on loan to the caller."""
        def attempt() -> ClientConnection:
            conn = self.pool.get()
            try:
                op(conn)
            except exception.MessageUndeliverable:
                self.pool.put(conn)
                raise
            except BaseException:
                # Dead connection or closed channel: never reuse it.
                self.pool.discard(conn)
                raise
            return conn
        # Fast path: a warm connection almost always works; the retry
        # policy (and its set-up cost) only comes in once something failed.
        try:
            return attempt()
        except RECOVERABLE as exc:
            LOG.info("%s on %s failed (%s: %s); reconnecting", what,
                     self.masked_url, type(exc).__name__, exc)
        return self._retry(attempt, what)

    def cast(self, target: Target, body: bytes, method: str) -> None:
        self.publisher.publish(target, body, method,
                               timeout=self.options.reconnect_timeout)

    def submit_cast(self, target: Target, body: bytes, method: str):
        return self.publisher.submit(target, body, method)

    def call(self, target: Target, body: bytes, correlation_id: str,
             method: str, timeout: float) -> bytes:
        conn = self._publish(
            lambda c: c.publish_call(target, body, correlation_id, timeout),
            "call " + method)
        try:
            reply = conn.wait_reply(target, correlation_id, method, timeout)
        except (exception.MessagingTimeout, exception.MessageUndeliverable):
            self.pool.put(conn)
            raise
        except RECOVERABLE as exc:
            self.pool.discard(conn)
            raise exception.MessagingUnavailable(
                reason="connection to %s lost while waiting for the reply to "
                       "%s (it may or may not have run): %s: %s"
                       % (self.masked_url, method, type(exc).__name__, exc)
            ) from None
        except BaseException:
            self.pool.discard(conn)
            raise
        self.pool.put(conn)
        return reply

    def reply(self, address: str, correlation_id: str | None,
              body: bytes) -> None:
        conn = self._publish(
            lambda c: c.publish_reply(address, correlation_id, body),
            "reply")
        self.pool.put(conn)

    def listen(self, target: Target,
               handler: Callable[[IncomingMessage], None],
               capacity: threading.Semaphore) -> AMQPListener:
        return AMQPListener(self, target, handler, capacity)

    def cleanup(self) -> None:
        self.publisher.close()
        self.pool.close()


def _ack(channel, delivery_tag: int) -> None:
    """``channel.basic_ack(delivery_tag)``, its frame written directly (the
    same bytes; see :func:`flotilla.rpc.amqp_frames.ack_frame`)."""
    conn = channel.connection
    if conn is None:
        raise amqp.exceptions.RecoverableConnectionError("connection already closed")
    conn.transport.write(ack_frame(channel.channel_id, delivery_tag))
    conn.bytes_sent += 1  # py-amqp's count: heartbeats use it


class AMQPListener:
    """One server's consumer: its own connection, thread and reconnects.

    The thread owns the connection (nothing else touches it): it drains
    events with a short timeout so it can send heartbeats and notice
    ``stop()``. Each delivery takes a slot of ``capacity`` (waiting, with
    heartbeats, while all workers are busy), is acked, then handed to the
    handler - the at-most-once policy of :mod:`flotilla.rpc.server`.
    """

    TICK = 0.2  # seconds between two looks at the stop flag and heartbeats

    def __init__(self, driver: AMQPDriver, target: Target,
                 handler: Callable[[IncomingMessage], None],
                 capacity: threading.Semaphore) -> None:
        self._driver = driver
        self._options = driver.options
        self._target = target
        self._handler = handler
        self._capacity = capacity
        self._stopping = False
        self._done = concurrency.Event()
        self._ready = concurrency.Event()
        self._conn = None

    def start(self) -> None:
        """Start consuming; returns once the queues are declared and
        consumed (so a cast right after start() finds them), or after the
        first failed attempt (the thread goes on retrying)."""
        concurrency.spawn(self._run)
        self._ready.wait(10)

    def stop(self) -> None:
        self._stopping = True

    def join(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def _run(self) -> None:
        where = self._driver.masked_url
        try:
            while not self._stopping:
                try:
                    conn = retry.call_with_retry(
                        self._connect, retry_on=RECOVERABLE,
                        what="consume " + self._target.routing_key,
                        where=where, deadline=None,
                        max_delay=self._options.reconnect_max_delay,
                        should_stop=lambda: self._stopping)
                except exception.MessagingUnavailable:
                    break  # only when stopping
                finally:
                    self._ready.set()
                try:
                    self._drain(conn)
                except RECOVERABLE as exc:
                    LOG.warning("RPC server %s lost its connection to %s "
                                "(%s: %s); reconnecting",
                                self._target.routing_key, where,
                                type(exc).__name__, exc)
                finally:
                    with contextlib.suppress(Exception):  # already dead
                        conn.release()
        except Exception:
            LOG.exception("RPC listener %s died", self._target.routing_key)
        finally:
            self._done.set()

    def _connect(self):
        opts, target = self._options, self._target
        conn = open_connection(self._driver.url, opts)
        try:
            ch = conn.channel()
            ch.basic_qos(0, opts.executor_pool_size, False)
            exchange = declare_exchange(ch, opts, Target(target.topic))
            queues = []
            args = {"x-queue-type": "quorum"} if opts.quorum_queues else None
            ch.queue_declare(target.topic, durable=True, auto_delete=False,
                             arguments=args)
            ch.queue_bind(target.topic, exchange, target.topic)
            queues.append(target.topic)
            if target.server:
                key = target.routing_key
                ch.queue_declare(key, durable=True, auto_delete=False)
                ch.queue_bind(key, exchange, key)
                queues.append(key)
                fanout = declare_exchange(
                    ch, opts, Target(target.topic, fanout=True))
                # A fresh name each time: the exclusive queue of a dropped
                # connection may not be gone yet when we reconnect.
                fq = "%s.%s.%s" % (fanout, target.server, uuid.uuid4().hex[:8])
                ch.queue_declare(fq, exclusive=True, auto_delete=True)
                ch.queue_bind(fq, fanout, "")
                queues.append(fq)
            for name in queues:
                ch.basic_consume(name, callback=self._on_message)
        except BaseException:
            conn.release()
            raise
        LOG.info("RPC server %s consuming %s on %s", target.routing_key,
                 ", ".join(queues), self._driver.masked_url)
        return conn

    def _drain(self, conn) -> None:
        raw = conn.connection
        self._conn = raw
        heartbeat = self._options.heartbeat
        # Four looks per heartbeat are enough (py-amqp sends one when due);
        # drain_events returns after every frame, thousands a second.
        tick = max(0.05, heartbeat / 4) if heartbeat else self.TICK
        last = 0.0
        while not self._stopping:
            try:
                raw.drain_events(timeout=self.TICK)
            except TimeoutError:
                pass
            if heartbeat:
                now = time.monotonic()
                if now - last >= tick:
                    last = now
                    raw.heartbeat_tick()
        # Stopping: closing the channel cancels the consumers; anything
        # delivered but not acked goes back to the queue.

    def _on_message(self, message: amqp.Message) -> None:
        tag = message.delivery_info["delivery_tag"]
        while not self._capacity.acquire(timeout=self.TICK):
            if self._stopping:
                message.channel.basic_reject(tag, requeue=True)
                return
            if self._options.heartbeat:
                self._conn.heartbeat_tick()
        _ack(message.channel, tag)
        props = message.properties
        body = message.body
        if isinstance(body, str):  # py-amqp decodes when content_encoding set
            body = body.encode("utf-8")
        incoming = IncomingMessage(
            body, reply_to=props.get("reply_to"),
            correlation_id=props.get("correlation_id"),
            queue=message.delivery_info.get("routing_key") or "")
        try:
            self._handler(incoming)
        except Exception:
            self._capacity.release()
            LOG.exception("RPC handler failed on %s", incoming.queue)

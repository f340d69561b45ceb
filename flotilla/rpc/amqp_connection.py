"""AMQP connections of the client side, and the pool that shares them.

kombu and py-amqp connections are not thread-safe, so a connection is used
by one thread at a time: :class:`ConnectionPool` lends a whole
:class:`ClientConnection` to a caller for one call, cast or reply and takes
it back afterwards. Under load there are as many connections as concurrent
callers (8 callers: 8 connections); idle ones stay open (warm) and are
checked on the next loan.

A :class:`ClientConnection` has one channel, set up once: it publishes
calls with ``mandatory`` and consumes ``amq.rabbitmq.reply-to`` (no-ack) -
RabbitMQ requires the reply consumer to live on the publishing channel. No
confirms here: the reply (or a basic.return) is the confirmation, and
waiting for a confirm would add a round trip to every call. It also sends
replies. Casts have their own pipelined confirm channel
(:mod:`flotilla.rpc.amqp_publisher`).

Exchanges are declared once per connection (not per message), by clients as
well as servers, so a publish never hits a missing exchange.
"""

from __future__ import annotations

import contextlib
import logging
import select
import time
import urllib.parse

import amqp
import kombu
import kombu.exceptions

from flotilla import concurrency, exception
from flotilla.rpc.transport import Options, Target

LOG = logging.getLogger(__name__)

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"

#: Errors meaning "this connection is dead; a new one may work".
RECOVERABLE = (amqp.exceptions.RecoverableConnectionError,
               amqp.exceptions.ConnectionError,
               kombu.exceptions.OperationalError, OSError)


def kombu_urls(url: str) -> list[str]:
    """One kombu URL per broker of ``rabbit://u:p@h1,h2:5672/vhost``."""
    parts = urllib.parse.urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    return ["pyamqp://%s%s%s%s" % (userinfo, at, host, parts.path or "/")
            for host in hosts.split(",")]


def open_connection(url: str, options: Options) -> kombu.Connection:
    """A connected kombu connection (one attempt per broker, no sleeping:
    the caller's retry policy decides when to try again)."""
    conn = kombu.Connection(kombu_urls(url), heartbeat=options.heartbeat,
                            connect_timeout=5, failover_strategy="round-robin")
    try:
        conn.ensure_connection(max_retries=1, interval_start=0,
                               interval_step=0, interval_max=0)
    except BaseException:
        conn.release()
        raise
    return conn


def declare_exchange(channel, options: Options, target: Target) -> str:
    """Declare the exchange ``target`` publishes to; return its name.

    The topic exchange is durable (it carries durable queues); a fanout
    exchange is not: its queues are exclusive and die with their server.
    """
    if target.fanout:
        name = "%s_fanout_%s" % (options.control_exchange, target.topic)
        channel.exchange_declare(name, "fanout", durable=False,
                                 auto_delete=False)
    else:
        name = options.control_exchange
        channel.exchange_declare(name, "topic", durable=True,
                                 auto_delete=False)
    return name


class ClientConnection:
    """One connection with its call and cast channels (one user at a time)."""

    def __init__(self, url: str, options: Options) -> None:
        self.options = options
        self.conn = open_connection(url, options)
        self.raw = self.conn.connection
        self._tick = max(0.05, options.heartbeat / 4) if options.heartbeat \
            else 1.0
        self._last_tick = 0.0
        self._exchanges: dict[Target, str] = {}
        self._waiting: str | None = None
        self._reply: bytes | None = None
        self._call_returned: str | None = None
        self.call_ch = self.conn.channel()
        self.call_ch.events["basic_return"].add(self._on_call_return)
        self.call_ch.basic_consume(DIRECT_REPLY_TO, no_ack=True,
                                   callback=self._on_reply)

    # -- callbacks, run by drain_events on the owning thread --

    def _on_reply(self, message: amqp.Message) -> None:
        corr = message.properties.get("correlation_id")
        if corr is not None and corr == self._waiting:
            self._reply = message.body
        # else: the late reply of a call that timed out; dropped.

    def _on_call_return(self, exc, exchange, routing_key, message) -> None:
        self._call_returned = message.properties.get("correlation_id")

    # -- health --

    def check(self) -> None:
        """Raise a RECOVERABLE error when the broker dropped us while idle.

        A closed connection makes the socket readable (connection.close
        frame, then EOF), so a select with no timeout finds it without a
        round trip; stray frames (late replies) are drained on the way.
        """
        sock = self.raw.transport.sock if self.raw.transport else None
        if sock is None:
            raise amqp.exceptions.RecoverableConnectionError("closed")
        for _ in range(100):
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                break
            try:
                self.raw.drain_events(timeout=0.01)
            except TimeoutError:
                break
        if self.options.heartbeat:
            now = time.monotonic()
            if now - self._last_tick > self._tick:
                self._last_tick = now
                self.raw.heartbeat_tick()

    def _exchange(self, channel, target: Target) -> str:
        name = self._exchanges.get(target)
        if name is None:
            name = declare_exchange(channel, self.options, target)
            self._exchanges[target] = name
        return name

    # -- operations --

    def publish_call(self, target: Target, body: bytes, corr: str,
                     ttl: float) -> None:
        exchange = self._exchange(self.call_ch, target)
        self._waiting, self._reply, self._call_returned = corr, None, None
        # expiration: the broker itself drops a call nobody waits for.
        msg = amqp.Message(body, content_type="application/json",
                           correlation_id=corr, reply_to=DIRECT_REPLY_TO,
                           expiration=str(max(1, int(ttl * 1000))))
        self.call_ch.basic_publish(msg, exchange, target.routing_key,
                                   mandatory=True)

    def wait_reply(self, target: Target, corr: str, method: str,
                   timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self._reply is not None:
                    return self._reply
                if self._call_returned == corr:
                    raise exception.MessageUndeliverable(
                        routing_key=target.routing_key,
                        exchange=self._exchanges.get(target), method=method)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise exception.MessagingTimeout(
                        timeout=timeout, method=method,
                        topic=target.routing_key)
                try:
                    self.raw.drain_events(timeout=min(remaining, self._tick))
                except TimeoutError:
                    pass
                if self.options.heartbeat:
                    self.raw.heartbeat_tick()
        finally:
            self._waiting = self._reply = None

    def publish_reply(self, address: str, corr: str | None,
                      body: bytes) -> None:
        msg = amqp.Message(body, content_type="application/json",
                           correlation_id=corr)
        self.call_ch.basic_publish(msg, "", address)

    def close(self) -> None:
        # Closing a dead connection may fail; that changes nothing.
        with contextlib.suppress(Exception):
            self.conn.release()


class ConnectionPool:
    """Lends :class:`ClientConnection` objects to one thread at a time."""

    def __init__(self, url: str, options: Options) -> None:
        self._url = url
        self._options = options
        self._idle: list[ClientConnection] = []
        self._lock = concurrency.Lock()
        self._closed = False

    def get(self) -> ClientConnection:
        """A healthy connection (may raise a RECOVERABLE error)."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return ClientConnection(self._url, self._options)
            try:
                conn.check()
                return conn
            except RECOVERABLE as exc:
                LOG.info("Dropping a broken idle connection: %s: %s",
                         type(exc).__name__, exc)
                conn.close()

    def put(self, conn: ClientConnection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    def discard(self, conn: ClientConnection) -> None:
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

"""Transports: which wire the RPC layer uses, and the driver interface.

:func:`get_transport` reads ``[DEFAULT] transport_url`` and the ``[rpc]``
options once and returns a :class:`Transport` holding a driver:

* ``rabbit://`` / ``amqp://`` -> :mod:`flotilla.rpc.amqp_driver` (RabbitMQ
  through kombu/py-amqp);
* ``memory://`` -> :mod:`flotilla.rpc.memory_driver`, the one process-wide
  in-process broker (all services of the process see each other).

Everything above the driver (envelope, signing, versioning, dispatch,
exception mapping) is shared, so both wires behave the same; a driver only
moves opaque bodies. A driver implements:

``cast(target, body, method)``
    Deliver ``body`` to the queue(s) of ``target`` or raise
    MessageUndeliverable when nothing is bound; return only once the
    broker has accepted it (publisher confirm).
``submit_cast(target, body, method)``
    Queue the same delivery and return at once a confirmation whose
    ``wait(timeout)`` returns once the broker confirmed it (or raises as
    ``cast`` would); many may be in flight.
``call(target, body, correlation_id, method, timeout)``
    Same routing; wait for the reply body carrying ``correlation_id``;
    MessagingTimeout after ``timeout`` seconds.
``reply(address, correlation_id, body)``
    Send a reply; a vanished caller is not an error.
``listen(target, handler, capacity)``
    A listener (``start``/``stop``/``join``) consuming ``<topic>``, or
    ``<topic>.<server>`` plus the fanout queue when ``target.server`` is set.
    For each message it takes a slot of ``capacity`` (a semaphore, so at
    most that many messages are in flight), acknowledges it, then calls
    ``handler(IncomingMessage)``; the handler must release the slot.
``cleanup()``
    Close every connection.

The broker URL is only ever logged or put in an exception through
:func:`mask_url`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol

from oslo_config import cfg

from flotilla.conf.loader import ConfigError
from flotilla.rpc import signing
from flotilla.rpc.replay import MemorySeenStore, SeenStore

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a message goes: a topic, optionally one server, or everyone."""

    topic: str
    server: str | None = None
    fanout: bool = False

    @property
    def routing_key(self) -> str:
        return "%s.%s" % (self.topic, self.server) if self.server \
            else self.topic


@dataclasses.dataclass
class IncomingMessage:
    """A message as a driver hands it to a server (body not parsed yet).

    ``reply_to``/``correlation_id`` are the transport-level reply address,
    so even a body that cannot be parsed gets an error reply.
    """

    body: bytes
    reply_to: str | None = None
    correlation_id: str | None = None
    queue: str = ""


@dataclasses.dataclass(frozen=True)
class Options:
    """The ``[rpc]`` options, read once when the transport is created."""

    control_exchange: str
    call_timeout: float
    signing_key: str | None
    heartbeat: int
    quorum_queues: bool
    executor_pool_size: int
    max_message_size: int
    reconnect_max_delay: float
    reconnect_timeout: float
    cast_ttl: float
    persistent_casts: bool = True
    max_clock_skew: float = 30.0
    host_key: str | None = None     # an agent's own key ([rpc] host_key)
    host: str | None = None         # the agent's host, the signer it names

    @property
    def keyring(self) -> signing.Keyring:
        return signing.Keyring(self.signing_key, self.host_key, self.host)

    @property
    def signed(self) -> bool:
        return bool(self.signing_key or self.host_key)

    @classmethod
    def from_conf(cls, conf: cfg.ConfigOpts) -> Options:
        rpc = conf.rpc
        return cls(control_exchange=rpc.control_exchange,
                   call_timeout=rpc.call_timeout,
                   signing_key=rpc.signing_key or None,
                   host_key=rpc.host_key or None,
                   host=conf.host if rpc.host_key else None,
                   heartbeat=rpc.heartbeat,
                   quorum_queues=rpc.quorum_queues,
                   executor_pool_size=rpc.executor_pool_size,
                   max_message_size=rpc.max_message_size,
                   reconnect_max_delay=rpc.reconnect_max_delay,
                   reconnect_timeout=rpc.reconnect_timeout,
                   cast_ttl=rpc.cast_ttl,
                   persistent_casts=rpc.persistent_casts,
                   max_clock_skew=rpc.max_clock_skew)


class Listener(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def join(self, timeout: float | None = None) -> bool: ...


class Driver(Protocol):
    reply_to: str

    def cast(self, target: Target, body: bytes, method: str) -> None: ...
    def submit_cast(self, target: Target, body: bytes, method: str) -> Any: ...
    def call(self, target: Target, body: bytes, correlation_id: str,
             method: str, timeout: float) -> bytes: ...
    def reply(self, address: str, correlation_id: str | None,
              body: bytes) -> None: ...
    def listen(self, target: Target,
               handler: Callable[[IncomingMessage], None],
               capacity: threading.Semaphore) -> Listener: ...
    def cleanup(self) -> None: ...


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (safe to log)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable transport URL>"
    if not parts.netloc:
        return "%s://%s" % (parts.scheme, parts.path)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    netloc = userinfo + at + hosts
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class Transport:
    """A configured wire: ``options``, the ``driver``, the masked URL and the
    replay store its servers share (:mod:`flotilla.rpc.replay`)."""

    def __init__(self, url: str, options: Options, driver: Any,
                 seen_store: SeenStore | None = None) -> None:
        self.url = url
        self.masked_url = mask_url(url)
        self.options = options
        self.driver = driver
        self.seen_store = seen_store or MemorySeenStore()

    def cleanup(self) -> None:
        """Close every connection; the transport is unusable afterwards."""
        self.driver.cleanup()

    def __repr__(self) -> str:
        return "<Transport %s>" % self.masked_url


class InsecureTransport(ConfigError):
    """A broker transport without a signing key, not explicitly allowed."""


def get_transport(conf: cfg.ConfigOpts, url: str | None = None,
                  seen_store: SeenStore | None = None) -> Transport:
    """The transport for ``[DEFAULT] transport_url`` (or ``url``).

    On a broker (``rabbit://``) without ``[rpc] signing_key`` anyone who can
    publish to the broker could make any service do anything, so this
    raises :class:`InsecureTransport` naming the option, unless ``[rpc]
    allow_unsigned_messages`` says so explicitly (then a warning is logged).
    """
    url = url or conf.transport_url
    options = Options.from_conf(conf)
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme in ("rabbit", "amqp") and not options.signed:
        if not conf.rpc.allow_unsigned_messages:
            raise InsecureTransport(
                "[rpc] signing_key is not set: on %s anyone who can publish to "
                "the broker could forge messages; set it (the same key in every "
                "service), or set [rpc] allow_unsigned_messages = true to run "
                "unsigned" % mask_url(url))
        LOG.warning("[rpc] signing_key is not set and allow_unsigned_messages "
                    "is true: RPC messages on %s are neither signed nor "
                    "checked", mask_url(url))
    if scheme == "memory":
        from flotilla.rpc import memory_driver
        driver = memory_driver.MemoryDriver(options)
    elif scheme in ("rabbit", "amqp"):
        from flotilla.rpc import amqp_driver
        driver = amqp_driver.AMQPDriver(url, options)
    else:
        raise ValueError("unsupported transport scheme %r" % scheme)
    return Transport(url, options, driver, seen_store)

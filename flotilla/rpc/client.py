"""RPCClient: calls and casts to a topic, a server or every server.

Rules:

* ``RPCClient(transport, topic, version="1.0", version_cap=None)``;
  :meth:`RPCClient.prepare` returns a copy with any of ``server``,
  ``version``, ``timeout``, ``fanout`` changed (it never mutates, so a
  client can be shared by threads).
* A version above ``version_cap`` raises UnsupportedVersion locally, in
  ``prepare`` and again when sending; :meth:`can_send_version` lets a caller
  pick an older form instead. ``version_cap`` may be a callable evaluated
  each time (``[upgrade_levels] ... = auto``, see :mod:`.upgrade`).
* ``call`` returns the JSON result, raises MessagingTimeout after
  ``timeout`` (default ``[rpc] call_timeout``), MessageUndeliverable when no
  queue is bound, or the remote exception (same class from
  :mod:`flotilla.exception`, else RemoteError). A call's ttl is its
  timeout: a server drops it unanswered once the caller stopped waiting.
* ``cast`` returns once the broker confirmed the message (or raises
  MessageUndeliverable); a fanout cast reaches every server of the topic.
  ``cast_async`` sends the same cast without waiting and returns a
  confirmation whose ``wait(timeout=None)`` returns once the broker
  confirmed it (or raises as ``cast`` would): a caller with many casts to
  send keeps them in flight together. A call cannot be fanout.
* Arguments must be JSON-able or versioned objects (:mod:`flotilla.objects`,
  sent in their primitive form; results come back as objects too);
  TypeError otherwise, nothing is sent. The encoded body is at most
  ``[rpc] max_message_size`` (InvalidMessage).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flotilla import exception, objects
from flotilla.context import RequestContext
from flotilla.rpc import envelope, serializer, versioning
from flotilla.rpc.transport import Target, Transport

_UNSET: Any = object()


class CastConfirmation:
    """What ``cast_async`` returns: ``wait()`` for the broker's confirm."""

    def __init__(self, confirmation: Any, default_timeout: float) -> None:
        self._confirmation = confirmation
        self._timeout = default_timeout

    def done(self) -> bool:
        return self._confirmation.done()

    def wait(self, timeout: float | None = None) -> None:
        self._confirmation.wait(self._timeout if timeout is None else timeout)


class RPCClient:
    """A client of one topic; see the module rules."""

    def __init__(self, transport: Transport, topic: str,
                 version: str = "1.0",
                 version_cap: str | Callable[[], str | None] | None = None,
                 server: str | None = None, timeout: float | None = None,
                 fanout: bool = False) -> None:
        versioning.parse(version)
        if isinstance(version_cap, str):
            versioning.parse(version_cap)
        self.transport = transport
        self.topic = topic
        self.version = version
        self.version_cap = version_cap
        self.server = server
        self.timeout = timeout
        self.fanout = fanout

    def prepare(self, server: str | None = _UNSET, version: str = _UNSET,
                timeout: float | None = _UNSET,
                fanout: bool = _UNSET) -> RPCClient:
        """A copy of this client with the given attributes changed."""
        new = RPCClient(
            self.transport, self.topic,
            version=self.version if version is _UNSET else version,
            version_cap=self.version_cap,
            server=self.server if server is _UNSET else server,
            timeout=self.timeout if timeout is _UNSET else timeout,
            fanout=self.fanout if fanout is _UNSET else fanout)
        new._check_cap()
        return new

    @property
    def current_cap(self) -> str | None:
        """The cap in force now (evaluated when it is a callable)."""
        cap = self.version_cap
        return cap() if callable(cap) else cap

    def can_send_version(self, version: str | None = None) -> bool:
        """True when ``version`` (default: this client's) is within the cap."""
        return versioning.within_cap(version or self.version, self.current_cap)

    def _check_cap(self) -> None:
        cap = self.current_cap
        if not versioning.within_cap(self.version, cap):
            raise exception.UnsupportedVersion(
                "Version %s of %s is above the version cap %s"
                % (self.version, self.topic, cap))

    def _target(self) -> Target:
        return Target(self.topic, self.server, self.fanout)

    def _encode(self, body: dict) -> bytes:
        options = self.transport.options
        key, signer = options.keyring.sending(self.topic, self.server)
        data = envelope.encode(body, key, signer)
        if len(data) > options.max_message_size:
            raise exception.InvalidMessage(
                reason="%s: message of %d bytes exceeds max_message_size %d"
                % (body["method"], len(data), options.max_message_size))
        return data

    def cast(self, ctxt: RequestContext | None, method: str,
             **kwargs: Any) -> None:
        """Send without waiting for a result (confirmed by the broker)."""
        self._check_cap()
        options = self.transport.options
        body = envelope.build_request(ctxt, method, objects.serialize(kwargs),
                                      self.version, reply_to=None,
                                      ttl=options.cast_ttl)
        self.transport.driver.cast(self._target(), self._encode(body), method)

    def cast_async(self, ctxt: RequestContext | None, method: str,
                   **kwargs: Any) -> CastConfirmation:
        """Send a cast without waiting for its confirm (see module rules)."""
        self._check_cap()
        options = self.transport.options
        body = envelope.build_request(ctxt, method, objects.serialize(kwargs),
                                      self.version, reply_to=None,
                                      ttl=options.cast_ttl)
        return CastConfirmation(self.transport.driver.submit_cast(
            self._target(), self._encode(body), method), options.reconnect_timeout)

    def call(self, ctxt: RequestContext | None, method: str,
             **kwargs: Any) -> Any:
        """Send and wait for the result (see the module rules)."""
        if self.fanout:
            raise exception.InvalidMessage(
                reason="%s: a fanout message cannot be a call" % method)
        self._check_cap()
        options = self.transport.options
        timeout = self.timeout if self.timeout is not None \
            else options.call_timeout
        driver = self.transport.driver
        body = envelope.build_request(ctxt, method, objects.serialize(kwargs),
                                      self.version, reply_to=driver.reply_to,
                                      ttl=timeout)
        data = driver.call(self._target(), self._encode(body),
                           body["msg_id"], method, timeout)
        reply = envelope.decode_reply(data, key=options.keyring.checking_reply(
                                          self.topic, self.server),
                                      max_size=options.max_message_size)
        if reply["msg_id"] != body["msg_id"]:
            raise exception.InvalidMessage(
                reason="reply to %s carries msg_id %s"
                % (body["msg_id"], reply["msg_id"]))
        if "failure" in reply:
            raise serializer.exception_from_failure(reply["failure"])
        return objects.deserialize(reply["result"])

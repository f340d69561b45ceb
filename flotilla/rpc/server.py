"""RPCServer: consume a topic and run endpoint methods on a worker pool.

Rules:

* ``RPCServer(transport, topic, server=None, endpoints=[...])``. With
  ``server=None`` it consumes only the shared queue ``<topic>`` (competing
  consumers). With a server name it consumes ``<topic>.<server>``, the
  fanout queue of the topic, and also ``<topic>``.
* ``start()`` begins consuming; ``stop()`` stops consuming (returns fast);
  ``wait(timeout)`` lets in-flight methods finish within ``timeout``,
  closes the connections and returns True when everything finished.
* Methods run on a :class:`flotilla.concurrency.WorkerPool` of
  ``[rpc] executor_pool_size``; at most that many messages are in flight
  (the capacity semaphore, and the AMQP prefetch is the same number).
* Ack policy: a message is acknowledged when it is handed to a worker,
  before it runs (at most once, as oslo.messaging does). RPC methods here
  boot, stop and migrate guests and are not idempotent; running one twice
  after a redelivery is worse than not running it, and a caller of a call
  learns of a loss through its timeout. A cast confirmed by the broker is
  still never lost to a dropped connection: it sits in a durable queue
  until a server takes it.
* Every rejected message (bad body, bad signature, unknown method, wrong
  arguments, unsupported version) gives exactly one WARNING log line with
  the reason, an error reply when the sender waits for one (a transport
  reply address is present), and the server keeps serving. Expired
  messages are dropped with a log line and no reply.
* A message whose id this server saw before its deadline is a duplicate
  (a replay, or a publisher's retry after a lost confirm) and is dropped
  with a log line and no reply, before any endpoint code runs; see
  :mod:`flotilla.rpc.replay` for what guarantees this across processes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from flotilla import concurrency, exception
from flotilla.rpc import envelope, serializer
from flotilla.rpc.dispatcher import Dispatcher
from flotilla.rpc.transport import IncomingMessage, Target, Transport

LOG = logging.getLogger(__name__)

# Raised before any endpoint code ran: the message itself was refused.
_REFUSALS = (exception.InvalidMessage, exception.UnknownMethod,
             exception.UnsupportedVersion)


class RPCServer:
    """Serves ``endpoints`` on ``topic``; see the module rules."""

    def __init__(self, transport: Transport, topic: str,
                 server: str | None = None,
                 endpoints: Iterable[Any] = ()) -> None:
        self.transport = transport
        self.topic = topic
        self.server = server
        self.dispatcher = Dispatcher(list(endpoints), topic)
        self._pool: concurrency.WorkerPool | None = None
        self._listener = None
        self._name = "%s.%s" % (topic, server) if server else topic

    def start(self) -> None:
        """Start consuming (idempotent while running)."""
        if self._listener is not None:
            return
        size = self.transport.options.executor_pool_size
        self._pool = concurrency.WorkerPool(size, name="rpc-" + self._name)
        # Green under eventlet: the threading module is monkey-patched.
        capacity = threading.Semaphore(size)
        self._capacity = capacity
        self._listener = self.transport.driver.listen(
            Target(self.topic, self.server), self._handle, capacity)
        self._listener.start()
        LOG.info("RPC server %s consuming on %s (methods: %s)", self._name,
                 self.transport.masked_url,
                 ", ".join(self.dispatcher.methods()))

    def stop(self) -> None:
        """Stop consuming new messages; in-flight ones keep running."""
        if self._listener is not None:
            self._listener.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Finish in-flight work within ``timeout``; True when all done."""
        listener, pool = self._listener, self._pool
        if listener is None or pool is None:
            return True
        listener.stop()
        joined = listener.join(timeout)
        finished = pool.shutdown(timeout)
        self._listener = self._pool = None
        return bool(joined and finished)

    # -- called by the driver's listener, slot of capacity already taken --

    def _handle(self, message: IncomingMessage) -> None:
        try:
            future = self._pool.submit(self._process, message)
        except RuntimeError:  # pool shut down while the message arrived
            self._capacity.release()
            LOG.warning("RPC server %s stopping: dropped a message",
                        self._name)
            return
        future.add_done_callback(lambda _f: self._capacity.release())

    def _process(self, message: IncomingMessage) -> None:
        options = self.transport.options
        try:
            request = envelope.decode_request(
                message.body,
                key=lambda signer: options.keyring.checking(signer, message.queue),
                max_size=options.max_message_size,
                max_skew=options.max_clock_skew)
        except envelope.Expired as exc:
            LOG.warning("Dropped message on %s: %s", message.queue, exc)
            return
        except exception.InvalidMessage as exc:
            LOG.warning("Rejected message on %s: %s", message.queue,
                        exc.kwargs.get("reason", exc))
            # The request's msg_id is unknown; the transport's correlation
            # id is the same value (clients set both).
            self._reply(message, message.correlation_id, failure=exc)
            return
        if not self._first_sighting(request, message.queue):
            return
        wants_reply = request.reply_to is not None
        try:
            result = self.dispatcher.dispatch(request)
        except _REFUSALS as exc:
            LOG.warning("Rejected message %s (%s) on %s: %s", request.msg_id,
                        request.method, message.queue, exc)
            if wants_reply:
                self._reply(message, request.msg_id, failure=exc, signer=request.signer)
            return
        except Exception as exc:
            with request.context:
                if wants_reply:
                    # The caller gets the exception; a debug trace is enough.
                    LOG.debug("%s raised %s: %s", request.method,
                              type(exc).__name__, exc, exc_info=True)
                else:
                    LOG.exception("Cast %s failed", request.method)
            if wants_reply:
                self._reply(message, request.msg_id, failure=exc, signer=request.signer)
            return
        if wants_reply:
            self._reply(message, request.msg_id, result=result, signer=request.signer)

    def _first_sighting(self, request: envelope.Request, queue: str) -> bool:
        """Record the message; False (logged) when it is a duplicate."""
        store = self.transport.seen_store
        expires = request.deadline + self.transport.options.max_clock_skew
        try:
            first = store.first_sighting("%s/%s" % (self._name, request.msg_id),
                                         expires)
        except Exception as exc:
            # The store is unreachable (the database restarting): running
            # the message is safer than losing it; a copy, if any, may run.
            LOG.warning("Replay check of %s (%s) on %s failed, running it "
                        "anyway: %s: %s", request.msg_id, request.method, queue,
                        type(exc).__name__, exc)
            return True
        if not first:
            LOG.warning("Dropped duplicate message %s (%s) on %s: already "
                        "received", request.msg_id, request.method, queue)
        return first

    def _reply(self, message: IncomingMessage, msg_id: str | None,
               result: Any = None, failure: BaseException | None = None,
               signer: str | None = None) -> None:
        """Answer a call; signed so that ``signer`` (the caller, when an
        agent) can check it."""
        if not message.reply_to:
            return
        key, me = self.transport.options.keyring.replying(signer, message.queue)
        if failure is not None:
            body = envelope.build_reply(
                msg_id, failure=serializer.failure_from_exception(failure))
            data = envelope.encode(body, key, me)
        else:
            try:
                data = envelope.encode(
                    envelope.build_reply(msg_id, result=result), key, me)
            except (TypeError, ValueError) as exc:
                LOG.warning("Result of %s is not JSON-able: %s", msg_id, exc)
                bad = exception.InvalidMessage(
                    reason="result is not JSON-able: %s" % exc)
                data = envelope.encode(envelope.build_reply(
                    msg_id, failure=serializer.failure_from_exception(bad)),
                    key, me)
        try:
            self.transport.driver.reply(message.reply_to,
                                        message.correlation_id, data)
        except exception.MessagingException as exc:
            LOG.warning("Could not reply to %s: %s", msg_id, exc)

"""The agent's one connection to libvirt, and libvirt's event loop.

* libvirt's default event loop runs on a native thread of its own (started
  once per process), so keepalive probes, the close callback and domain
  events are processed even while every other thread is busy or green.
* One connection per agent to ``[libvirt] connection_uri``. When it closes
  (libvirtd restarted, keepalive timeout) the close callback marks it
  broken; a watcher, and every caller, reconnect with exponential backoff
  and jitter (tenacity) and re-register the lifecycle event callback.
* Every libvirt call that may block goes through :meth:`Host.call`, i.e.
  ``flotilla.concurrency.run_blocking``, so it never stalls an RPC loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import libvirt
import tenacity

from compute.virt.libvirt.events import EventDispatcher
from flotilla import concurrency, exception

LOG = logging.getLogger(__name__)

# Errors that mean "the connection is gone", not "the request was wrong".
_CONNECTION_ERRORS = {libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_NO_CONNECT,
                      libvirt.VIR_ERR_INVALID_CONN, libvirt.VIR_ERR_RPC}
_CONNECTION_DOMAINS = {libvirt.VIR_FROM_REMOTE, libvirt.VIR_FROM_RPC}

_loop_lock = threading.Lock()
_loop_started = False


def _ignore_libvirt_error(ctx, err) -> None:
    """libvirt prints every error to stderr by default; we raise them."""


def start_event_loop() -> None:
    """Register libvirt's default event implementation and run it on a
    native thread. Idempotent; must happen before the first connection is
    opened for keepalive and events to work on it."""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.registerErrorHandler(_ignore_libvirt_error, None)
        libvirt.virEventRegisterDefaultImpl()
        concurrency.spawn_native(_run_event_loop, name="libvirt-event-loop")
        _loop_started = True


def _run_event_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except Exception:  # keep the loop alive whatever a callback did
            LOG.exception("libvirt event loop iteration failed")


def is_connection_error(exc: BaseException) -> bool:
    if not isinstance(exc, libvirt.libvirtError):
        return False
    code = exc.get_error_code()
    return (code in _CONNECTION_ERRORS
            or (code == libvirt.VIR_ERR_INTERNAL_ERROR
                and exc.get_error_domain() in _CONNECTION_DOMAINS))


class Host:
    """A libvirt connection that heals itself."""

    def __init__(self, uri: str, keepalive_interval: int = 5,
                 keepalive_count: int = 3, reconnect_max_delay: float = 10.0,
                 reconnect_timeout: float = 60.0) -> None:
        self.uri = uri
        self.keepalive_interval = keepalive_interval
        self.keepalive_count = keepalive_count
        self.reconnect_max_delay = reconnect_max_delay
        self.reconnect_timeout = reconnect_timeout
        self.events = EventDispatcher()
        self._conn: libvirt.virConnect | None = None
        self._broken = False
        self._closed = False
        self._connect_lock = concurrency.Lock()
        self.connect_count = 0  # how many connections were opened (tests)

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Open the connection (waiting up to reconnect_timeout) and start
        the event dispatcher and the reconnect watcher."""
        start_event_loop()
        self.events.start()
        self.get_connection()
        concurrency.spawn(self._watch_connection)

    def close(self) -> None:
        self._closed = True
        self.events.stop()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.unregisterCloseCallback()
            except libvirt.libvirtError:
                pass
            try:
                concurrency.run_blocking(conn.close)
            except libvirt.libvirtError:
                pass

    @property
    def is_test_driver(self) -> bool:
        return self.uri.startswith("test:")

    # --- the connection ------------------------------------------------------

    def get_connection(self) -> libvirt.virConnect:
        """The live connection, reconnecting first when it broke; raises
        HypervisorUnavailable after reconnect_timeout seconds."""
        conn = self._conn
        if conn is not None and not self._broken:
            return conn
        if self._closed:
            raise exception.HypervisorUnavailable(uri=self.uri,
                                                  reason="driver closed")
        with self._connect_lock:
            if self._conn is None or self._broken:
                self._conn = self._connect_with_retry()
                self._broken = False
            return self._conn

    def _connect_with_retry(self) -> libvirt.virConnect:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(libvirt.libvirtError),
            wait=tenacity.wait_random_exponential(
                multiplier=0.2, max=self.reconnect_max_delay),
            stop=tenacity.stop_after_delay(self.reconnect_timeout),
            sleep=concurrency.sleep,
            before_sleep=lambda state: LOG.warning(
                "cannot connect to %s (attempt %d): %s", self.uri,
                state.attempt_number, state.outcome.exception()),
            reraise=True)
        try:
            return retrying(self._open)
        except libvirt.libvirtError as exc:
            raise exception.HypervisorUnavailable(
                uri=self.uri, reason=exc.get_error_message()) from exc

    def _open(self) -> libvirt.virConnect:
        conn = concurrency.run_blocking(libvirt.open, self.uri)
        if not self.is_test_driver and self.keepalive_interval > 0:
            conn.setKeepAlive(self.keepalive_interval, self.keepalive_count)
        conn.registerCloseCallback(self._on_close, None)
        # Callbacks die with the connection: register them on each new one.
        conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                    self.events.on_libvirt_event, None)
        conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
                                    self.events.on_device_removed, None)
        conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_IO_ERROR_REASON,
                                    self.events.on_io_error, None)
        self.connect_count += 1
        if self.connect_count > 1:
            LOG.info("reconnected to %s", self.uri)
        return conn

    def _on_close(self, conn, reason, opaque) -> None:
        # On libvirt's loop thread: only flip a flag; the watcher (or the
        # next caller) reconnects. Closing the handle here could deadlock.
        LOG.warning("connection to %s closed (reason %s)", self.uri, reason)
        self._broken = True

    def _watch_connection(self) -> None:
        """Reconnect in the background after a close, so lifecycle events
        flow again without waiting for the next request."""
        while not self._closed:
            if self._broken:
                try:
                    self.get_connection()
                except exception.HypervisorUnavailable:
                    pass  # get_connection already backed off; try again
            concurrency.sleep(0.5)

    # --- calls ---------------------------------------------------------------

    def call(self, fn: Callable, *args, **kwargs) -> Any:
        """``fn(*args, **kwargs)`` through run_blocking; a lost connection
        becomes HypervisorUnavailable (and triggers a reconnect)."""
        try:
            return concurrency.run_blocking(fn, *args, **kwargs)
        except libvirt.libvirtError as exc:
            if is_connection_error(exc):
                self._broken = True
                raise exception.HypervisorUnavailable(
                    uri=self.uri, reason=exc.get_error_message()) from exc
            raise

    def with_connection(self, fn: Callable[[libvirt.virConnect], Any],
                        retry: bool = True) -> Any:
        """``fn(conn)``; when the connection turns out dead and ``retry``
        (for calls that are safe to repeat), reconnect and try once more."""
        try:
            return self.call(fn, self.get_connection())
        except exception.HypervisorUnavailable:
            if not retry or self._closed:
                raise
            return self.call(fn, self.get_connection())

    def lookup(self, uuid: str) -> libvirt.virDomain | None:
        """The domain of ``uuid``, or None when it does not exist."""
        def find(conn):
            try:
                return conn.lookupByUUIDString(uuid)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return None
                raise
        return self.with_connection(find)

"""Serving the API app with waitress.

:class:`WSGIService` has the start()/stop()/alive() shape flotilla.service.
run_daemon drives: start() binds, serves in a background thread (port 0
picks a free port, see :attr:`port`) and returns once the socket answers
HTTP; stop() stops accepting, lets requests in progress finish within the
grace period and joins the thread; alive() asks the server over HTTP.

Why waitress (see the README's dependency section): its one I/O thread
reads every request, headers and body, without blocking, and only a
complete request reaches the worker threads; so slow or idle clients hold a
socket and a small buffer each, never a worker, and the API keeps answering
others whatever they do. Limits on top of that:

* a request's headers must arrive within ``[api] client_header_timeout``
  seconds of its first byte (checked every second), a connection idle
  longer than ``[api] client_idle_timeout`` is closed, and at most
  ``[api] max_connections`` are open at once;
* headers are at most 64 KiB, bodies at most the larger of ``[api]
  max_request_body_size`` and ``[image] max_image_size`` (the app bounds
  each route again);
* HTTP parsing is strict: two different ``Content-Length`` headers are a
  400, a ``Transfer-Encoding: chunked`` body is de-chunked and given to the
  app with its length.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time

from waitress.server import TcpWSGIServer

from api import body_spool

LOG = logging.getLogger(__name__)

# What the I/O thread asks of a socket per read. waitress reads 8 KiB by
# default: a 215 MiB snapshot upload then took 0.42 s of select-loop turns
# on loopback, against 0.15 s with 1 MiB (measured here, tools/bench/
# snapshot.py's upload phase). A read only takes what has arrived, so a
# small request still costs one small buffer.
RECV_BYTES = 1024 * 1024

# Wildcard bind addresses, and where to reach them from this host.
_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


class _Server(TcpWSGIServer):
    """waitress's server with a deadline for reading a request's headers."""

    header_timeout = 10.0

    def maintenance(self, now):
        super().maintenance(now)
        for channel in list(self.active_channels.values()):
            request = channel.request
            if request is None or request.headers_finished:
                channel.__dict__.pop("_header_clock", None)
                continue
            clock = channel.__dict__.get("_header_clock")
            if clock is None or clock[0] is not request:
                channel._header_clock = (request, now)
            elif now - clock[1] > self.header_timeout:
                LOG.info("Closing a connection from %s: request headers not "
                         "complete after %.0fs", channel.addr, self.header_timeout)
                channel.will_close = True


class WSGIService:
    def __init__(self, app, host: str, port: int, threads: int = 8,
                 name: str = "flotilla-api", on_stop=None, *,
                 header_timeout: float = 10.0, idle_timeout: float = 60.0,
                 max_connections: int = 200,
                 max_body_size: int = 11 * 1024 ** 3,
                 image_store_path: str | None = None) -> None:
        """``on_stop`` runs after the server stopped (to close the RPC
        transport the app casts on). With ``image_store_path``, image data
        uploads are received into the store (api.body_spool)."""
        self.app = app
        self._on_stop = on_stop
        self.host = host
        self.name = name
        self.threads = threads
        self._server = _Server(
            app, host=host, port=port, threads=threads, ident=name,
            channel_timeout=idle_timeout, cleanup_interval=1,
            connection_limit=max_connections,
            max_request_header_size=64 * 1024,
            max_request_body_size=max_body_size, recv_bytes=RECV_BYTES,
            expose_tracebacks=False, _start=False)
        self._server.header_timeout = header_timeout
        if image_store_path:
            self._server.channel_class = body_spool.channel_class(image_store_path)
        self._thread: threading.Thread | None = None

    @classmethod
    def from_conf(cls, app, conf, on_stop=None, name: str = "flotilla-api") -> WSGIService:
        """The API server as ``[api]`` configures it."""
        api = conf.api
        return cls(app, api.bind_host, api.bind_port, threads=api.workers, name=name,
                   on_stop=on_stop, header_timeout=api.client_header_timeout,
                   idle_timeout=api.client_idle_timeout,
                   max_connections=api.max_connections,
                   max_body_size=max(api.max_request_body_size,
                                     conf.image.max_image_size),
                   image_store_path=conf.image.store_path)

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    def start(self, ready_timeout: float = 30) -> None:
        self._server.accept_connections()
        self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
        self._thread.start()
        # Started means answering (systemd's READY=1 follows start()).
        deadline = time.monotonic() + ready_timeout
        while (verdict := self.probe(timeout=5)) is not True:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("%s does not answer on %s:%s: %s"
                                   % (self.name, self.host, self.port, verdict))
            self._thread.join(0.05)    # a pause, or the thread's end
        LOG.info("%s listening on http://%s:%s with %d threads", self.name,
                 self.host, self.port, self.threads)

    def _busy(self) -> bool:
        """A request is being read, waits for a worker, runs or is being
        answered (an idle keep-alive connection is not busy)."""
        dispatcher = self._server.task_dispatcher
        if dispatcher.active_count or dispatcher.queue:
            return True
        for channel in list(self._server._map.values()):
            if channel is self._server:
                continue
            if getattr(channel, "request", None) is not None \
                    or getattr(channel, "requests", None) \
                    or getattr(channel, "total_outbufs_len", 0):
                return True
        return False

    def probe(self, timeout: float) -> bool | str:
        """True when the server answers an HTTP request within ``timeout``
        (any status below 500), else what went wrong."""
        host = _LOOPBACK.get(self.host, self.host)
        conn = http.client.HTTPConnection(host, self.port, timeout=timeout)
        try:
            conn.request("GET", "/", headers={"User-Agent": "flotilla-probe"})
            status = conn.getresponse().status
        except (OSError, http.client.HTTPException) as exc:
            return "no HTTP answer on %s:%s: %s" % (host, self.port,
                                                    str(exc) or type(exc).__name__)
        finally:
            conn.close()
        return True if status < 500 else "HTTP %d on GET /" % status

    def alive(self, within: float) -> bool | str:
        """For the watchdog: the server answers within ``within`` seconds
        (at most 10), or every worker thread is busy serving (long uploads
        are work, not a hang)."""
        if self._thread is None or not self._thread.is_alive():
            return "%s: the server thread is gone" % self.name
        verdict = self.probe(timeout=min(within, 10))
        if verdict is not True and self._server.task_dispatcher.active_count >= self.threads:
            return True
        return verdict

    def _serve(self) -> None:
        try:
            self._server.run()
        except (OSError, ValueError):  # the map closed under select: stopping
            LOG.debug("%s: serving loop ended", self.name, exc_info=True)

    def stop(self, grace: float | None = None) -> bool:
        """Stop accepting; let every request already begun (a body still
        arriving included) be read, handled and answered within ``grace``
        seconds; then close. True when nothing was cut."""
        grace = grace or 10
        server = self._server
        server.accepting = False
        server.del_channel()
        server.socket.close()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self._busy():
            time.sleep(0.05)
        clean = not self._busy()
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        for channel in list(server._map.values()):
            channel.close()
        server._map.clear()
        if self._thread is not None:
            self._thread.join(timeout=5)
            clean = clean and not self._thread.is_alive()
        if self._on_stop is not None:
            self._on_stop()
        LOG.info("%s on http://%s:%s stopped", self.name, self.host, self.port)
        return clean

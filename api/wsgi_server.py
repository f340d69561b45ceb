"""Serving the API app with cheroot's threaded WSGI server.

:class:`WSGIService` has the start()/stop()/alive() shape flotilla.service.
run_daemon drives: start() binds, serves in a background thread (port 0
picks a free port, see :attr:`port`) and returns once the socket answers
HTTP; stop() stops accepting, lets requests in progress finish within the
grace period and joins the thread; alive() asks the server over HTTP.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time

from cheroot import wsgi

LOG = logging.getLogger(__name__)

# Wildcard bind addresses, and where to reach them from this host.
_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


class WSGIService:
    def __init__(self, app, host: str, port: int, threads: int = 8,
                 name: str = "flotilla-api", on_stop=None) -> None:
        """``on_stop`` runs after the server stopped (to close the RPC
        transport the app casts on)."""
        self.app = app
        self._on_stop = on_stop
        self.host = host
        self.name = name
        self._server = wsgi.Server((host, port), app, numthreads=threads,
                                   server_name=name)
        # Bodies are bounded by the app; cheroot's own limit protects the
        # headers only.
        self._server.max_request_header_size = 64 * 1024
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.bind_addr[1]

    def start(self, ready_timeout: float = 30) -> None:
        self._server.prepare()
        self._thread = threading.Thread(target=self._server.serve,
                                        name=self.name, daemon=True)
        self._thread.start()
        # Started means answering (systemd's READY=1 follows start()).
        deadline = time.monotonic() + ready_timeout
        while (verdict := self.probe(timeout=5)) is not True:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("%s does not answer on %s:%s: %s"
                                   % (self.name, self.host, self.port, verdict))
            self._thread.join(0.05)    # a pause, or the thread's end
        LOG.info("%s listening on http://%s:%s with %d threads", self.name,
                 self.host, self.port, self._server.requests.min)

    def probe(self, timeout: float) -> bool | str:
        """True when the server answers an HTTP request within ``timeout``
        (any status below 500), else what went wrong."""
        host = _LOOPBACK.get(self.host, self.host)
        conn = http.client.HTTPConnection(host, self.port, timeout=timeout)
        try:
            conn.request("GET", "/", headers={"User-Agent": "flotilla-probe"})
            status = conn.getresponse().status
        except (OSError, http.client.HTTPException) as exc:
            return "no HTTP answer on %s:%s: %s" % (host, self.port, str(exc) or type(exc).__name__)
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
        if verdict is not True and self._server.requests.idle == 0:
            return True
        return verdict

    def stop(self, grace: float | None = None) -> bool:
        # cheroot waits this long for requests in progress, then cuts them.
        self._server.shutdown_timeout = 10 if grace is None else grace
        self._server.stop()
        clean = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            clean = not self._thread.is_alive()
        if self._on_stop is not None:
            self._on_stop()
        LOG.info("%s on http://%s:%s stopped", self.name, self.host, self.port)
        return clean

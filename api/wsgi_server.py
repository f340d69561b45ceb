"""Serving the API app with cheroot's threaded WSGI server.

:class:`WSGIService` has the start()/stop() shape flotilla.service.
run_daemon drives: start() binds and serves in a background thread (port 0
picks a free port, see :attr:`port`); stop() stops accepting, lets
requests in progress finish and joins the thread.
"""

from __future__ import annotations

import logging
import threading

from cheroot import wsgi

LOG = logging.getLogger(__name__)


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

    def start(self) -> None:
        self._server.prepare()
        self._thread = threading.Thread(target=self._server.serve,
                                        name=self.name, daemon=True)
        self._thread.start()
        LOG.info("%s listening on http://%s:%s with %d threads", self.name,
                 self.host, self.port, self._server.requests.min)

    def stop(self, grace: float | None = None) -> bool:
        self._server.stop()
        clean = True
        if self._thread is not None:
            self._thread.join(timeout=grace or 10)
            clean = not self._thread.is_alive()
        if self._on_stop is not None:
            self._on_stop()
        return clean

"""Opening a PostgreSQL connection while the database cannot be reached
(flotilla/db/engine.py): retried for ``[database] connect_retry_timeout``,
so a restart delays a unit of work instead of failing it; a refused login
or a missing database is not waited for."""

from __future__ import annotations

import logging
import socket
import threading

import pytest
import sqlalchemy as sa

from flotilla import exception
from flotilla.db import api
from tests.fixtures.ports import free_port


class LateDatabase:
    """A port where nothing listens (connections refused, as while
    PostgreSQL restarts) until :meth:`open` starts forwarding it to the
    real server."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: socket.socket | None = None

    def open(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


@pytest.fixture
def late(db_url):
    url = sa.make_url(db_url)
    database = LateDatabase((url.host or "127.0.0.1", url.port or 5432))
    yield database, url.set(host="127.0.0.1", port=database.port)
    database.close()


def test_a_session_waits_for_a_database_that_comes_back(db, db_conf, late, caplog):
    database, url = late     # ``db``: migrated, through the direct URL
    db_conf.set_override("connection", url.render_as_string(hide_password=False),
                         "database")
    db_conf.set_override("connect_retry_timeout", 60, "database")
    api.configure(db_conf)
    caplog.set_level(logging.WARNING)
    try:
        done: list[object] = []
        worker = threading.Thread(target=lambda: done.append(api.service_get_all()))
        worker.start()
        # The work waits, retrying, while nothing answers ...
        retrying = threading.Event()
        while not retrying.is_set() and worker.is_alive():
            retrying.wait(0.05)
            if "opening a database connection" in caplog.text:
                retrying.set()
        assert retrying.is_set() and not done
        # ... and completes once the database is back.
        database.open()
        worker.join(60)
        assert done == [[]]
        assert url.password not in caplog.text
    finally:
        api.dispose()


def test_a_missing_database_is_not_waited_for(db_conf, caplog):
    url = sa.make_url(db_conf.database.connection).set(database="flotilla_no_such_db")
    db_conf.set_override("connection", url.render_as_string(hide_password=False),
                         "database")
    db_conf.set_override("connect_retry_timeout", 60, "database")
    api.configure(db_conf)
    try:
        with pytest.raises(exception.DBError, match="does not exist"):
            api.service_get_all()
        assert "opening a database connection" not in caplog.text
    finally:
        api.dispose()

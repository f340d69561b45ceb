"""Engines and sessions, built from ``[database]`` options.

Rules:

* one engine (and one sessionmaker) per process, set by :func:`configure`;
  sessions are made per unit of work, so threads never share one;
* ``[database] connection`` unset means an SQLite file ``flotilla.sqlite``
  under ``[DEFAULT] state_path`` (the directory is created 0700, the file
  is kept 0600: it holds password and token hashes);
* ``postgresql://`` means psycopg 3 (``postgresql+psycopg://``);
* SQLite runs in WAL mode (readers never block the writer) with a busy
  timeout (writers queue instead of failing) and foreign keys enforced;
* URLs are only ever shown with the password masked (:func:`mask_url`);
* a session opens its connection first; while PostgreSQL cannot be reached
  that is retried for ``[database] connect_retry_timeout`` seconds (through
  the one reconnect policy, :mod:`flotilla.rpc.retry`), so a database
  restart delays work instead of failing it. Nothing has run yet, so
  nothing is done twice; a statement that fails is never retried.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator

import sqlalchemy as sa
from oslo_config import cfg
from sqlalchemy import event, orm

from flotilla import exception
from flotilla.rpc import retry

_lock = threading.Lock()
_engine: sa.Engine | None = None
_maker: orm.sessionmaker | None = None
_connect_retry_timeout = 0

# Errors opening a connection that waiting will not cure: never retried.
_NOT_TRANSIENT = re.compile(r"authentication failed|password|does not exist|"
                            r"permission denied|no pg_hba\.conf entry", re.IGNORECASE)


def build_url(conf: cfg.ConfigOpts) -> sa.URL:
    """The SQLAlchemy URL ``conf`` asks for, with the driver made explicit."""
    connection = conf.database.connection
    if not connection:
        state_path = conf.state_path
        path = os.path.join(state_path, "flotilla.sqlite")
        try:
            os.makedirs(state_path, mode=0o700, exist_ok=True)
            private_file(path)
        except OSError as exc:
            raise exception.DBError(
                reason="cannot create [DEFAULT] state_path %s: %s"
                % (state_path, exc.strerror)) from None
        return sa.URL.create("sqlite", database=path)
    url = sa.make_url(connection)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


def private_file(path: str) -> None:
    """Make ``path`` (and SQLite's -wal/-shm beside it) readable by its
    owner only, creating it empty when absent: the database holds password
    and token hashes. SQLite gives its journal files the database's mode."""
    if not os.path.exists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        try:
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
        except FileNotFoundError:
            continue


def mask_url(url: sa.URL | str) -> str:
    """``url`` as text with any password replaced by ``***``."""
    if isinstance(url, str):
        try:
            url = sa.make_url(url)
        except sa.exc.ArgumentError:
            return "<unparseable database URL>"
    return url.render_as_string(hide_password=True)


def create_engine(conf: cfg.ConfigOpts) -> sa.Engine:
    """A new engine for ``conf`` (not registered as the process engine)."""
    url = build_url(conf)
    echo = conf.database.connection_debug
    if url.get_backend_name() == "sqlite":
        timeout = conf.database.sqlite_busy_timeout
        engine = sa.create_engine(
            url, echo=echo,
            connect_args={"timeout": timeout, "check_same_thread": False})
        _setup_sqlite(engine, timeout)
        return engine
    return sa.create_engine(
        url, echo=echo,
        pool_size=conf.database.max_pool_size,
        pool_timeout=conf.database.pool_timeout,
        # A database restart must not leave dead connections in the pool.
        pool_pre_ping=True)


def _setup_sqlite(engine: sa.Engine, timeout: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy, not pysqlite, decide where transactions begin:
        # pysqlite's implicit BEGIN skips SELECTs, which breaks isolation.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=%d" % (timeout * 1000))
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # IMMEDIATE takes the write lock at the start, waiting up to the busy
        # timeout. A deferred transaction that reads and then writes fails at
        # once ("database is locked", the timeout does not apply) when
        # another writer committed in between. SQLite has one writer at a
        # time anyway; this makes concurrent transactions queue instead.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def configure(conf: cfg.ConfigOpts) -> sa.Engine:
    """Make ``conf``'s database the one this process uses; return its engine.

    Calling it again replaces (and disposes) the previous engine.
    """
    global _engine, _maker, _connect_retry_timeout
    engine = create_engine(conf)
    with _lock:
        old, _engine = _engine, engine
        _maker = orm.sessionmaker(bind=engine, expire_on_commit=False)
        # An SQLite file is there or not: nothing to wait for.
        _connect_retry_timeout = 0 if engine.url.get_backend_name() == "sqlite" \
            else conf.database.connect_retry_timeout
    if old is not None:
        old.dispose()
    return engine


def get_engine() -> sa.Engine:
    """The process engine; :func:`configure` must have been called."""
    engine = _engine
    if engine is None:
        raise exception.DBError(
            reason="database not configured (flotilla.db.api.configure)")
    return engine


def dispose() -> None:
    """Close every pooled connection and forget the engine (tests, fork)."""
    global _engine, _maker
    with _lock:
        old, _engine, _maker = _engine, None, None
    if old is not None:
        old.dispose()


@contextlib.contextmanager
def session_scope() -> Iterator[orm.Session]:
    """One transaction: committed when the block ends, rolled back on error.

    Objects loaded inside stay usable after the block (they are detached
    and not expired), so they can be returned to callers.
    """
    engine = get_engine()
    maker, retry_for = _maker, _connect_retry_timeout
    try:
        if retry_for:
            session, trans = retry.call_with_retry(
                lambda: _begin(maker), retry_on=(DatabaseUnreachable,), max_delay=2.0,
                deadline=retry_for, what="opening a database connection",
                where=mask_url(engine.url), give_up=exception.DBError)
        else:
            session, trans = _begin(maker)
    except DatabaseUnreachable as exc:
        raise exception.DBError(reason=str(exc)) from exc
    try:
        with session, trans:
            yield session
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        # Connectivity and locking problems: one clear line, never the URL.
        raise exception.DBError(reason=_first_line(exc)) from exc


class DatabaseUnreachable(Exception):
    """Opening a connection failed in a way waiting may cure (its first line)."""


def _first_line(exc: sa.exc.DBAPIError) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


def _begin(maker: orm.sessionmaker) -> tuple[orm.Session, orm.SessionTransaction]:
    """A new session, its transaction begun and its connection open (opened
    here, not at the first statement, so failing to open it can be retried).
    Raises :class:`DatabaseUnreachable`, or DBError for what waiting will not cure
    (a refused login, a missing database)."""
    session = maker()
    try:
        trans = session.begin()
        session.connection()
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        session.close()
        reason = _first_line(exc)
        if _NOT_TRANSIENT.search(reason):
            raise exception.DBError(reason=reason) from exc
        raise DatabaseUnreachable(reason) from exc
    except BaseException:
        session.close()
        raise
    return session, trans


transaction = session_scope

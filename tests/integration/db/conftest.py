"""PostgreSQL for the shared database tests: one throwaway database per
test, created on the server the integration rig provides and dropped
afterwards. An unreachable server fails the tests (never skips them)."""

from __future__ import annotations

import contextlib
import os
import uuid

import pytest

from tests.unit.db.fixtures import db, db_conf, empty_db, manage  # noqa: F401

psycopg = pytest.importorskip("psycopg")

# The maintenance connection used to create and drop test databases.
ADMIN_DSN = os.environ.get(
    "FLOTILLA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _admin_connect():
    try:
        return psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or ["?"])[0]
        pytest.fail("PostgreSQL is unreachable at %s (set FLOTILLA_TEST_POSTGRES "
                    "or start it with tools/ensure-services.sh): %s"
                    % (ADMIN_DSN.rpartition("@")[2], first), pytrace=False)


@contextlib.contextmanager
def postgresql_database():
    """Create a uniquely named database; yield its URL; drop it."""
    from psycopg import sql

    name = "flotilla_test_%s" % uuid.uuid4().hex[:12]
    with _admin_connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = psycopg.conninfo.conninfo_to_dict(ADMIN_DSN)
    user = base.get("user", "postgres")
    # With trust authentication a password is never asked for: a dummy one
    # lets the tests check that flotilla-manage never prints it.
    password = ":" + (base.get("password") or "dummy-Secret-pw")
    try:
        yield "postgresql://%s%s@%s:%s/%s" % (
            user, password, base.get("host", "127.0.0.1"),
            base.get("port", 5432), name)
    finally:
        with _admin_connect() as conn:
            # FORCE: a pooled connection left by a failed test must not
            # keep the database alive.
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))


@pytest.fixture
def db_url():
    """A throwaway PostgreSQL database per test."""
    with postgresql_database() as url:
        yield url

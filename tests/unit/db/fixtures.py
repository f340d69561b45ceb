"""Database fixtures shared by the SQLite (unit) and PostgreSQL
(integration) test modules. Each directory's conftest imports them and
provides ``db_url``, the only thing that differs between backends."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa

import flotilla
from flotilla.db import api, schema


@pytest.fixture
def db_conf(conf, db_url):
    """``conf`` pointing [database] connection at the test database."""
    conf.set_override("connection", db_url, group="database")
    yield conf


@pytest.fixture
def empty_db(db_conf):
    """The process engine configured on a database with no schema."""
    api.configure(db_conf)
    yield db_conf
    api.dispose()


@pytest.fixture
def db(empty_db):
    """A configured database migrated to head; yields flotilla.db.api."""
    schema.db_sync()
    yield api


REPO = os.path.dirname(os.path.dirname(os.path.abspath(flotilla.__file__)))


@pytest.fixture
def manage(tmp_path, db_url):
    """Run flotilla-manage with a config file pointing at ``db_url``."""
    config = tmp_path / "flotilla.conf"
    config.write_text("[DEFAULT]\nstate_path = %s\nservice_down_time = 60\n"
                      "[database]\nconnection = %s\n" % (tmp_path, db_url))
    env = dict(os.environ, PYTHONPATH=REPO)
    password = sa.make_url(db_url).password

    def run(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "flotilla.cmd.manage",
             "--config-file", str(config), *args],
            capture_output=True, text=True, env=env, timeout=120)
        assert "Traceback" not in result.stderr, result.stderr
        if password:
            assert password not in result.stdout + result.stderr
        return result

    return run


def race(threads: int, attempt, lost: type[Exception]) -> tuple[list, list]:
    """Run ``attempt(n)`` on ``threads`` threads released at once; return
    (winners, losers): those that returned and those that raised ``lost``.
    Any other exception fails the test."""
    barrier = threading.Barrier(threads)
    wins, losses, errors = [], [], []

    def run(n):
        barrier.wait()
        try:
            attempt(n)
            wins.append(n)
        except lost:
            losses.append(n)
        except Exception as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    return wins, losses

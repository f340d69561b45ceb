"""``flotilla-manage`` run as a subprocess, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

import flotilla
from flotilla.db import api, models, schema
from flotilla.db.types import utcnow
from tests.fixtures.services import postgresql_database

REPO = os.path.dirname(os.path.dirname(os.path.abspath(flotilla.__file__)))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Both backends: this module overrides the directory's PostgreSQL-only
    ``db_url``."""
    if request.param == "sqlite":
        yield "sqlite:///%s" % (tmp_path / "flotilla.sqlite")
    else:
        with postgresql_database() as url:
            yield url


def test_sync_twice_then_service_list(manage, db_conf):
    result = manage("service", "list")
    assert result.returncode == 1
    assert "db sync" in result.stderr and len(result.stderr.splitlines()) == 1

    for _ in range(2):
        result = manage("db", "sync")
        assert result.returncode == 0, result.stderr
        assert schema.head_revision() in result.stdout
    assert manage("db", "version").stdout.strip() == schema.head_revision()

    api.configure(db_conf)
    try:
        api.service_heartbeat("host1", "flotilla-compute", "compute.host1")
        api.service_heartbeat("host2", "flotilla-compute", "compute.host2")
        # host2 last reported long ago: it must show as down.
        old = utcnow() - datetime.timedelta(minutes=10)
        with api.session_scope() as session:
            session.execute(sa.update(models.Service)
                            .where(models.Service.host == "host2")
                            .values(last_seen_at=old))
    finally:
        api.dispose()

    result = manage("service", "disable", "host1", "flotilla-compute",
                    "--reason", "disk swap")
    assert result.returncode == 0, result.stderr
    lines = manage("service", "list").stdout.splitlines()
    assert lines[0].split()[:4] == ["Host", "Binary", "Topic", "Status"]
    host1 = next(line for line in lines if line.startswith("host1"))
    host2 = next(line for line in lines if line.startswith("host2"))
    assert " up " in host1 and "disabled" in host1 and "disk swap" in host1
    assert " down " in host2 and "enabled" in host2

    assert manage("service", "enable", "host1", "flotilla-compute").returncode == 0
    assert "disk swap" not in manage("service", "list").stdout


def test_unknown_service_is_one_line(manage):
    manage("db", "sync")
    result = manage("service", "disable", "nohost", "flotilla-compute")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "flotilla-manage: error: Service flotilla-compute on host nohost "
        "could not be found."]


def test_bad_config_exits_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "flotilla.cmd.manage", "--config-file",
         str(tmp_path / "missing.conf"), "db", "sync"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 2
    assert "config file not found" in result.stderr
    assert "Traceback" not in result.stderr

"""Engine set-up from configuration (no database server needed)."""

from __future__ import annotations

import datetime

import pytest

from flotilla import exception
from flotilla.db import api, engine


def test_default_is_sqlite_under_state_path(conf, tmp_path):
    state = tmp_path / "state" / "deep"
    conf.set_override("state_path", str(state))
    url = engine.build_url(conf)
    assert url.drivername == "sqlite"
    assert url.database == str(state / "flotilla.sqlite")
    assert state.is_dir()


def test_postgresql_url_means_psycopg3(conf):
    conf.set_override("connection", "postgresql://u:pw@db/flotilla", "database")
    assert engine.build_url(conf).drivername == "postgresql+psycopg"


def test_mask_url_hides_password():
    masked = engine.mask_url("postgresql+psycopg://flotilla:s3cret@db:5432/f")
    assert "s3cret" not in masked and "flotilla:***@db" in masked


def test_sqlite_pragmas(empty_db):
    with api.get_engine().connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_not_configured_is_a_clear_error():
    api.dispose()
    with pytest.raises(exception.DBError, match="not configured"):
        with api.session_scope():
            pass


def test_timestamps_round_trip_as_aware_utc(db):
    naive = datetime.datetime(2030, 1, 2, 3, 4, 5)
    plus2 = datetime.datetime(2030, 1, 2, 5, 4, 5,
                              tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    a = db.instance_create({"task_deadline": naive})
    b = db.instance_create({"task_deadline": plus2})
    for inst in (a, b):
        got = db.instance_get(inst.uuid).task_deadline
        assert got == naive.replace(tzinfo=datetime.UTC)
        assert got.utcoffset() == datetime.timedelta(0)


def test_unreachable_database_is_db_error(conf, caplog):
    conf.set_override("connection",
                      "postgresql://u:Secret-pw@127.0.0.1:1/none", "database")
    conf.set_override("connect_retry_timeout", 1, "database")
    api.configure(conf)
    try:
        with pytest.raises(exception.DBError) as info:
            api.service_get_all()
        assert "opening a database connection" in str(info.value)
        assert "Secret-pw" not in str(info.value)
        # Retried (the connection was refused: a database restarting), and
        # logged each time with the password masked.
        retries = [r.getMessage() for r in caplog.records
                   if "opening a database connection" in r.getMessage()]
        assert retries and all("u:***@127.0.0.1:1" in m for m in retries), retries
        assert "Secret-pw" not in caplog.text
    finally:
        api.dispose()


def test_no_retry_means_fail_at_once(conf, caplog):
    conf.set_override("connection", "postgresql://u:pw@127.0.0.1:1/none", "database")
    conf.set_override("connect_retry_timeout", 0, "database")
    api.configure(conf)
    try:
        with pytest.raises(exception.DBError):
            api.service_get_all()
        assert "opening a database connection" not in caplog.text
    finally:
        api.dispose()


def test_state_files_are_private(conf, tmp_path):
    """Issue 13 defect 8: the state database was 0644 in a 0755 directory,
    with password and token hashes in it."""
    import os
    import stat

    from flotilla.db import schema
    state = tmp_path / "state"
    conf.set_override("state_path", str(state))
    old = os.umask(0o022)
    try:
        schema.db_sync(conf)
        db_file = state / "flotilla.sqlite"
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(db_file).st_mode) == 0o600
        for extra in state.iterdir():
            assert not stat.S_IMODE(os.stat(extra).st_mode) & 0o077, extra
        # A database left readable by an older release is tightened.
        os.chmod(db_file, 0o644)
        engine.build_url(conf)
        assert stat.S_IMODE(os.stat(db_file).st_mode) == 0o600
    finally:
        os.umask(old)

"""flotilla-manage's main() in-process (the subprocess tests are in
tests/integration/db/test_manage.py)."""

from __future__ import annotations

from flotilla.cmd import manage
from flotilla.db import schema


def _config(tmp_path):
    path = tmp_path / "flotilla.conf"
    path.write_text("[DEFAULT]\nstate_path = %s\n" % tmp_path)
    return str(path)


def test_sync_and_list(tmp_path, capsys):
    config = _config(tmp_path)
    assert manage.main(["--config-file", config, "service", "list"]) == 1
    assert "db sync" in capsys.readouterr().err
    assert manage.main(["--config-file", config, "db", "sync"]) == 0
    assert manage.main(["--config-file", config, "db", "sync"]) == 0
    assert manage.main(["--config-file", config, "db", "version"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == schema.head_revision()
    assert manage.main(["--config-file", config, "service", "list"]) == 0
    assert capsys.readouterr().out.startswith("Host")


def test_unknown_service(tmp_path, capsys):
    config = _config(tmp_path)
    manage.main(["--config-file", config, "db", "sync"])
    capsys.readouterr()
    assert manage.main(["--config-file", config, "service", "enable",
                        "h", "flotilla-compute"]) == 1
    assert capsys.readouterr().err.strip() == (
        "flotilla-manage: error: Service flotilla-compute on host h could "
        "not be found.")


def test_format_table():
    from flotilla.cmd.manage_service import format_table

    assert format_table(("A", "Bb"), [("xyz", "1")]).splitlines() == [
        "A    Bb", "---  --", "xyz  1"]


def test_host_drain(tmp_path, capsys):
    """Unknown host: one line, 1. A host without guests: disabled with the
    reason, nothing to move, 0 (memory:// transport: no conductor needed)."""
    from flotilla.db import api as db_api
    config = _config(tmp_path)
    manage.main(["--config-file", config, "db", "sync"])
    capsys.readouterr()
    assert manage.main(["--config-file", config, "host", "drain", "h"]) == 1
    assert capsys.readouterr().err.strip() == (
        "flotilla-manage: error: Service flotilla-compute on host h could "
        "not be found.")
    from oslo_config import cfg

    from flotilla import conf as flotilla_conf
    conf = cfg.ConfigOpts()
    flotilla_conf.register_all(conf)
    conf(["--config-file", config], project="flotilla")
    db_api.configure(conf)
    try:
        db_api.service_heartbeat("h", "flotilla-compute", "compute")
    finally:
        db_api.dispose()
    assert manage.main(["--config-file", config, "host", "drain", "h", "--reason",
                        "disk swap", "--max-concurrent", "3"]) == 0
    out = capsys.readouterr().out
    assert "host h disabled (disk swap)" in out
    assert "0 guest(s) to move, at most 3 at once" in out
    assert "host h: 0 moved, 0 not moved" in out
    db_api.configure(conf)
    try:
        service = db_api.service_get("h", "flotilla-compute")
    finally:
        db_api.dispose()
    assert (service.disabled, service.disabled_reason) == (True, "disk swap")

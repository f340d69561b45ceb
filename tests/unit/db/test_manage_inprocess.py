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

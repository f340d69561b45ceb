"""flotilla-manage user/project/role/flavor/quota, in-process."""

from __future__ import annotations

from flotilla.cmd import manage


def _run(config, *args) -> int:
    return manage.main(["--config-file", config, *args])


def test_identity_commands(tmp_path, capsys, monkeypatch):
    config = tmp_path / "flotilla.conf"
    config.write_text("[DEFAULT]\nstate_path = %s\n[identity]\nscrypt_n = 1024\n" % tmp_path)
    config = str(config)
    assert _run(config, "db", "sync") == 0
    assert _run(config, "project", "create", "demo") == 0
    secret = tmp_path / "pw"
    secret.write_text("s3cret-password\n")
    assert _run(config, "user", "create", "alice", "--project", "demo",
                "--password-file", str(secret)) == 0
    monkeypatch.setenv("FLOTILLA_PASSWORD", "another-password")
    assert _run(config, "user", "set-password", "alice") == 0
    monkeypatch.setenv("FLOTILLA_PASSWORD", "short")
    assert _run(config, "user", "create", "bob") == 1
    assert _run(config, "role", "add", "alice", "demo", "member") == 0
    assert _run(config, "role", "list", "--project", "demo") == 0
    assert _run(config, "user", "list") == 0
    assert _run(config, "flavor", "create", "small", "--ram", "512", "--vcpus", "1",
                "--disk", "1") == 0
    assert _run(config, "flavor", "create", "bad", "--ram", "0", "--vcpus", "1") == 1
    assert _run(config, "flavor", "list") == 0
    assert _run(config, "quota", "set", "demo", "instances", "3") == 0
    assert _run(config, "quota", "show", "demo") == 0
    out = capsys.readouterr()
    assert "s3cret-password" not in out.out + out.err
    assert "another-password" not in out.out + out.err
    assert "alice" in out.out and "member" in out.out and "small" in out.out
    assert any(line.split()[:3] == ["instances", "3", "0"] for line in out.out.splitlines())
    assert _run(config, "role", "remove", "alice", "demo", "member") == 0
    assert _run(config, "role", "remove", "alice", "demo", "member") == 1
    assert _run(config, "user", "delete", "alice") == 0
    assert _run(config, "project", "delete", "demo") == 0
    assert _run(config, "flavor", "delete", "small") == 0
    assert _run(config, "project", "delete", "demo") == 1

"""The CLI on a fake SDK connection: parsing, output, --wait, exit codes."""

from __future__ import annotations

import io
import json

import pytest

from flotilla.cli import main as cli_main
from flotilla.cli import waiting


def test_usage_errors_exit_2(run, capsys):
    for argv in ([], ["server"], ["server", "bogus"], ["server", "create", "x"],
                 ["-f", "yaml", "server", "list"], ["server", "reboot", "x", "--hard", "--soft"]):
        with pytest.raises(SystemExit) as info:
            run(*argv)
        assert info.value.code == 2, argv


def test_server_list_table_and_json(run, fake):
    fake.compute.add_server("web")
    code, out, _ = run("server", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "Name", "Status", "Task", "State", "Power", "State",
                                "Image", "Flavor"]
    assert "web" in lines[2] and "Running" in lines[2] and "tiny" in lines[2]
    code, out, _ = run("-f", "json", "server", "list", "--all-projects")
    assert json.loads(out)[0]["Name"] == "web"
    assert fake.compute.calls[-1][1] is True


def test_server_show_missing_is_one_line_error(run):
    code, out, err = run("server", "show", "nope")
    assert code == 1 and out == ""
    assert err.startswith("flotilla: error:") and "nope" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_connection_failure_is_one_line(capsys):
    def broken(args):
        raise RuntimeError("cannot reach\nthe cloud")
    assert cli_main.main(["server", "list"], connector=broken) == 1
    err = capsys.readouterr().err
    assert err == "flotilla: error: cannot reach the cloud\n"


def test_create_wait_shows_progress_until_active(run, fake):
    original = fake.compute.create_server

    def create(**attrs):
        server = original(**attrs)
        fake.compute.script[server.id] = [("BUILD", "scheduling"), ("BUILD", "scheduling"),
                                          ("BUILD", "spawning"), ("ACTIVE", None)]
        return server
    fake.compute.create_server = create
    code, out, err = run("-f", "json", "server", "create", "vm1", "--flavor", "tiny",
                         "--image", "cirros", "--property", "k=v", "--wait")
    assert code == 0, err
    assert json.loads(out)["status"] == "ACTIVE"
    assert err.splitlines() == ["server vm1: BUILD (scheduling)", ".",
                                "server vm1: BUILD (spawning)", "server vm1: ACTIVE"]
    attrs = fake.compute.calls[0][1]
    assert attrs["flavor_id"] == "1" and attrs["image_id"] == "img-1"
    assert attrs["metadata"] == {"k": "v"} and attrs["networks"] == "none"


def test_create_wait_error_exits_1_with_fault(run, fake):
    original = fake.compute.create_server

    def create(**attrs):
        server = original(**attrs)
        fake.compute.script[server.id] = [("BUILD", "scheduling"), ("ERROR", None)]
        return server
    fake.compute.create_server = create
    code, out, err = run("server", "create", "vm1", "--flavor", "1", "--image", "img-1",
                         "--wait")
    assert code == 1
    assert "ERROR: No valid host was found." in err.splitlines()[-1]


def test_actions_and_wait(run, fake):
    server = fake.compute.add_server("vm")
    fake.compute.script[server.id] = [("ACTIVE", "powering-off"), ("SHUTOFF", None)]
    code, out, err = run("server", "stop", "vm", "--wait")
    assert code == 0 and ("stop_server", server.id) in fake.compute.calls
    assert "SHUTOFF" in out
    fake.compute.script[server.id] = [("REBOOT", "rebooting"), ("ACTIVE", None)]
    assert run("server", "reboot", "vm", "--hard", "--wait")[0] == 0
    assert ("reboot_server", server.id, "HARD") in fake.compute.calls
    for action in ("start", "pause", "unpause", "suspend", "resume"):
        assert run("server", action, "vm") == (0, "", "")
        assert ("%s_server" % action, server.id) in fake.compute.calls
    # A stop that ends ACTIVE after its task ran is a failure.
    fake.compute.script[server.id] = [("ACTIVE", "powering-off"), ("ACTIVE", None)]
    code, _, err = run("server", "stop", "vm", "--wait")
    assert code == 1 and "is ACTIVE, expected SHUTOFF" in err


def test_delete_wait_until_gone(run, fake):
    server = fake.compute.add_server("vm")
    fake.compute.script[server.id] = [("ACTIVE", "deleting"), ("GONE", None)]
    code, _, err = run("server", "delete", "vm", "--wait")
    assert code == 0
    assert err.splitlines()[-1] == "server vm: deleted"


def test_wait_timeout():
    clock = iter(range(0, 1000, 10))
    server = type("S", (), {"status": "BUILD", "task_state": "spawning"})()
    with pytest.raises(waiting.WaitFailed, match="timed out after 30s.*BUILD"):
        waiting.wait_for_server(lambda: server, "ACTIVE", stream=io.StringIO(),
                                timeout=30, sleep=lambda s: None,
                                clock=lambda: next(clock))


def test_spinner_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    stream = Tty()
    progress = waiting.Progress(stream, "s")
    for state in ("BUILD", "BUILD", "BUILD", "ACTIVE"):
        progress.update(state)
    progress.finish()
    assert stream.getvalue() == "s: BUILD\n\r/\r-\r \rs: ACTIVE\n"


def test_console(run, fake):
    fake.compute.add_server("vm")
    assert run("server", "console", "vm") == (0, "boot ok\nlogin:\n", "")


def test_flavors(run, fake):
    code, out, _ = run("flavor", "list")
    assert code == 0 and "tiny" in out
    code, out, _ = run("-f", "json", "flavor", "create", "big", "--ram", "512", "--vcpus", "2")
    assert json.loads(out)["ram"] == 512
    assert run("flavor", "delete", "big")[0] == 0
    assert [f.name for f in fake.compute.flavor_list] == ["tiny"]
    assert run("flavor", "show", "big")[0] == 1


def test_hosts_and_services(run, fake):
    code, out, _ = run("host", "list")
    assert code == 0 and "QEMU" in out
    code, out, _ = run("-f", "json", "service", "disable", "h1", "--reason", "maintenance")
    row = json.loads(out)[0]
    assert row["Status"] == "disabled" and row["Disabled Reason"] == "maintenance"
    code, out, _ = run("-f", "json", "service", "enable", "h1")
    assert json.loads(out)[0]["Status"] == "enabled"
    code, _, err = run("service", "disable", "h2")
    assert code == 1 and "h2" in err
    assert "flotilla-compute" in run("service", "list")[1]


def test_image_upload_missing_file(run, tmp_path):
    code, _, err = run("image", "upload", "cirros", str(tmp_path / "nope.img"))
    assert code == 1 and "no such file" in err

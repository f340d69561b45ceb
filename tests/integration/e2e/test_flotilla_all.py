"""flotilla-all, the embedded default, driven with the flotilla CLI.

No broker, no libvirtd: one process on memory://, SQLite and libvirt's
test:///default, started as a user would start it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from tests.fixtures.daemons import BIN
from tests.fixtures.ports import free_port


@pytest.fixture
def all_in_one(tmp_path):
    port = free_port()
    config = tmp_path / "flotilla.conf"
    config.write_text("[DEFAULT]\nstate_path = %s\n[api]\nbind_port = %d\n"
                      "[identity]\nscrypt_n = 1024\n" % (tmp_path / "state", port))
    out = open(tmp_path / "flotilla-all.out", "w+")
    proc = subprocess.Popen([str(BIN / "flotilla-all"), "--config-file", str(config)],
                            stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while "Stop with Ctrl-C" not in (tmp_path / "flotilla-all.out").read_text():
        assert proc.poll() is None, (tmp_path / "flotilla-all.out").read_text()
        assert time.monotonic() < deadline, "flotilla-all did not start"
        time.sleep(0.2)
    banner = (tmp_path / "flotilla-all.out").read_text()
    env = dict(os.environ)
    for name, value in re.findall(r"(OS_[A-Z_]+)=(\S+)", banner):
        env[name] = value
    yield env, proc, tmp_path
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0, (tmp_path / "flotilla-all.out").read_text()[-3000:]
    out.close()


def _cli(env, *args, check=True) -> str:
    result = subprocess.run([str(BIN / "flotilla"), *args], env=env, capture_output=True,
                            text=True, timeout=120)
    if check:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def test_boot_stop_start_delete_with_the_cli(all_in_one):
    env, proc, tmp_path = all_in_one
    assert env["OS_PASSWORD"] and env["OS_AUTH_URL"].endswith("/identity/v3")
    image_file = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image_file), "64M"],
                   check=True)
    _cli(env, "flavor", "create", "tiny", "--ram", "64", "--vcpus", "1", "--disk", "1")
    _cli(env, "image", "create", "disk", "--file", str(image_file), "--disk-format", "qcow2")
    _cli(env, "server", "create", "vm1", "--image", "disk", "--flavor", "tiny", "--wait")
    show = json.loads(_cli(env, "server", "show", "vm1", "-f", "json"))
    assert show["status"] == "ACTIVE"
    hosts = json.loads(_cli(env, "host", "list", "-f", "json"))
    assert len(hosts) == 2          # [all] hosts defaults to two agents
    _cli(env, "server", "stop", "vm1", "--wait")
    assert json.loads(_cli(env, "server", "show", "vm1", "-f", "json"))["status"] == "SHUTOFF"
    _cli(env, "server", "start", "vm1", "--wait")
    assert json.loads(_cli(env, "server", "show", "vm1", "-f", "json"))["status"] == "ACTIVE"
    _cli(env, "server", "delete", "vm1", "--wait")
    assert json.loads(_cli(env, "server", "list", "-f", "json")) == []
    # The password was printed once for the person, never logged.
    log = (tmp_path / "flotilla-all.out").read_text()
    assert log.count(env["OS_PASSWORD"]) == 1
    assert (tmp_path / "state" / "admin-password").stat().st_mode & 0o077 == 0

"""The storage daemon's malloc tunables (volume.nbd.MALLOC_TUNABLES): they
reach the real qemu-storage-daemon the service starts: with them it reuses
its request buffers instead of page-faulting a fresh mmap for each NBD
request (counted in the daemon's minor page faults, no timing). Not read
back from /proc/<pid>/environ: glibc cuts GLIBC_TUNABLES there in place
while parsing it."""

from __future__ import annotations

import subprocess
import types
import uuid as uuidlib

import pytest

from tests.fixtures.ports import free_port
from volume.nbd import MALLOC_TUNABLES, StorageDaemon, daemon_env

REQUESTS = 256
REQUEST = 1 << 20          # 1 MiB: 256 pages a fresh buffer faults in
DEPTH = 16


def test_daemon_env_adds_the_tunables_and_keeps_the_operators():
    env = daemon_env({"PATH": "/bin",
                      "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1:glibc.cpu.x86_shstk=on"})
    assert env["PATH"] == "/bin"
    assert env["GLIBC_TUNABLES"].split(":") == [
        "glibc.malloc.trim_threshold=1", "glibc.cpu.x86_shstk=on",
        "glibc.malloc.mmap_threshold=33554432"]
    assert daemon_env({})["GLIBC_TUNABLES"].split(":") == list(MALLOC_TUNABLES)



def _minor_faults(pid: int) -> int:
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rpartition(")")[2].split()[7])


@pytest.fixture
def daemon(tmp_path):
    conf = types.SimpleNamespace(volume=types.SimpleNamespace(
        run_path=str(tmp_path / "run"), nbd_host="127.0.0.1", nbd_port=free_port(),
        storage_daemon="qemu-storage-daemon", nbd_tls=False))
    daemon = StorageDaemon(conf)
    yield daemon
    assert daemon.stop_if_idle()


def test_the_daemon_reuses_its_request_buffers(daemon, tmp_path):
    volume_id = str(uuidlib.uuid4())
    path = tmp_path / "volume"
    with open(path, "wb") as f:       # data: holes would be answered as holes
        f.write(b"\x5a" * (64 * REQUEST))
    daemon.export(volume_id, str(path))
    pid = int(open(daemon.pid_path).read())
    url = "nbd://127.0.0.1:%d/%s" % (daemon.port, volume_id)

    def bench(*write: str) -> int:
        before = _minor_faults(pid)
        subprocess.run(["qemu-img", "bench", "-f", "raw", "-c", str(REQUESTS), "-s",
                        str(REQUEST), "-d", str(DEPTH), *write, url],
                       check=True, capture_output=True, timeout=120)
        return _minor_faults(pid) - before

    try:
        bench()               # the heap grows to its in-flight peak once
        faults = {"read": bench(), "write": bench("-w")}
    finally:
        daemon.unexport(volume_id)
    # A fresh buffer per request faults in all its pages: REQUESTS * 256
    # (65,800 measured without the tunables, 13,600 for reads with
    # mmap_threshold alone: the trimmed heap grows again); reused ones none.
    fresh = REQUESTS * REQUEST // 4096
    assert all(n < fresh // 8 for n in faults.values()), (
        "daemon page faults for %d requests: %s" % (REQUESTS, faults))

"""The rig's shared cache of QEMU capabilities (tools/rig/rig.py): hosts
start side by side, in threads of one rig and in other rigs, and each keeps
what its libvirtd probed."""

from __future__ import annotations

import os
import threading

from tests.fixtures.rig import rig_module


def _host(tmp_path, name: str, content: bytes) -> dict:
    directory = tmp_path / name
    cache = directory / "cache" / "qemu" / "capabilities"
    cache.mkdir(parents=True)
    for file in ("x86_64.xml", "i386.xml"):
        (cache / file).write_bytes(content)
    return {"name": name, "dir": str(directory)}


def test_hosts_keeping_their_capabilities_at_once_all_succeed(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    monkeypatch.setattr(rig_module, "CAPABILITIES_CACHE", str(shared))
    hosts = [_host(tmp_path, "host%d" % i, bytes([i]) * 200_000) for i in (1, 2)]
    failures: list[BaseException] = []

    def keep(host: dict) -> None:
        try:
            rig_module._keep_capabilities(host)
        except BaseException as exc:
            failures.append(exc)

    for _ in range(100):
        threads = [threading.Thread(target=keep, args=(h,)) for h in hosts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    # Whole files only, one host's or the other's; no temporary file left.
    assert sorted(os.listdir(shared)) == ["i386.xml", "x86_64.xml"]
    for file in shared.iterdir():
        assert file.read_bytes() in (bytes([1]) * 200_000, bytes([2]) * 200_000)


def test_a_new_host_is_seeded_from_the_shared_cache(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    monkeypatch.setattr(rig_module, "CAPABILITIES_CACHE", str(shared))
    rig_module._keep_capabilities(_host(tmp_path, "host1", b"probed"))
    fresh = {"name": "host2", "dir": str(tmp_path / "host2")}
    rig_module._seed_capabilities(fresh)
    seeded = tmp_path / "host2" / "cache" / "qemu" / "capabilities"
    assert sorted(p.name for p in seeded.iterdir()) == ["i386.xml", "x86_64.xml"]
    assert (seeded / "x86_64.xml").read_bytes() == b"probed"

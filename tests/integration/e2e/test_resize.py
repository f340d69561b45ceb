"""Cold migration and resize on the demo's two-host cloud with the real tiny
guest (real daemons, RabbitMQ, PostgreSQL, QEMU under two rig libvirtds that
share no filesystem path): through the public API with openstacksdk, then
with the unmodified ``openstack server resize --flavor --wait``, ``server
resize revert``, ``server migrate --wait`` and ``server resize confirm``.

Crash recovery: the source agent SIGKILLed while the disk is being copied
(the guest's root overlay made big enough for the copy to take a while).

Where the guest runs is checked with ``virsh`` on both hosts; that it
booted from the disk that moved is seen on the destination's own console
log (the guest prints ``FLOTILLA-TICK n`` every 5 s once booted).
"""

from __future__ import annotations

import pathlib
import time

import pytest
import sqlalchemy as sa

from tests.fixtures.rig import domstate, virsh
from tests.fixtures.waiting import wait_until
from tests.integration.e2e.test_live_migration import (
    _admin_cli,
    _db_host,
    _migration,
    _restart,
    _rig,
    _ticks,
    _wait_ticks,
    tiny,  # noqa: F401 - the module's image fixture
)
from tests.integration.e2e.test_snapshots import _delete, only_host

BIGGER = "m1.bigger"


def _files(cloud, host: str, server_id: str) -> bool:
    return (pathlib.Path(_rig(cloud, host)["instances_path"]) / server_id).exists()


def _defined(cloud, host: str, server_id: str) -> bool:
    return server_id in virsh(_rig(cloud, host)["uri"], "list", "--all", "--uuid").stdout


def _state(cloud, host: str, server_id: str) -> str:
    return domstate(_rig(cloud, host)["uri"], server_id)


def _max_memory_kib(cloud, host: str, server_id: str) -> int:
    for line in virsh(_rig(cloud, host)["uri"], "dominfo", server_id).stdout.splitlines():
        if line.startswith("Max memory"):
            return int(line.split()[2])
    raise AssertionError("no Max memory in dominfo")


def _wait_status(compute, server_id: str, status: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while True:
        server = compute.get_server(server_id)
        if server.status == status and not server.task_state:
            return server
        assert server.status != "ERROR", server.fault
        assert time.monotonic() < deadline, (server.status, server.task_state)
        time.sleep(0.5)


def _claims(cloud, server_id: str) -> list[tuple[str, int]]:
    engine = sa.create_engine(cloud.state["database_url"])
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "select a.host, a.memory_mb from allocations a where a.consumer_id = :i "
                "or a.consumer_id in (select uuid from migrations where "
                "instance_uuid = :i)"), {"i": server_id}).all()
    finally:
        engine.dispose()
    return sorted((r[0], r[1]) for r in rows)


@pytest.fixture(scope="module")
def bigger(walkthrough):
    flavor = walkthrough.admin.compute.create_flavor(name=BIGGER, ram=160, vcpus=1, disk=2)
    yield flavor
    walkthrough.admin.compute.delete_flavor(flavor, ignore_missing=True)


def _boot_on_host1(walkthrough, tiny_image, name: str):
    tenant = walkthrough.tenant
    flavor = tenant.compute.find_flavor("m1.tiny")
    with only_host(walkthrough, "host1"):
        server = tenant.compute.create_server(name=name, image_id=tiny_image.id,
                                              flavor_id=flavor.id, networks="none")
        return tenant.compute.wait_for_server(server, status="ACTIVE", wait=300)


def test_cold_migrate_and_resize_confirmed_through_the_api(cloud, walkthrough, tiny,  # noqa: F811
                                                           bigger):
    tenant, admin = walkthrough.tenant, walkthrough.admin
    server = _boot_on_host1(walkthrough, tiny, "cold-mover")
    try:
        _wait_ticks(cloud, "host1", server.id, 1, 180)
        # Cold migration: off on host1, running on host2 from the disk that moved.
        admin.compute.migrate_server(server)
        now = _wait_status(admin.compute, server.id, "VERIFY_RESIZE")
        assert now.compute_host == "host2" and _db_host(cloud, server.id) == "host2"
        assert _state(cloud, "host2", server.id).startswith("running")
        assert _state(cloud, "host1", server.id).startswith("shut off")
        _wait_ticks(cloud, "host2", server.id, 1, 180)
        assert _claims(cloud, server.id) == [("host1", 128), ("host2", 128)]
        admin.compute.confirm_server_resize(server)
        _wait_status(admin.compute, server.id, "ACTIVE")
        assert not _defined(cloud, "host1", server.id)
        assert not _files(cloud, "host1", server.id)
        assert _claims(cloud, server.id) == [("host2", 128)]
        migrations = admin.compute.get("/os-migrations?instance_uuid=%s" % server.id,
                                       microversion="2.59").json()["migrations"]
        assert [(m["status"], m["source_compute"], m["dest_compute"], m["migration_type"])
                for m in migrations] == [("confirmed", "host1", "host2", "migration")]

        # Resize by its owner: back to host1 with 160 MiB and a 2 GiB disk.
        tenant.compute.resize_server(server, bigger.id)
        now = _wait_status(tenant.compute, server.id, "VERIFY_RESIZE")
        assert now.flavor["original_name"] == BIGGER
        assert _db_host(cloud, server.id) == "host1"
        assert _state(cloud, "host1", server.id).startswith("running")
        assert _max_memory_kib(cloud, "host1", server.id) == 160 * 1024
        disk = pathlib.Path(_rig(cloud, "host1")["instances_path"]) / server.id / "disk"
        info = virsh(_rig(cloud, "host1")["uri"], "domblkinfo", server.id, "vda").stdout
        assert str(2 * 1024 ** 3) in info, info
        assert disk.exists()
        tenant.compute.confirm_server_resize(server)
        _wait_status(tenant.compute, server.id, "ACTIVE")
        assert not _defined(cloud, "host2", server.id)
        assert not _files(cloud, "host2", server.id)
        assert _claims(cloud, server.id) == [("host1", 160)]
    finally:
        _delete(walkthrough, [server.id])


def test_resize_revert_and_migrate_confirm_with_the_openstack_cli(cloud, walkthrough,
                                                                  tiny, bigger):  # noqa: F811
    admin = walkthrough.admin
    server = _boot_on_host1(walkthrough, tiny, "cli-resized")
    try:
        _admin_cli(cloud, "server", "resize", "--flavor", BIGGER, "--wait", server.id)
        now = admin.compute.get_server(server.id)
        assert (now.status, now.compute_host) == ("VERIFY_RESIZE", "host2")
        assert _max_memory_kib(cloud, "host2", server.id) == 160 * 1024
        assert _state(cloud, "host2", server.id).startswith("running")

        _admin_cli(cloud, "server", "resize", "revert", server.id)
        now = _wait_status(admin.compute, server.id, "ACTIVE")
        assert now.compute_host == "host1" and now.flavor["original_name"] == "m1.tiny"
        assert _state(cloud, "host1", server.id).startswith("running")
        assert _max_memory_kib(cloud, "host1", server.id) == 128 * 1024
        assert not _defined(cloud, "host2", server.id)
        assert not _files(cloud, "host2", server.id)
        assert _claims(cloud, server.id) == [("host1", 128)]

        _admin_cli(cloud, "server", "migrate", "--wait", server.id)
        now = admin.compute.get_server(server.id)
        assert (now.status, now.compute_host) == ("VERIFY_RESIZE", "host2")
        _admin_cli(cloud, "server", "resize", "confirm", server.id)
        now = _wait_status(admin.compute, server.id, "ACTIVE")
        assert now.compute_host == "host2"
        assert _state(cloud, "host2", server.id).startswith("running")
        assert not _defined(cloud, "host1", server.id)
        assert not _files(cloud, "host1", server.id)
        _wait_ticks(cloud, "host2", server.id, 1, 180)
    finally:
        _delete(walkthrough, [server.id])


# --- crash recovery --------------------------------------------------------------------

_FILLED_FROM_MIB = 256      # the guest's FAT disk is a few MiB: this is past its end


def _fill_overlay(cloud, host: str, server_id: str, mib: int) -> None:
    """Write ``mib`` MiB past the stopped guest's filesystem into its root
    overlay (qemu-io, 64 MiB a request), which a cold move copies whole."""
    import subprocess
    disk = pathlib.Path(_rig(cloud, host)["instances_path"]) / server_id / "disk"
    writes = []
    for offset in range(_FILLED_FROM_MIB, _FILLED_FROM_MIB + mib, 64):
        writes += ["-c", "write -P 0x5a %dM 64M" % offset]
    subprocess.run(["qemu-io", "-f", "qcow2", *writes, str(disk)], check=True,
                   capture_output=True, timeout=300)


def test_a_source_agent_killed_while_the_disk_is_copied(cloud, walkthrough, tiny):  # noqa: F811
    """A cold migration whose source agent is SIGKILLed mid-copy and started
    again: the cloud settles with the guest on one host, the one the
    database names, the migration ended (not stuck), only that host's
    claim, nothing of the guest on the other host; started, it runs there.
    (The server is stopped to grow its overlay, so it moves stopped.)"""
    admin = walkthrough.admin
    server = _boot_on_host1(walkthrough, tiny, "crash-resized")
    try:
        _wait_ticks(cloud, "host1", server.id, 1, 180)
        admin.compute.stop_server(server)
        _wait_status(admin.compute, server.id, "SHUTOFF")
        _fill_overlay(cloud, "host1", server.id, 768)
        disk = pathlib.Path(_rig(cloud, "host1")["instances_path"]) / server.id / "disk"
        assert disk.stat().st_size > 768 * 1024 ** 2
        log = pathlib.Path(cloud.logs) / "flotilla-compute-host1.log"
        dest_uri = _rig(cloud, "host2")["uri"]
        pool = "flotilla-incoming-%s" % server.id
        started = time.monotonic()
        admin.compute.migrate_server(server)
        # The destination's transient pool lives as long as the copy does.
        wait_until(lambda: pool in virsh(dest_uri, "pool-list", "--name").stdout.split(),
                   120, "the disk copy under way")
        _restart(cloud, "flotilla-compute@host1")
        assert "sent the disk of %s" % server.id not in log.read_text(errors="replace")
        now = wait_until(lambda: (s := admin.compute.get_server(server.id)).task_state
                         is None and s, 300, "the server idle again")
        migration = _migration(cloud, server.id)
        print("source agent killed mid-copy: migration %s (%s) after %.1fs" % (
            migration["status"], migration["error_reason"], time.monotonic() - started))
        assert migration["status"] in ("finished", "error", "reverted"), migration
        host = _db_host(cloud, server.id)
        other = next(h for h in ("host1", "host2") if h != host)
        if migration["status"] == "finished":
            assert (now.status, now.compute_host, host) == ("VERIFY_RESIZE", "host2",
                                                            "host2")
            assert _claims(cloud, server.id) == [("host1", 128), ("host2", 128)]
            admin.compute.confirm_server_resize(server)
            _wait_status(admin.compute, server.id, "SHUTOFF")
        else:
            assert (now.status, now.compute_host, host) == ("SHUTOFF", "host1", "host1"), \
                now.fault
            if migration["status"] == "error":
                assert migration["error_reason"]
        # One host has the guest, the one the database names; nothing of it
        # on the other (no domain, no directory, no copy kept for a revert).
        assert _state(cloud, host, server.id).startswith("shut off")
        assert not _defined(cloud, other, server.id)
        leftovers = [p.name for p in
                     pathlib.Path(_rig(cloud, other)["instances_path"]).iterdir()
                     if p.name.startswith(server.id)]
        assert leftovers == []
        assert _claims(cloud, server.id) == [(host, 128)]
        assert wait_until(lambda: pool not in virsh(dest_uri, "pool-list", "--all",
                                                    "--name").stdout.split(), 10,
                          "no incoming pool left")
        # Started, the guest runs there and only there: its console counts on.
        admin.compute.start_server(server)
        _wait_status(admin.compute, server.id, "ACTIVE")
        assert _state(cloud, host, server.id).startswith("running")
        assert not _defined(cloud, other, server.id)
        _wait_ticks(cloud, host, server.id, len(_ticks(cloud, host, server.id)) + 1, 90)
    finally:
        _delete(walkthrough, [server.id])

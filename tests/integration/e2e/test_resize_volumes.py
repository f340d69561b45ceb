"""Resize and cold migration of servers with volumes attached, of a server
booted from a volume, and resize to the same host, on the demo's two-host
cloud with the real tiny guest (real daemons, RabbitMQ, PostgreSQL, QEMU
under two rig libvirtds, flotilla-volume's qemu-storage-daemon exporting
the volumes over NBD), through the unmodified ``openstack`` CLI.

The guest writes ``FLOTILLA-DISK-MARKER vdb written <its uuid>`` on a blank
disk and prints ``... vdb found <uuid>`` for a disk that carries a marker,
at every boot: the resized guest printing it on its new host's console
shows it booted with the same volume (nothing copied: the same export, as
``virsh dumpxml`` shows). Where the guest runs is checked with ``virsh`` on
both hosts, the attachments' host in the database.
"""

from __future__ import annotations

import pathlib
import time

import pytest
import sqlalchemy as sa

from tests.fixtures.rig import virsh
from tests.fixtures.waiting import wait_for_fresh_status
from tests.integration.e2e.test_drain_evacuate import (
    _boot_from_volume_on_host1,
    _wait_console,
)
from tests.integration.e2e.test_live_migration import (
    _admin_cli,
    _db_host,
    tiny,  # noqa: F401 - the module's image fixture
)
from tests.integration.e2e.test_resize import (
    BIGGER,
    _boot_on_host1,
    _claims,
    _defined,
    _files,
    _max_memory_kib,
    _rig,
    _state,
    _wait_status,
    bigger,  # noqa: F401 - the module's flavor fixture
)
from tests.integration.e2e.test_snapshots import _delete, only_host
from tests.integration.e2e.test_volume_faults import _start
from tests.integration.e2e.test_volumes import _console, _exports, cli_plain


def _cli_ok(cloud, *args: str) -> None:
    """``openstack ARGS`` as the demo user (the servers' owner)."""
    proc = cli_plain(cloud, *args)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)


def _found(cloud, host: str, server_id: str) -> int:
    """How many boots on ``host`` found the server's own marker on vdb."""
    return _console(cloud, host, server_id).count(
        "FLOTILLA-DISK-MARKER vdb found %s" % server_id)


def _nbd_disks(cloud, host: str, server_id: str, inactive: bool = False) -> list[str]:
    """The volume ids of the domain's NBD network disks (their serials)."""
    from lxml import etree
    args = ["dumpxml", "--inactive", server_id] if inactive else ["dumpxml", server_id]
    document = etree.fromstring(virsh(_rig(cloud, host)["uri"], *args).stdout.encode())
    return [d.findtext("serial") for d in document.findall("devices/disk")
            if d.get("type") == "network"
            and d.find("source").get("protocol") == "nbd"]


def _attachment_hosts(cloud, server_id: str) -> list[str]:
    engine = sa.create_engine(cloud.state["database_url"])
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text(
                "select host from volume_attachments where instance_uuid = :i "
                "order by id"), {"i": server_id})]
    finally:
        engine.dispose()


def _volume_attached(cloud, walkthrough, server_id: str, host: str):
    """A new 1 GB volume attached to the server (CLI), its marker written
    by the guest; the volume."""
    tenant = walkthrough.tenant
    _wait_console(cloud, host, server_id, "FLOTILLA-PARTITIONS")
    volume = tenant.block_storage.create_volume(size=1, name="moving-%s" % server_id[:8])
    wait_for_fresh_status(tenant.block_storage, volume, "available", wait=60)
    _cli_ok(cloud, "server", "add", "volume", server_id, volume.id)
    volume = wait_for_fresh_status(tenant.block_storage, volume, "in-use", wait=60)
    assert volume.attachments[0]["device"] == "/dev/vdb"
    _wait_console(cloud, host, server_id, "FLOTILLA-DISK-MARKER vdb written %s" % server_id)
    return volume


def _drop_volume(walkthrough, server_id: str, volume) -> None:
    storage = walkthrough.tenant.block_storage
    if walkthrough.tenant.compute.find_server(server_id, ignore_missing=True) is not None:
        walkthrough.tenant.compute.delete_volume_attachment(server_id, volume.id)
    wait_for_fresh_status(storage, volume, "available", wait=120)
    storage.delete_volume(volume)
    storage.wait_for_delete(volume, wait=60)


def _export(volume) -> str:
    return "e" + volume.id.replace("-", "")


def test_resize_with_a_volume_confirmed_through_the_cli(cloud, walkthrough, tiny,  # noqa: F811
                                                        bigger):  # noqa: F811
    admin = walkthrough.admin
    server = _boot_on_host1(walkthrough, tiny, "vol-resized")
    volume = None
    try:
        volume = _volume_attached(cloud, walkthrough, server.id, "host1")
        assert _attachment_hosts(cloud, server.id) == ["host1"]

        _cli_ok(cloud, "server", "resize", "--flavor", BIGGER, "--wait", server.id)
        now = admin.compute.get_server(server.id)
        assert (now.status, now.compute_host) == ("VERIFY_RESIZE", "host2")
        # host2 runs it with the new flavor and the same NBD export; host1
        # keeps its original, off, with the volume still in its definition.
        assert _state(cloud, "host2", server.id).startswith("running")
        assert _max_memory_kib(cloud, "host2", server.id) == 160 * 1024
        assert _nbd_disks(cloud, "host2", server.id) == [volume.id]
        assert _state(cloud, "host1", server.id).startswith("shut off")
        assert _nbd_disks(cloud, "host1", server.id, inactive=True) == [volume.id]
        # The guest booted on host2 with the volume its marker is on.
        _wait_console(cloud, "host2", server.id,
                      "FLOTILLA-DISK-MARKER vdb found %s" % server.id)
        assert _attachment_hosts(cloud, server.id) == ["host2"]
        assert _exports(cloud) == {_export(volume)}
        assert walkthrough.tenant.block_storage.get_volume(volume.id).status == "in-use"
        assert _claims(cloud, server.id) == [("host1", 128), ("host2", 160)]

        _cli_ok(cloud, "server", "resize", "confirm", server.id)
        now = _wait_status(admin.compute, server.id, "ACTIVE")
        assert now.compute_host == "host2" and _db_host(cloud, server.id) == "host2"
        assert not _defined(cloud, "host1", server.id)
        assert not _files(cloud, "host1", server.id)
        assert _state(cloud, "host2", server.id).startswith("running")
        assert _nbd_disks(cloud, "host2", server.id) == [volume.id]
        # Confirm touched no export: the volume stays in use, plugged on host2.
        assert _exports(cloud) == {_export(volume)}
        assert _attachment_hosts(cloud, server.id) == ["host2"]
        volume = walkthrough.tenant.block_storage.get_volume(volume.id)
        assert volume.status == "in-use"
        assert [a["server_id"] for a in volume.attachments] == [server.id]
        assert _claims(cloud, server.id) == [("host2", 160)]
    finally:
        if volume is not None:
            _drop_volume(walkthrough, server.id, volume)
        _delete(walkthrough, [server.id])


def test_revert_then_cold_migrate_with_a_volume(cloud, walkthrough, tiny,  # noqa: F811
                                                bigger):  # noqa: F811
    admin = walkthrough.admin
    server = _boot_on_host1(walkthrough, tiny, "vol-reverted")
    volume = None
    try:
        volume = _volume_attached(cloud, walkthrough, server.id, "host1")
        _cli_ok(cloud, "server", "resize", "--flavor", BIGGER, "--wait", server.id)
        assert admin.compute.get_server(server.id).compute_host == "host2"
        _wait_console(cloud, "host2", server.id,
                      "FLOTILLA-DISK-MARKER vdb found %s" % server.id)
        found_on_host1 = _found(cloud, "host1", server.id)

        # Revert: the original boots on host1 with its old flavor and its volume.
        _cli_ok(cloud, "server", "resize", "revert", server.id)
        now = _wait_status(admin.compute, server.id, "ACTIVE")
        assert now.compute_host == "host1" and now.flavor["original_name"] == "m1.tiny"
        assert _state(cloud, "host1", server.id).startswith("running")
        assert _max_memory_kib(cloud, "host1", server.id) == 128 * 1024
        assert _nbd_disks(cloud, "host1", server.id) == [volume.id]
        assert not _defined(cloud, "host2", server.id)
        assert not _files(cloud, "host2", server.id)
        assert _attachment_hosts(cloud, server.id) == ["host1"]
        assert _exports(cloud) == {_export(volume)}
        assert _claims(cloud, server.id) == [("host1", 128)]
        assert _wait_found(cloud, "host1", server.id, found_on_host1 + 1)

        # Cold migration (admin): to host2 with the volume, then confirmed.
        _admin_cli(cloud, "server", "migrate", "--wait", server.id)
        now = admin.compute.get_server(server.id)
        assert (now.status, now.compute_host) == ("VERIFY_RESIZE", "host2")
        assert _nbd_disks(cloud, "host2", server.id) == [volume.id]
        # host2's directory went with the revert: a new console, a new boot.
        assert _wait_found(cloud, "host2", server.id, 1)
        assert _attachment_hosts(cloud, server.id) == ["host2"]
        _admin_cli(cloud, "server", "resize", "confirm", server.id)
        now = _wait_status(admin.compute, server.id, "ACTIVE")
        assert now.compute_host == "host2"
        assert not _defined(cloud, "host1", server.id)
        assert not _files(cloud, "host1", server.id)
        assert _exports(cloud) == {_export(volume)}
        migrations = admin.compute.get("/os-migrations?instance_uuid=%s" % server.id,
                                       microversion="2.59").json()["migrations"]
        assert sorted((m["status"], m["migration_type"]) for m in migrations) == [
            ("confirmed", "migration"), ("reverted", "resize")]
    finally:
        if volume is not None:
            _drop_volume(walkthrough, server.id, volume)
        _delete(walkthrough, [server.id])


def _wait_found(cloud, host: str, server_id: str, count: int, timeout: float = 180) -> bool:
    deadline = time.monotonic() + timeout
    while _found(cloud, host, server_id) < count:
        assert time.monotonic() < deadline, "%s found its marker %d times on %s, not %d" % (
            server_id, _found(cloud, host, server_id), host, count)
        time.sleep(0.5)
    return True


def test_a_volume_backed_server_is_cold_migrated(cloud, walkthrough, tiny):  # noqa: F811
    """Its root is a volume: nothing is copied, host2 defines it around the
    same volume and it boots from it (its boot counter, kept on the volume,
    says 2)."""
    admin = walkthrough.admin
    bfv = _boot_from_volume_on_host1(walkthrough, tiny)
    try:
        [root] = walkthrough.tenant.compute.get_server(bfv.id).attached_volumes
        assert _wait_console(cloud, "host1", bfv.id, "FLOTILLA-BOOT-COUNT 1")
        _admin_cli(cloud, "server", "migrate", "--wait", bfv.id)
        now = admin.compute.get_server(bfv.id)
        assert (now.status, now.compute_host) == ("VERIFY_RESIZE", "host2")
        assert _nbd_disks(cloud, "host2", bfv.id) == [root["id"]]
        assert _wait_console(cloud, "host2", bfv.id, "FLOTILLA-BOOT-COUNT 2")
        assert not (pathlib.Path(_rig(cloud, "host2")["instances_path"]) / bfv.id
                    / "disk").exists()
        assert _attachment_hosts(cloud, bfv.id) == ["host2"]
        _admin_cli(cloud, "server", "resize", "confirm", bfv.id)
        now = _wait_status(admin.compute, bfv.id, "ACTIVE")
        assert now.compute_host == "host2"
        assert not _defined(cloud, "host1", bfv.id)
        assert walkthrough.tenant.block_storage.get_volume(root["id"]).status == "in-use"
    finally:
        _delete(walkthrough, [bfv.id])


@pytest.fixture
def same_host_conductor(cloud):
    """The conductor restarted with ``[DEFAULT] allow_resize_to_same_host``,
    restarted without it afterwards."""
    extra = pathlib.Path(cloud.root) / "etc" / "same-host.conf"
    extra.write_text("[DEFAULT]\nallow_resize_to_same_host = true\n")
    cloud.stop_daemon("flotilla-conductor")
    _start(cloud, "flotilla-conductor", str(extra))
    try:
        yield
    finally:
        cloud.stop_daemon("flotilla-conductor")
        _start(cloud, "flotilla-conductor")


def test_same_host_resize_with_a_volume(cloud, walkthrough, tiny, bigger,  # noqa: F811
                                        same_host_conductor):
    """With host2 disabled, the resize can only stay on host1: both claims
    there during VERIFY_RESIZE; confirm keeps the resized guest, a second
    resize reverted brings the original back, each time with its volume."""
    admin = walkthrough.admin
    server = _boot_on_host1(walkthrough, tiny, "vol-same-host")
    kept = pathlib.Path(_rig(cloud, "host1")["instances_path"]) / (server.id + "_resize")
    volume = None
    try:
        volume = _volume_attached(cloud, walkthrough, server.id, "host1")
        with only_host(walkthrough, "host1"):
            _cli_ok(cloud, "server", "resize", "--flavor", BIGGER, "--wait", server.id)
            now = admin.compute.get_server(server.id)
            assert (now.status, now.compute_host) == ("VERIFY_RESIZE", "host1")
            assert _state(cloud, "host1", server.id).startswith("running")
            assert _max_memory_kib(cloud, "host1", server.id) == 160 * 1024
            assert _nbd_disks(cloud, "host1", server.id) == [volume.id]
            assert kept.is_dir()        # the original, kept for a revert
            _wait_console(cloud, "host1", server.id,
                          "FLOTILLA-DISK-MARKER vdb found %s" % server.id)
            assert _claims(cloud, server.id) == [("host1", 128), ("host1", 160)]
            assert _attachment_hosts(cloud, server.id) == ["host1"]
            _cli_ok(cloud, "server", "resize", "confirm", server.id)
            now = _wait_status(admin.compute, server.id, "ACTIVE")
            assert now.compute_host == "host1" and now.flavor["original_name"] == BIGGER
            assert _state(cloud, "host1", server.id).startswith("running")
            assert _max_memory_kib(cloud, "host1", server.id) == 160 * 1024
            assert not kept.exists()
            assert _claims(cloud, server.id) == [("host1", 160)]
            assert _exports(cloud) == {_export(volume)}

            # Again, to m1.small (the same size, another flavor), reverted.
            found = _found(cloud, "host1", server.id)
            _cli_ok(cloud, "server", "resize", "--flavor", "m1.small", "--wait", server.id)
            assert admin.compute.get_server(server.id).compute_host == "host1"
            assert kept.is_dir()
            assert _claims(cloud, server.id) == [("host1", 160), ("host1", 160)]
            _cli_ok(cloud, "server", "resize", "revert", server.id)
            now = _wait_status(admin.compute, server.id, "ACTIVE")
            assert now.compute_host == "host1" and now.flavor["original_name"] == BIGGER
            assert _state(cloud, "host1", server.id).startswith("running")
            assert _nbd_disks(cloud, "host1", server.id) == [volume.id]
            assert not kept.exists()
            assert _claims(cloud, server.id) == [("host1", 160)]
            # The original's console (kept with it) shows its boot after the revert.
            assert _wait_found(cloud, "host1", server.id, found + 1)
    finally:
        if volume is not None:
            _drop_volume(walkthrough, server.id, volume)
        _delete(walkthrough, [server.id])


def test_without_the_option_a_resize_never_stays_on_its_host(cloud, walkthrough,
                                                             tiny, bigger):  # noqa: F811
    """The default: with host2 disabled there is nowhere to go; the resize
    ends in error and the server runs on host1 as it was."""
    admin = walkthrough.admin
    server = _boot_on_host1(walkthrough, tiny, "stays-put")
    try:
        with only_host(walkthrough, "host1"):
            # (--wait ends at ACTIVE too: OSC takes it for a finished resize.)
            _cli_ok(cloud, "server", "resize", "--flavor", BIGGER, "--wait", server.id)
            now = _wait_status(admin.compute, server.id, "ACTIVE")
        assert now.compute_host == "host1" and now.flavor["original_name"] == "m1.tiny"
        assert _state(cloud, "host1", server.id).startswith("running")
        assert _claims(cloud, server.id) == [("host1", 128)]
        [migration] = admin.compute.get("/os-migrations?instance_uuid=%s" % server.id,
                                        microversion="2.59").json()["migrations"]
        assert migration["status"] == "error"
    finally:
        _delete(walkthrough, [server.id])

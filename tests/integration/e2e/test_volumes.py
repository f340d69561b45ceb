"""Block volumes on the demo's two-host cloud with the real tiny guest
(issue 11): flotilla-volume with its pool on rig host1's libvirtd and its
NBD exports served by a qemu-storage-daemon; the unmodified ``openstack``
CLI and openstacksdk.

The guest writes ``FLOTILLA-DISK-MARKER <its uuid>`` on any blank disk that
appears and prints the marker it finds on a disk that has one, so the data
is seen from inside: a volume written by a server on one host, detached and
attached to a server on the other host shows the first server's uuid there.
"""

from __future__ import annotations

import json
import pathlib
import re

import pytest

from tests.fixtures.rig import virsh
from tests.fixtures.waiting import wait_for_fresh_status
from tests.integration.e2e.test_snapshots import (  # noqa: F401 - fixtures
    _delete,
    _host_of,
    _instance_dir,
    _rig_host,
    _wait,
    cli,
    guest,
)
from volume.qmp import QMP

GIB = 1024 ** 3
MARKER = re.compile(r"FLOTILLA-DISK-MARKER (vd[a-z]) (written|found) ([0-9a-f-]+|none)")


def _console(cloud, host: str, server_id: str) -> str:
    log = _instance_dir(cloud, host, server_id) / "console.log"
    return log.read_text(errors="replace") if log.exists() else ""


def _markers(cloud, host: str, server_id: str) -> list[tuple[str, str, str]]:
    return MARKER.findall(_console(cloud, host, server_id))


def cli_plain(cloud, *args: str):
    """An ``openstack`` command that prints nothing (so not through the
    JSON-reading ``cli`` fixture); the finished process."""
    import os
    import subprocess

    from tests.fixtures.daemons import BIN
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update({"OS_AUTH_URL": cloud.auth_url, "OS_USERNAME": "demo",
                "OS_PASSWORD": cloud.state["credentials"]["demo"],
                "OS_PROJECT_NAME": "demo", "OS_USER_DOMAIN_NAME": "Default",
                "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3"})
    return subprocess.run([str(BIN / "openstack"), *args], env=env, capture_output=True,
                          text=True, timeout=120)


def cli_remove(cloud, server_id: str, volume_id: str) -> None:
    """``openstack server remove volume``."""
    proc = cli_plain(cloud, "server", "remove", "volume", server_id, volume_id)
    assert proc.returncode == 0, proc.stderr


def _exports(cloud) -> set[str]:
    qmp = QMP(str(pathlib.Path(cloud.root) / "state" / "volume-run" / "qmp.sock"))
    try:
        return {e["id"] for e in qmp.execute("query-block-exports")}
    finally:
        qmp.close()


def _domain_exists(cloud, host: str, server_id: str) -> bool:
    return server_id in virsh(_rig_host(cloud, host)["uri"], "list", "--all",
                              "--uuid").stdout.split()


def _domain_has_volume(cloud, host: str, server_id: str, volume_id: str) -> bool:
    live = virsh(_rig_host(cloud, host)["uri"], "dumpxml", server_id).stdout
    persistent = virsh(_rig_host(cloud, host)["uri"], "dumpxml", "--inactive",
                       server_id).stdout
    return volume_id in live or volume_id in persistent


@pytest.fixture(scope="module")
def servers(cloud, walkthrough, guest, cli):  # noqa: F811
    """Two booted servers, on different hosts (the second placed with the
    different_host scheduler hint): {host: server id}."""
    made = {}
    try:
        first = cli("server", "create", "--image", guest.id, "--flavor", "m1.tiny",
                    "--nic", "none", "--wait", "vol-a")
        made[_host_of(walkthrough, first["id"])] = first["id"]
        second = cli("server", "create", "--image", guest.id, "--flavor", "m1.tiny",
                     "--nic", "none", "--hint", "different_host=%s" % first["id"],
                     "--wait", "vol-b")
        made[_host_of(walkthrough, second["id"])] = second["id"]
        assert len(made) == 2 and {first["status"], second["status"]} == {"ACTIVE"}
        for host, server_id in made.items():
            # The guest is up (it prints its partitions at boot) before any attach.
            _wait(lambda h=host, s=server_id: "FLOTILLA-PARTITIONS" in _console(cloud, h, s),
                  120, "guest boot on " + host)
        yield made
    finally:
        _delete(walkthrough, list(made.values()))


def test_volume_service_is_listed(cloud):
    listing = cloud.manage("service", "list")
    assert any(line.split()[:2] == [cloud.state["volume_host"], "flotilla-volume"]
               and "up" in line.split() for line in listing.splitlines()), listing


def test_data_written_on_one_host_is_read_on_the_other(cloud, walkthrough, servers, cli):  # noqa: F811
    tenant = walkthrough.tenant
    created = cli("volume", "create", "--size", "1", "--description", "e2e", "data")
    volume = tenant.block_storage.wait_for_status(
        tenant.block_storage.get_volume(created["id"]), "available", wait=60)
    assert (volume.size, volume.name) == (1, "data")
    pool_file = pathlib.Path(cloud.root) / "state" / "volumes" / ("volume-%s" % volume.id)
    assert pool_file.exists()
    assert {v["ID"] for v in cli("volume", "list")} == {volume.id}
    (host_a, first), (host_b, second) = sorted(servers.items())

    # Attach to the first server (CLI): the guest sees a blank disk and marks it.
    added = cli("server", "add", "volume", first, volume.id)
    assert (added["Volume ID"], added["Device"]) == (volume.id, "/dev/vdb")
    volume = wait_for_fresh_status(tenant.block_storage, volume, "in-use", wait=60)
    assert [a["server_id"] for a in volume.attachments] == [first]
    device = volume.attachments[0]["device"]
    assert device == "/dev/vdb"
    assert _wait(lambda: ("vdb", "written", first) in _markers(cloud, host_a, first), 60,
                 "the marker written on " + host_a)
    assert _exports(cloud) == {"e" + volume.id.replace("-", "")}
    listed = cli("server", "volume", "list", first)
    assert [(a["Volume ID"], a["Device"]) for a in listed] == [(volume.id, "/dev/vdb")]
    listed = cli("volume", "attachment", "list")
    assert [(a["Volume ID"], a["Server ID"], a["Status"]) for a in listed] == \
        [(volume.id, first, "attached")]
    # Attached: it cannot be deleted.
    import openstack
    with pytest.raises(openstack.exceptions.BadRequestException):
        tenant.block_storage.delete_volume(volume)

    # Detach (SDK): the guest lets go, the export goes, the volume is available.
    tenant.compute.delete_volume_attachment(first, volume.id)
    volume = wait_for_fresh_status(tenant.block_storage, volume, "available", wait=60)
    assert volume.attachments == []
    assert not _domain_has_volume(cloud, host_a, first, volume.id)
    assert _exports(cloud) == set()

    # Attach to the server on the other host (SDK): its guest finds the first
    # server's marker.
    attachment = tenant.compute.create_volume_attachment(second, volume_id=volume.id)
    assert attachment.device == "/dev/vdb"
    wait_for_fresh_status(tenant.block_storage, volume, "in-use", wait=60)
    assert _wait(lambda: ("vdb", "found", first) in _markers(cloud, host_b, second), 60,
                 "the first server's marker read on " + host_b)
    assert not any(m[1] == "written" for m in _markers(cloud, host_b, second))

    # Detach, delete the volume (both through the CLI): its file goes from the pool.
    cli_remove(cloud, second, volume.id)
    wait_for_fresh_status(tenant.block_storage, volume, "available", wait=60)
    proc = cli_plain(cloud, "volume", "delete", volume.id)
    assert proc.returncode == 0, proc.stderr
    tenant.block_storage.wait_for_delete(volume, wait=60)
    assert not pool_file.exists()
    actions = [a["Action"] for a in cli("server", "event", "list", first)]
    assert "attach_volume" in actions and "detach_volume" in actions


def test_server_delete_releases_the_volume(cloud, walkthrough, guest, cli):  # noqa: F811
    """A server's delete detaches its volumes and deletes those marked
    delete_on_termination: at attach (CLI, 2.79, with a tag) or changed
    afterwards (CLI ``server volume set``, 2.85)."""
    tenant = walkthrough.tenant
    volume = tenant.block_storage.create_volume(size=1, name="orphan")
    scratch = tenant.block_storage.create_volume(size=1, name="scratch")
    kept = tenant.block_storage.create_volume(size=1, name="kept")
    for v in (volume, scratch, kept):
        wait_for_fresh_status(tenant.block_storage, v, "available", wait=60)
    server = cli("server", "create", "--image", guest.id, "--flavor", "m1.tiny",
                 "--nic", "none", "--wait", "vol-delete")
    try:
        host = _host_of(walkthrough, server["id"])
        _wait(lambda: "FLOTILLA-PARTITIONS" in _console(cloud, host, server["id"]),
              120, "guest boot")
        tenant.compute.create_volume_attachment(server["id"], volume_id=volume.id)
        wait_for_fresh_status(tenant.block_storage, volume, "in-use", wait=60)
        for v, tag in ((scratch, "scratch"), (kept, "kept")):
            shown = cli("--os-compute-api-version", "2.79", "server", "add", "volume",
                        "--tag", tag, "--enable-delete-on-termination", server["id"], v.id)
            assert (shown["Tag"], shown["Delete On Termination"]) == (tag, True)
            wait_for_fresh_status(tenant.block_storage, v, "in-use", wait=60)
        proc = cli_plain(cloud, "--os-compute-api-version", "2.85", "server", "volume", "set",
                         "--preserve-on-termination", server["id"], kept.id)
        assert proc.returncode == 0, proc.stderr
        listed = cli("server", "volume", "list", server["id"])
        assert sorted((a["Volume ID"], a["Tag"], a["Delete On Termination?"], a["Device"])
                      for a in listed) == sorted([
                          (volume.id, None, False, "/dev/vdb"),
                          (scratch.id, "scratch", True, "/dev/vdc"),
                          (kept.id, "kept", False, "/dev/vdd")])
    finally:
        _delete(walkthrough, [server["id"]])
    tenant.block_storage.wait_for_delete(scratch, wait=60)
    for v in (volume, kept):
        v = wait_for_fresh_status(tenant.block_storage, v, "available", wait=60)
        assert v.attachments == []
        tenant.block_storage.delete_volume(v)
    assert _exports(cloud) == set()
    for v in (volume, kept):
        tenant.block_storage.wait_for_delete(v, wait=60)


def test_extend_is_seen_by_the_guest(cloud, walkthrough, servers, cli):  # noqa: F811
    """``openstack volume set --size``: an attached volume at microversion
    3.42 grows online (the running guest prints the new size and saw no I/O
    error); an available one grows too; the guest the volume is attached to
    again sees the new size and the marker it wrote before the online
    extend."""
    tenant = walkthrough.tenant
    (host_a, first), _ = sorted(servers.items())

    def since(start: int) -> str:
        return _console(cloud, host_a, first)[start:]

    volume = tenant.block_storage.create_volume(size=1, name="grow")
    pool_file = pathlib.Path(cloud.root) / "state" / "volumes" / ("volume-%s" % volume.id)
    try:
        wait_for_fresh_status(tenant.block_storage, volume, "available", wait=60)
        start = len(_console(cloud, host_a, first))
        tenant.compute.create_volume_attachment(first, volume_id=volume.id)
        wait_for_fresh_status(tenant.block_storage, volume, "in-use", wait=60)
        assert _wait(lambda: "FLOTILLA-DISK-MARKER vdb written %s" % first in since(start),
                     60, "the marker written")
        assert "FLOTILLA-DISK-SIZE vdb %d" % GIB in since(start)
        # In use at 3.42: extended online, the running guest sees it. (Below
        # 3.42 the CLI refuses by itself; the API's 400 is a functional test.)
        proc = cli_plain(cloud, "--os-volume-api-version", "3.42", "volume", "set",
                         "--size", "2", volume.id)
        assert proc.returncode == 0, proc.stderr
        assert _wait(lambda: (lambda v: (v.status, v.size) == ("in-use", 2))(
            tenant.block_storage.get_volume(volume.id)), 120, "the volume extended online")
        assert _wait(lambda: "FLOTILLA-DISK-SIZE vdb %d" % (2 * GIB) in since(start), 60,
                     "the new size in the running guest")
        assert pool_file.stat().st_size == 2 * GIB
        assert "I/O error" not in since(start), since(start)
        assert tenant.compute.get_server(first).status == "ACTIVE"

        tenant.compute.delete_volume_attachment(first, volume.id)
        wait_for_fresh_status(tenant.block_storage, volume, "available", wait=60)
        proc = cli_plain(cloud, "volume", "set", "--size", "3", volume.id)
        assert proc.returncode == 0, proc.stderr
        # (wait_for_status returns at once for a status the object has already.)
        assert _wait(lambda: (lambda v: (v.status, v.size) == ("available", 3))(
            tenant.block_storage.get_volume(volume.id)), 60, "the volume extended")
        assert pool_file.stat().st_size == 3 * GIB
        # Not larger: refused (the API's 400 names new_size).
        assert cli_plain(cloud, "volume", "set", "--size", "3", volume.id).returncode != 0

        start = len(_console(cloud, host_a, first))
        tenant.compute.create_volume_attachment(first, volume_id=volume.id)
        wait_for_fresh_status(tenant.block_storage, volume, "in-use", wait=60)
        assert _wait(lambda: "FLOTILLA-DISK-SIZE vdb %d" % (3 * GIB) in since(start), 60,
                     "the new size in the guest")
        # The marker written before the online extend is intact.
        assert _wait(lambda: "FLOTILLA-DISK-MARKER vdb found %s" % first in since(start),
                     60, "the data kept")
        tenant.compute.delete_volume_attachment(first, volume.id)
        wait_for_fresh_status(tenant.block_storage, volume, "available", wait=60)
    finally:
        tenant.block_storage.delete_volume(volume, ignore_missing=True)
        tenant.block_storage.wait_for_delete(volume, wait=60)


def test_a_rebuild_keeps_the_attached_volume(cloud, walkthrough, servers,  # noqa: F811
                                             guest, cli):  # noqa: F811
    """``openstack server rebuild --wait``: a new root disk from the image,
    the volume still attached (live and persistent), its data there: the
    rebuilt guest finds the marker it wrote before."""
    tenant = walkthrough.tenant
    (host_a, first), _ = sorted(servers.items())
    volume = tenant.block_storage.create_volume(size=1, name="kept")
    try:
        wait_for_fresh_status(tenant.block_storage, volume, "available", wait=60)
        start = len(_console(cloud, host_a, first))
        tenant.compute.create_volume_attachment(first, volume_id=volume.id)
        wait_for_fresh_status(tenant.block_storage, volume, "in-use", wait=60)
        assert _wait(lambda: "FLOTILLA-DISK-MARKER vdb written %s" % first
                     in _console(cloud, host_a, first)[start:], 60, "the marker written")
        start = len(_console(cloud, host_a, first))
        cli("server", "rebuild", "--image", guest.id, "--wait", first)
        # (The CLI prints the server as the rebuild call answered: REBUILD.)
        assert tenant.compute.get_server(first).status == "ACTIVE"
        assert _wait(lambda: "FLOTILLA-DISK-MARKER vdb found %s" % first
                     in _console(cloud, host_a, first)[start:], 120,
                     "the rebuilt guest finding the volume's marker")
        uri = _rig_host(cloud, host_a)["uri"]
        assert volume.id in virsh(uri, "dumpxml", first).stdout
        assert volume.id in virsh(uri, "dumpxml", "--inactive", first).stdout
        assert tenant.block_storage.get_volume(volume.id).status == "in-use"
        assert "e" + volume.id.replace("-", "") in _exports(cloud)
    finally:
        if tenant.block_storage.get_volume(volume.id).status == "in-use":
            tenant.compute.delete_volume_attachment(first, volume.id)
            _wait(lambda: tenant.block_storage.get_volume(volume.id).status == "available",
                  60, "the volume detached")
        tenant.block_storage.delete_volume(volume, ignore_missing=True)
        tenant.block_storage.wait_for_delete(volume, wait=60)


# --- boot from volume (block_device_mapping_v2 at server create) -----------------------

def _nbd_boot_disk(cloud, host: str, server_id: str) -> tuple[str, str, str]:
    """(type, source protocol, target) of the domain's first disk."""
    from lxml import etree
    root = etree.fromstring(virsh(_rig_host(cloud, host)["uri"], "dumpxml",
                                  server_id).stdout.encode())
    disk = root.find("devices/disk")
    return (disk.get("type"), disk.find("source").get("protocol") or "",
            disk.find("target").get("dev"))


def test_boot_from_volume_with_the_cli(cloud, walkthrough, guest, cli):  # noqa: F811
    """``server create --boot-from-volume 1 --image``: the image is written
    into a new volume, the guest boots from its NBD export (its boot
    counter lives on that disk), no local root disk; the CLI asked
    delete_on_termination false, so the volume outlives the server. A
    volume made from its snapshot is bootable and boots the same disk."""
    tenant = walkthrough.tenant
    server = cli("server", "create", "--boot-from-volume", "1", "--image", guest.id,
                 "--flavor", "m1.tiny", "--nic", "none", "--wait", "bfv-cli")
    try:
        assert server["status"] == "ACTIVE", server
        host = _host_of(walkthrough, server["id"])
        assert _wait(lambda: "FLOTILLA-BOOT-COUNT 1" in _console(cloud, host, server["id"]),
                     120, "the guest booted from the volume's disk")
        assert _nbd_boot_disk(cloud, host, server["id"]) == ("network", "nbd", "vda")
        assert not (_instance_dir(cloud, host, server["id"]) / "disk").exists()
        shown = tenant.compute.get_server(server["id"])
        [attached] = shown.attached_volumes
        assert attached["delete_on_termination"] is False
        assert "booted from volume" in cli("server", "show", server["id"])["image"]
        volume = tenant.block_storage.get_volume(attached["id"])
        assert (volume.status, volume.is_bootable, volume.size) == ("in-use", True, 1)
        assert [a["device"] for a in volume.attachments] == ["/dev/vda"]
        listed = cli("server", "volume", "list", server["id"])
        assert [(a["Volume ID"], a["Device"]) for a in listed] == [(volume.id, "/dev/vda")]
    finally:
        _delete(walkthrough, [server["id"]])
    volume = wait_for_fresh_status(tenant.block_storage, volume, "available", wait=60)
    assert _exports(cloud) == set()

    # Its snapshot gives a volume that boots as it did: the boot counter on
    # the copied disk goes on from the original's 1.
    snap = cli("volume", "snapshot", "create", "--volume", volume.id, "bfv-snap")
    tenant.block_storage.wait_for_status(tenant.block_storage.get_snapshot(snap["id"]),
                                         "available", wait=60)
    copy = cli("volume", "create", "--snapshot", snap["id"], "bfv-copy")
    copy = tenant.block_storage.wait_for_status(tenant.block_storage.get_volume(copy["id"]),
                                                "available", wait=60)
    assert copy.is_bootable and copy.volume_image_metadata["image_id"] == guest.id
    again = cli("server", "create", "--volume", copy.id, "--flavor", "m1.tiny",
                "--nic", "none", "--wait", "bfv-copy")
    try:
        assert again["status"] == "ACTIVE", again
        host = _host_of(walkthrough, again["id"])
        assert _wait(lambda: "FLOTILLA-BOOT-COUNT 2" in _console(cloud, host, again["id"]),
                     120, "the copy booted, counting on from the original's boots")
    finally:
        _delete(walkthrough, [again["id"]])
    wait_for_fresh_status(tenant.block_storage, copy, "available", wait=60)
    tenant.block_storage.delete_volume(copy)
    tenant.block_storage.wait_for_delete(copy, wait=60)
    tenant.block_storage.delete_snapshot(snap["id"])
    tenant.block_storage.wait_for_delete(tenant.block_storage.get_snapshot(snap["id"]),
                                         wait=60)
    tenant.block_storage.delete_volume(volume)
    tenant.block_storage.wait_for_delete(volume, wait=60)


def test_a_volume_backed_rebuild_reimages_the_root_volume_with_the_cli(
        cloud, walkthrough, guest, cli):  # noqa: F811
    """``openstack --os-compute-api-version 2.93 server rebuild
    --reimage-boot-volume --wait`` of a server booted from a volume with a
    blank data volume: the guest counts its boots on its root disk (2 after
    a hard reboot); after the rebuild it counts 1 again (the root volume
    was written afresh from the image, same volume id), while the data
    volume kept the marker the guest wrote on it."""
    tenant = walkthrough.tenant
    storage = tenant.block_storage
    server = cli("server", "create", "--boot-from-volume", "1", "--image", guest.id,
                 "--flavor", "m1.tiny", "--nic", "none", "--block-device",
                 "source_type=blank,destination_type=volume,volume_size=1,"
                 "delete_on_termination=true", "--wait", "bfv-rebuild")
    root_id = None
    try:
        assert server["status"] == "ACTIVE", server
        host = _host_of(walkthrough, server["id"])
        attached = tenant.compute.get_server(server["id"]).attached_volumes
        [root_id] = [a["id"] for a in attached if not a["delete_on_termination"]]
        [data_id] = [a["id"] for a in attached if a["delete_on_termination"]]
        assert _wait(lambda: ("vdb", "written", server["id"])
                     in _markers(cloud, host, server["id"]), 120,
                     "the guest's marker on its data volume")
        proc = cli_plain(cloud, "server", "reboot", "--hard", "--wait", server["id"])
        assert proc.returncode == 0, proc.stderr
        assert _wait(lambda: "FLOTILLA-BOOT-COUNT 2" in _console(cloud, host, server["id"]),
                     120, "the second boot counted on the root volume")
        start = len(_console(cloud, host, server["id"]))

        cli("--os-compute-api-version", "2.93", "server", "rebuild", "--image", guest.id,
            "--reimage-boot-volume", "--wait", server["id"])
        shown = tenant.compute.get_server(server["id"])
        assert (shown.status, shown.task_state) == ("ACTIVE", None)
        assert sorted(a["id"] for a in shown.attached_volumes) == sorted([root_id, data_id])
        assert _wait(lambda: "FLOTILLA-BOOT-COUNT 1"
                     in _console(cloud, host, server["id"])[start:], 120,
                     "the rebuilt guest booting from a fresh root disk")
        assert _wait(lambda: ("vdb", "found", server["id"])
                     in MARKER.findall(_console(cloud, host, server["id"])[start:]), 120,
                     "the rebuilt guest finding its data volume's marker")
        root = storage.get_volume(root_id)
        assert (root.status, root.size, root.volume_image_metadata["image_id"]) == \
            ("in-use", 1, guest.id)
        assert _nbd_boot_disk(cloud, host, server["id"]) == ("network", "nbd", "vda")
        assert {"e" + v.replace("-", "") for v in (root_id, data_id)} <= _exports(cloud)
        assert "booted from volume" in cli("server", "show", server["id"])["image"]
    finally:
        _delete(walkthrough, [server["id"]])
        if root_id:
            root = wait_for_fresh_status(storage, storage.get_volume(root_id), "available",
                                         wait=60)
            storage.delete_volume(root)
            storage.wait_for_delete(root, wait=60)
    assert _exports(cloud) == set()


def test_an_image_of_a_volume_backed_server_boots_a_copy_with_the_cli(
        cloud, walkthrough, guest, cli):  # noqa: F811
    """``server image create --wait`` of a server booted from a volume: its
    volume is snapshotted while the guest runs (crash-consistent) and the
    image, active with size 0, maps the snapshot (Nova's bdm_v2 image).
    ``server create --image`` of it boots from a new volume made from the
    snapshot: the guest counts on from the original's boot."""
    tenant = walkthrough.tenant
    storage = tenant.block_storage
    servers: list[str] = []
    volumes: list[str] = []
    snapshots: list[str] = []
    image_id = None
    try:
        origin = cli("server", "create", "--boot-from-volume", "1", "--image", guest.id,
                     "--flavor", "m1.tiny", "--nic", "none", "--wait", "bfv-origin")
        servers.append(origin["id"])
        assert origin["status"] == "ACTIVE", origin
        host = _host_of(walkthrough, origin["id"])
        assert _wait(lambda: "FLOTILLA-BOOT-COUNT 1" in _console(cloud, host, origin["id"]),
                     120, "the original booted from its volume")
        [attached] = tenant.compute.get_server(origin["id"]).attached_volumes
        volumes.append(attached["id"])

        image = cli("server", "image", "create", "--name", "bfv-origin-image", "--wait",
                    origin["id"])
        image_id = image["id"]
        assert (image["status"], image["size"]) == ("active", 0), image
        shown = tenant.image.get("/images/%s" % image_id).json()
        [mapping] = json.loads(shown["block_device_mapping"])
        snapshots.append(mapping["snapshot_id"])
        assert (shown["bdm_v2"], shown["root_device_name"], shown["instance_uuid"]) == \
            ("True", "/dev/vda", origin["id"])
        assert (mapping["source_type"], mapping["destination_type"], mapping["boot_index"],
                mapping["volume_size"]) == ("snapshot", "volume", 0, 1), mapping
        snap = storage.get_snapshot(mapping["snapshot_id"])
        assert snap.volume_id == attached["id"]
        # The guest kept running.
        server = tenant.compute.get_server(origin["id"])
        assert (server.status, server.task_state) == ("ACTIVE", None)

        copy = cli("server", "create", "--image", image_id, "--flavor", "m1.tiny",
                   "--nic", "none", "--wait", "bfv-from-image")
        servers.append(copy["id"])
        assert copy["status"] == "ACTIVE", copy
        copy_host = _host_of(walkthrough, copy["id"])
        assert _wait(lambda: "FLOTILLA-BOOT-COUNT 2" in _console(cloud, copy_host,
                                                                 copy["id"]),
                     120, "the copy booted, counting on from the original's boot")
        assert _nbd_boot_disk(cloud, copy_host, copy["id"]) == ("network", "nbd", "vda")
        [made] = tenant.compute.get_server(copy["id"]).attached_volumes
        volumes.append(made["id"])
        volume = storage.get_volume(made["id"])
        assert (volume.snapshot_id, volume.is_bootable, volume.size, volume.status) == \
            (snap.id, True, 1, "in-use")
        assert volume.volume_image_metadata["image_id"] == guest.id
    finally:
        _delete(walkthrough, servers)
        # The CLI's --boot-from-volume asked delete_on_termination false, and
        # the image's mapping keeps it: both volumes outlive their servers.
        kept = {}
        for volume_id in volumes:
            kept[volume_id] = wait_for_fresh_status(storage, storage.get_volume(volume_id),
                                                    "available", wait=60)
        for volume_id in volumes[1:]:
            storage.delete_volume(kept[volume_id])
            storage.wait_for_delete(kept[volume_id], wait=60)
        if image_id:
            tenant.image.delete_image(image_id, ignore_missing=True)
        for snapshot_id in snapshots:
            snap = wait_for_fresh_status(storage, storage.get_snapshot(snapshot_id),
                                         "available", wait=60)
            storage.delete_snapshot(snap)
            storage.wait_for_delete(snap, wait=60)
        if volumes:     # the original's, once its snapshot is gone
            storage.delete_volume(kept[volumes[0]])
            storage.wait_for_delete(kept[volumes[0]], wait=60)
    assert _exports(cloud) == set()


def test_a_blank_volume_at_boot_with_the_cli(cloud, walkthrough, guest, cli):  # noqa: F811
    """``server create --block-device source_type=blank,destination_type=volume,
    volume_size=1,delete_on_termination=true``: the build makes a blank
    volume, the guest finds it blank at vdb and marks it; the server's
    delete deletes the volume."""
    tenant = walkthrough.tenant
    server = cli("server", "create", "--image", guest.id, "--flavor", "m1.tiny",
                 "--nic", "none", "--block-device",
                 "source_type=blank,destination_type=volume,volume_size=1,"
                 "delete_on_termination=true", "--wait", "blank-cli")
    try:
        assert server["status"] == "ACTIVE", server
        host = _host_of(walkthrough, server["id"])
        [attached] = tenant.compute.get_server(server["id"]).attached_volumes
        volume = tenant.block_storage.get_volume(attached["id"])
        assert (volume.status, volume.is_bootable, volume.size,
                attached["delete_on_termination"]) == ("in-use", False, 1, True)
        assert [a["device"] for a in volume.attachments] == ["/dev/vdb"]
        assert _wait(lambda: ("vdb", "written", server["id"])
                     in _markers(cloud, host, server["id"]), 120,
                     "the guest's marker on its blank volume")
    finally:
        _delete(walkthrough, [server["id"]])
    tenant.block_storage.wait_for_delete(volume, wait=60)
    assert _exports(cloud) == set()


def test_volumes_at_boot_and_through_a_live_migration_with_the_sdk(
        cloud, walkthrough, guest):  # noqa: F811
    """openstacksdk: a boot volume made from the image (delete_on_termination
    true) and an existing blank volume attached at boot, which the guest
    marks as vdb. The server live-migrates to the other host with both: no
    disk is copied (it has none of its own), the new host's definition
    names the same exports, and the volume detached and attached again
    there shows the guest the marker it wrote before the move. Deleting the
    server deletes the first volume, frees the second."""
    tenant = walkthrough.tenant
    extra = tenant.block_storage.create_volume(size=1, name="at-boot")
    wait_for_fresh_status(tenant.block_storage, extra, "available", wait=60)
    flavor = tenant.compute.find_flavor("m1.tiny", ignore_missing=False)
    server = tenant.compute.create_server(
        name="bfv-sdk", flavor_id=flavor.id, networks="none", block_device_mapping=[
            {"uuid": guest.id, "source_type": "image", "destination_type": "volume",
             "boot_index": 0, "volume_size": 1, "delete_on_termination": True},
            {"uuid": extra.id, "source_type": "volume", "destination_type": "volume",
             "boot_index": -1}])
    boot_id = None
    try:
        server = tenant.compute.wait_for_server(server, wait=180)
        host = _host_of(walkthrough, server.id)
        assert _wait(lambda: ("vdb", "written", server.id) in _markers(cloud, host, server.id),
                     120, "the guest marked the volume attached at boot")
        assert "FLOTILLA-BOOT-COUNT 1" in _console(cloud, host, server.id)
        attached = {a["id"]: a["delete_on_termination"]
                    for a in tenant.compute.get_server(server.id).attached_volumes}
        [boot_id] = [v for v in attached if v != extra.id]
        assert attached == {boot_id: True, extra.id: False}
        assert tenant.block_storage.get_volume(extra).status == "in-use"

        admin = walkthrough.admin
        admin.compute.live_migrate_server(server, host=None, block_migration="auto")
        there = _wait(lambda: (h := _host_of(walkthrough, server.id)) != host
                      and tenant.compute.get_server(server.id).status == "ACTIVE" and h,
                      120, "the live migration to the other host")
        [migration] = [m for m in admin.compute.migrations(instance_uuid=server.id)]
        assert migration.status == "completed" and migration.dest_compute == there
        assert not _domain_exists(cloud, host, server.id)
        for volume_id in (boot_id, extra.id):
            assert _domain_has_volume(cloud, there, server.id, volume_id)
        assert _nbd_boot_disk(cloud, there, server.id) == ("network", "nbd", "vda")
        assert not (_instance_dir(cloud, there, server.id) / "disk").exists()
        # Detached on its new host, attached again: the marker written before.
        tenant.compute.delete_volume_attachment(server, extra.id)
        wait_for_fresh_status(tenant.block_storage, extra, "available", wait=60)
        tenant.compute.create_volume_attachment(server, volume_id=extra.id)
        wait_for_fresh_status(tenant.block_storage, extra, "in-use", wait=60)
        assert _wait(lambda: ("vdb", "found", server.id) in _markers(cloud, there, server.id),
                     60, "the guest on %s found its marker" % there)
    finally:
        _delete(walkthrough, [server.id])
    wait_for_fresh_status(tenant.block_storage, extra, "available", wait=60)
    if boot_id:
        _wait(lambda: tenant.block_storage.find_volume(boot_id) is None, 60,
              "the boot volume deleted with its server")
    assert _exports(cloud) == set()
    tenant.block_storage.delete_volume(extra)
    tenant.block_storage.wait_for_delete(extra, wait=60)


# --- a volume that follows its server (the migration, drain and crash tests) ----------

def attach_marked_volume(cloud, walkthrough, server_id: str, host: str, name: str):
    """A new 1 GiB volume attached to ``server_id`` (running on ``host``),
    once its guest has written its marker on it; the volume."""
    tenant = walkthrough.tenant
    volume = tenant.block_storage.create_volume(size=1, name=name)
    wait_for_fresh_status(tenant.block_storage, volume, "available", wait=60)
    tenant.compute.create_volume_attachment(server_id, volume_id=volume.id)
    volume = wait_for_fresh_status(tenant.block_storage, volume, "in-use", wait=60)
    _wait(lambda: ("written", server_id) in [m[1:] for m in _markers(cloud, host, server_id)],
          60, "the marker written on " + host)
    return volume


def delete_released_volume(walkthrough, volume_id: str) -> None:
    """Delete a volume once its server's deletion has released it."""
    storage = walkthrough.tenant.block_storage
    _wait(lambda: storage.get_volume(volume_id).status == "available", 60,
          "the volume released")
    storage.delete_volume(volume_id)
    seen: list = []

    def gone() -> bool:
        found = storage.find_volume(volume_id)
        seen.append(found and found.status)
        return found is None
    try:
        _wait(gone, 60, "the volume deleted")
    except AssertionError:
        raise AssertionError("volume %s not deleted; statuses seen: %s"
                             % (volume_id, sorted(set(map(str, seen)))))


def _attachment_hosts(cloud, server_id: str) -> list[str | None]:
    """The hosts of the server's volume attachments, as the database has
    them (the table flotilla.db.volumes.attachments_of_instance reads)."""
    import sqlalchemy as sa
    engine = sa.create_engine(cloud.state["database_url"])
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.text(
                "select host from volume_attachments where instance_uuid = :u "
                "order by id"), {"u": server_id})]
    finally:
        engine.dispose()


def check_volume_followed(cloud, walkthrough, server_id: str, volume_id: str,
                          host: str, other: str) -> None:
    """The server, now on ``host``, still has the volume: in-use, in the
    live definition there (in no definition on ``other``), exported, its
    attachment on ``host`` as the instance is; detached and attached again,
    the guest finds the marker it wrote before."""
    tenant = walkthrough.tenant
    volume = tenant.block_storage.get_volume(volume_id)
    assert (volume.status, [a["server_id"] for a in volume.attachments]) == (
        "in-use", [server_id]), (volume.status, volume.attachments)
    assert volume_id in virsh(_rig_host(cloud, host)["uri"], "dumpxml", server_id).stdout
    assert not (_domain_exists(cloud, other, server_id)
                and _domain_has_volume(cloud, other, server_id, volume_id))
    assert "e" + volume_id.replace("-", "") in _exports(cloud)
    instance_host = walkthrough.admin.compute.get_server(server_id).compute_host
    assert _attachment_hosts(cloud, server_id) == [host] == [instance_host]
    start = len(_console(cloud, host, server_id))
    tenant.compute.delete_volume_attachment(server_id, volume_id)
    _wait(lambda: tenant.block_storage.get_volume(volume_id).status == "available", 60,
          "the volume detached on " + host)
    # The guest looks once a second: it must see the disk go to see it come.
    _wait(lambda: "FLOTILLA-PARTITIONS changed" in _console(cloud, host, server_id)[start:],
          60, "the guest on %s seeing the disk go" % host)
    tenant.compute.create_volume_attachment(server_id, volume_id=volume_id)
    _wait(lambda: tenant.block_storage.get_volume(volume_id).status == "in-use", 60,
          "the volume attached again on " + host)
    try:
        _wait(lambda: ("found", server_id) in [m[1:] for m in MARKER.findall(
            _console(cloud, host, server_id)[start:])], 60,
            "the guest on %s finding its marker" % host)
    except AssertionError as exc:
        raise AssertionError("%s; its console since the detach:\n%s" % (
            exc, _console(cloud, host, server_id)[start:][-3000:])) from None
    assert _attachment_hosts(cloud, server_id) == [host]

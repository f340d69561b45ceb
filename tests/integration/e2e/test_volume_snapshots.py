"""Volume snapshots and volumes made from a snapshot or an image on the
demo's two-host cloud (issue 11): the real flotilla-volume with its pool on
rig host1's libvirtd and its qemu-storage-daemon, driven by the unmodified
``openstack`` CLI (and openstacksdk to wait).

A marker is written straight into a volume's pool file, the volume is
snapshotted and overwritten, and a volume made from the snapshot holds the
marker (the copy is the volume as it was). A volume attached to a running
guest is snapshotted while in use and the copy holds the marker the guest
wrote. A volume made from the tiny guest image holds the image's bytes,
converted to raw, and is bootable with the image's metadata shown. A
clone (``openstack volume create --source``) of a volume in use by a
running guest, attached to another server, shows that guest the first
one's marker.
"""

from __future__ import annotations

import pathlib
import subprocess
import uuid

from tests.fixtures.waiting import wait_for_fresh_status
from tests.integration.e2e.test_snapshots import (  # noqa: F401 - fixtures
    _delete,
    _host_of,
    _wait,
    cli,
    guest,
)
from tests.integration.e2e.test_volumes import _console, cli_plain

GIB = 1024 ** 3
OFFSET = 5 * 1024 * 1024        # past anything the guest's marker uses


def _pool(cloud) -> pathlib.Path:
    return pathlib.Path(cloud.root) / "state" / "volumes"


def _volume_file(cloud, volume_id: str) -> pathlib.Path:
    return _pool(cloud) / ("volume-%s" % volume_id)


def _write(path: pathlib.Path, data: bytes, offset: int = OFFSET) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)
        f.flush()


def _read(path: pathlib.Path, length: int, offset: int = OFFSET) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def _available_volume(walkthrough, volume_id: str):
    storage = walkthrough.tenant.block_storage
    return storage.wait_for_status(storage.get_volume(volume_id), "available", wait=120)


def _available_snapshot(walkthrough, snapshot_id: str):
    storage = walkthrough.tenant.block_storage
    return storage.wait_for_status(storage.get_snapshot(snapshot_id), "available",
                                   wait=120)


def _cleanup(walkthrough, snapshots: list[str], volumes: list[str]) -> None:
    """Snapshots first (a volume with snapshots cannot be deleted)."""
    storage = walkthrough.tenant.block_storage
    for snapshot_id in snapshots:
        storage.delete_snapshot(snapshot_id, ignore_missing=True)
    for snapshot_id in snapshots:
        _wait(lambda s=snapshot_id: not _exists(storage.get_snapshot, s), 60,
              "snapshot %s deleted" % snapshot_id)
    for volume_id in volumes:
        storage.delete_volume(volume_id, ignore_missing=True)
    for volume_id in volumes:
        _wait(lambda v=volume_id: not _exists(storage.get_volume, v), 60,
              "volume %s deleted" % volume_id)


def _exists(getter, ident: str) -> bool:
    import openstack
    try:
        getter(ident)
        return True
    except openstack.exceptions.NotFoundException:
        return False


def test_a_snapshot_keeps_the_volume_as_it_was(cloud, walkthrough, cli):  # noqa: F811
    snapshots: list[str] = []
    volumes: list[str] = []
    marker = b"FLOTILLA-SNAPSHOT-MARKER %s" % uuid.uuid4().hex.encode()
    try:
        source = cli("volume", "create", "--size", "1", "snap-source")
        volumes.append(source["id"])
        _available_volume(walkthrough, source["id"])
        _write(_volume_file(cloud, source["id"]), marker)

        snap = cli("volume", "snapshot", "create", "--volume", "snap-source",
                   "--description", "e2e", "snap-one")
        snapshots.append(snap["id"])
        snap = _available_snapshot(walkthrough, snap["id"])
        assert (snap.size, snap.volume_id) == (1, source["id"])
        snap_file = _pool(cloud) / ("snapshot-%s" % snap.id)
        assert _read(snap_file, len(marker)) == marker
        listed = cli("volume", "snapshot", "list")
        assert [(s["ID"], s["Name"], s["Status"], s["Size"]) for s in listed] == \
            [(snap.id, "snap-one", "available", 1)]
        shown = cli("volume", "snapshot", "show", "snap-one")
        assert (shown["id"], shown["volume_id"], shown["description"]) == \
            (snap.id, source["id"], "e2e")

        # The source changes afterwards; the snapshot does not.
        _write(_volume_file(cloud, source["id"]), b"X" * len(marker))

        # A volume with a snapshot cannot be deleted (Cinder's 400).
        proc = cli_plain(cloud, "volume", "delete", source["id"])
        assert proc.returncode != 0 and "snapshot" in proc.stderr, proc.stderr

        copy = cli("volume", "create", "--snapshot", "snap-one", "--size", "2",
                   "from-snap")
        volumes.append(copy["id"])
        copy = _available_volume(walkthrough, copy["id"])
        assert (copy.size, copy.snapshot_id) == (2, snap.id)
        copy_file = _volume_file(cloud, copy.id)
        assert _read(copy_file, len(marker)) == marker
        assert copy_file.stat().st_size == 2 * GIB

        # Deleted through the CLI: the snapshot's file goes from the pool.
        proc = cli_plain(cloud, "volume", "snapshot", "delete", "snap-one")
        assert proc.returncode == 0, proc.stderr
        _wait(lambda: not _exists(walkthrough.tenant.block_storage.get_snapshot, snap.id),
              60, "the snapshot deleted")
        snapshots.remove(snap.id)
        assert not snap_file.exists()
    finally:
        _cleanup(walkthrough, snapshots, volumes)


def test_an_in_use_volume_is_snapshotted_while_the_guest_runs(  # noqa: F811
        cloud, walkthrough, guest, cli):  # noqa: F811
    tenant = walkthrough.tenant
    snapshots: list[str] = []
    volumes: list[str] = []
    server = cli("server", "create", "--image", guest.id, "--flavor", "m1.tiny",
                 "--nic", "none", "--wait", "snap-guest")
    try:
        host = _host_of(walkthrough, server["id"])
        _wait(lambda: "FLOTILLA-PARTITIONS" in _console(cloud, host, server["id"]),
              180, "guest boot")
        volume = cli("volume", "create", "--size", "1", "in-use-source")
        volumes.append(volume["id"])
        _available_volume(walkthrough, volume["id"])
        tenant.compute.create_volume_attachment(server["id"], volume_id=volume["id"])
        tenant.block_storage.wait_for_status(
            tenant.block_storage.get_volume(volume["id"]), "in-use", wait=60)
        _wait(lambda: "FLOTILLA-DISK-MARKER vdb written %s" % server["id"]
              in _console(cloud, host, server["id"]), 60, "the guest's marker")

        # In use: the CLI (3.65, no force) takes a crash-consistent copy.
        snap = cli("volume", "snapshot", "create", "--volume", volume["id"], "live")
        snapshots.append(snap["id"])
        _available_snapshot(walkthrough, snap["id"])
        copy = cli("volume", "create", "--snapshot", snap["id"], "from-live")
        volumes.append(copy["id"])
        _available_volume(walkthrough, copy["id"])
        data = _volume_file(cloud, copy["id"]).read_bytes()[:OFFSET]
        assert server["id"].encode() in data

        tenant.compute.delete_volume_attachment(server["id"], volume["id"])
        tenant.block_storage.wait_for_status(
            tenant.block_storage.get_volume(volume["id"]), "available", wait=60)
    finally:
        _delete(walkthrough, [server["id"]])
        _cleanup(walkthrough, snapshots, volumes)


def test_a_volume_from_the_guest_image_holds_it_raw(  # noqa: F811
        cloud, walkthrough, guest, cli, tmp_path):  # noqa: F811
    volumes: list[str] = []
    try:
        made = cli("volume", "create", "--image", guest.id, "--size", "1", "from-image")
        volumes.append(made["id"])
        volume = _available_volume(walkthrough, made["id"])
        assert volume.is_bootable and volume.size == 1
        assert volume.volume_image_metadata["image_id"] == guest.id
        shown = cli("volume", "show", made["id"])
        assert str(shown["bootable"]).lower() == "true"
        # Its bytes are the image's, converted to raw (the rest reads zeros).
        image = tmp_path / "guest.qcow2"
        with open(image, "wb") as f:
            for chunk in walkthrough.tenant.image.download_image(guest, stream=True
                                                                 ).iter_content(1 << 20):
                f.write(chunk)
        path = _volume_file(cloud, made["id"])
        assert path.stat().st_size == GIB
        proc = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2",
                               str(path), str(image)], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
    finally:
        _cleanup(walkthrough, [], volumes)


def test_a_clone_of_an_in_use_volume_shows_another_guest_the_marker(  # noqa: F811
        cloud, walkthrough, guest, cli):  # noqa: F811
    """``openstack volume create --source``: a point-in-time copy of a
    volume a running guest wrote its marker on, made larger; attached to
    another server, its guest finds the first one's marker and the size."""
    storage = walkthrough.tenant.block_storage
    compute = walkthrough.tenant.compute
    servers: list[str] = []
    volumes: list[str] = []
    try:
        for name in ("clone-writer", "clone-reader"):
            servers.append(cli("server", "create", "--image", guest.id, "--flavor",
                               "m1.tiny", "--nic", "none", "--wait", name)["id"])
        writer, reader = servers
        hosts = {s: _host_of(walkthrough, s) for s in servers}
        for server_id in servers:
            _wait(lambda s=server_id: "FLOTILLA-PARTITIONS" in _console(cloud, hosts[s], s),
                  180, "guest boot")
        volume = cli("volume", "create", "--size", "1", "clone-source")
        volumes.append(volume["id"])
        _available_volume(walkthrough, volume["id"])
        compute.create_volume_attachment(writer, volume_id=volume["id"])
        wait_for_fresh_status(storage, storage.get_volume(volume["id"]), "in-use", wait=60)
        _wait(lambda: "FLOTILLA-DISK-MARKER vdb written %s" % writer
              in _console(cloud, hosts[writer], writer), 60, "the writer's marker")

        clone = cli("volume", "create", "--source", volume["id"], "--size", "2",
                    "clone-copy")
        volumes.append(clone["id"])
        assert clone["source_volid"] == volume["id"]
        made = _available_volume(walkthrough, clone["id"])
        assert (made.size, made.source_volume_id) == (2, volume["id"])
        assert _volume_file(cloud, made.id).stat().st_size == 2 * GIB
        assert storage.get_volume(volume["id"]).status == "in-use"

        start = len(_console(cloud, hosts[reader], reader))
        compute.create_volume_attachment(reader, volume_id=made.id)
        wait_for_fresh_status(storage, made, "in-use", wait=60)
        wanted = ("FLOTILLA-DISK-MARKER vdb found %s" % writer,
                  "FLOTILLA-DISK-SIZE vdb %d" % (2 * GIB))
        _wait(lambda: all(line in _console(cloud, hosts[reader], reader)[start:]
                          for line in wanted), 60, "the writer's marker in the clone")

        for server_id, volume_id in ((writer, volume["id"]), (reader, made.id)):
            compute.delete_volume_attachment(server_id, volume_id)
        for volume_id in volumes:
            wait_for_fresh_status(storage, storage.get_volume(volume_id), "available",
                                  wait=60)
    finally:
        _delete(walkthrough, servers)
        _cleanup(walkthrough, [], volumes)


def test_images_of_a_volume_in_use_and_available_with_the_cli(  # noqa: F811
        cloud, walkthrough, guest, cli, tmp_path):  # noqa: F811
    """``openstack image create --volume`` (os-volume_upload_image): a volume
    a running guest wrote its marker on, uploaded in use (``--force``: a
    point-in-time copy) as raw; a volume made from that image, attached to
    the guest, shows it its own marker. Detached, the volume uploaded again
    as qcow2 is the same disk."""
    tenant = walkthrough.tenant
    storage = tenant.block_storage
    servers: list[str] = []
    volumes: list[str] = []
    images: list[str] = []
    try:
        writer = cli("server", "create", "--image", guest.id, "--flavor", "m1.tiny",
                     "--nic", "none", "--wait", "upload-writer")["id"]
        servers.append(writer)
        host = _host_of(walkthrough, writer)
        _wait(lambda: "FLOTILLA-PARTITIONS" in _console(cloud, host, writer), 180,
              "guest boot")
        volume = cli("volume", "create", "--size", "1", "upload-source")
        volumes.append(volume["id"])
        _available_volume(walkthrough, volume["id"])
        tenant.compute.create_volume_attachment(writer, volume_id=volume["id"])
        wait_for_fresh_status(storage, storage.get_volume(volume["id"]), "in-use", wait=60)
        _wait(lambda: "FLOTILLA-DISK-MARKER vdb written %s" % writer
              in _console(cloud, host, writer), 60, "the guest's marker")

        # In use without --force: Cinder's 400.
        proc = cli_plain(cloud, "image", "create", "--volume", volume["id"], "refused")
        assert proc.returncode != 0 and "in-use" in proc.stderr, proc.stderr
        made = cli("image", "create", "--volume", volume["id"], "--force", "upload-live")
        images.append(made["image_id"])
        assert (made["status"], made["disk_format"], made["container_format"],
                made["image_name"], made["volume_type"]) == \
            ("uploading", "raw", "bare", "upload-live", "__DEFAULT__")
        _wait(lambda: tenant.image.get_image(made["image_id"]).status == "active", 300,
              "the image active")
        image = tenant.image.get_image(made["image_id"])
        assert (image.size, image.disk_format, image.visibility) == (GIB, "raw", "private")
        wait_for_fresh_status(storage, storage.get_volume(volume["id"]), "in-use", wait=60)

        # A volume made from the image holds the guest's marker; attached to
        # the guest, it finds it there.
        copy = cli("volume", "create", "--image", image.id, "--size", "1", "from-upload")
        volumes.append(copy["id"])
        _available_volume(walkthrough, copy["id"])
        assert writer.encode() in _volume_file(cloud, copy["id"]).read_bytes()[:OFFSET]
        start = len(_console(cloud, host, writer))
        tenant.compute.create_volume_attachment(writer, volume_id=copy["id"])
        wait_for_fresh_status(storage, storage.get_volume(copy["id"]), "in-use", wait=60)
        _wait(lambda: "FLOTILLA-DISK-MARKER vdc found %s" % writer
              in _console(cloud, host, writer)[start:], 60, "the marker in the copy")

        for volume_id in volumes:
            tenant.compute.delete_volume_attachment(writer, volume_id)
        for volume_id in volumes:
            wait_for_fresh_status(storage, storage.get_volume(volume_id), "available",
                                  wait=60)

        # Available: uploaded as qcow2, the same disk.
        cold = cli("image", "create", "--volume", volume["id"], "--disk-format", "qcow2",
                   "upload-cold")
        images.append(cold["image_id"])
        _wait(lambda: tenant.image.get_image(cold["image_id"]).status == "active", 300,
              "the qcow2 image active")
        wait_for_fresh_status(storage, storage.get_volume(volume["id"]), "available",
                              wait=60)
        downloaded = tmp_path / "cold.qcow2"
        with open(downloaded, "wb") as f:
            for chunk in tenant.image.download_image(cold["image_id"], stream=True
                                                     ).iter_content(1 << 20):
                f.write(chunk)
        proc = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2",
                               str(_volume_file(cloud, volume["id"])), str(downloaded)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
    finally:
        _delete(walkthrough, servers)
        for image_id in images:
            tenant.image.delete_image(image_id, ignore_missing=True)
        _cleanup(walkthrough, [], volumes)

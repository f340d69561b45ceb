"""The demo's boot from volume: a server whose root disk is a new volume the
cloud makes from the image (``block_device_mapping_v2``, as ``openstack
server create --boot-from-volume 1`` asks), served over NBD by the volume
host's storage daemon, with no disk file on its compute host, and a blank
scratch volume the cloud makes at boot (``source_type`` blank), which the
guest finds empty and marks; an image of that server (``server image
create``: a snapshot of each volume, named by the image's
``block_device_mapping``) from which a second server boots on copies of
both disks; its rebuild, which writes the image afresh over its root
volume, and an upload of that volume to an image another server boots from
(tools/demo/volume_images.py); deleting each server deletes its volumes
(``delete_on_termination``).

Takes the :class:`tools.demo.demo.Walkthrough` it runs in, prints its
progress and returns what it saw for the e2e test.
"""

from __future__ import annotations

import json
import subprocess
import time

from tools.demo import volume_images


def boot_from_volume(walk, image, flavor, meta: dict, say, step) -> dict:
    compute, storage = walk.tenant.compute, walk.tenant.block_storage
    step("boot demo-bfv from a new 1 GiB volume made from the image (boot from volume), "
         "with a blank 1 GiB scratch volume")
    started = time.monotonic()
    server = compute.create_server(
        name="demo-bfv", flavor_id=flavor.id, networks="none",
        block_device_mapping=[{"boot_index": 0, "uuid": image.id, "source_type": "image",
                               "destination_type": "volume", "volume_size": 1,
                               "delete_on_termination": True},
                              {"source_type": "blank", "destination_type": "volume",
                               "volume_size": 1, "delete_on_termination": True}])
    server = walk.wait(server, "ACTIVE")
    walk.wait_console(server, meta["boot_count_marker"])
    volumes = {a.volume_id: a.device for a in walk.tenant.compute.volume_attachments(server)}
    volume_id = next(v for v, device in volumes.items() if device == "/dev/vda")
    scratch = next(v for v, device in volumes.items() if device == "/dev/vdb")
    host = walk.admin.compute.get_server(server.id).compute_host   # admins see hosts
    say("    ACTIVE on %s in %.1fs; its root disk is volume %s"
        % (host, time.monotonic() - started, volume_id))
    walk.wait_console(server, "FLOTILLA-DISK-MARKER vdb written %s" % server.id)
    say("    its guest found the scratch volume %s blank at vdb and wrote its marker"
        % scratch)
    rig = {h["name"]: h["uri"] for h in walk.cloud.state["rig_hosts"]}
    disks = subprocess.run(["virsh", "-q", "-c", rig[host], "domblklist",
                            "--details", server.id], capture_output=True, text=True).stdout
    for line in disks.splitlines():
        say("    virsh domblklist on %s: %s" % (host, " ".join(line.split())))
    boot_count = walk.boot_count(server, meta["boot_count_marker"])
    say("    its console: %s %d (a fresh disk made from the image)"
        % (meta["boot_count_marker"], boot_count))
    moved_to, disks_after = _live_migrate(walk, server, host, rig, say, step)
    image_copy = _image_copy(walk, server, flavor, meta, say, step)
    rebuilt = volume_images.rebuild(walk, server, image, volume_id, meta, say, step)
    uploaded = volume_images.upload(walk, server, flavor, volume_id, meta, say, step)
    step("delete demo-bfv: its volumes go with it (delete_on_termination)")
    compute.delete_server(server)
    compute.wait_for_delete(server, interval=0.5, wait=120)
    kept = _kept(storage, list(volumes))
    say("    server deleted; its volumes %s" % (
        "KEPT: %s" % ", ".join(kept) if kept else "deleted with it"))
    return {"server": server.id, "host": host, "volume": volume_id, "scratch": scratch,
            "disks": disks, "volume_deleted": not kept, "boot_count": boot_count,
            "moved_to": moved_to, "disks_after": disks_after, "image_copy": image_copy,
            "rebuilt": rebuilt, "uploaded": uploaded}


def _image_copy(walk, server, flavor, meta: dict, say, step) -> dict:
    """``server image create`` of the volume-backed server, then a server
    booted from that image: its guest counts on from the original's boots
    and finds the original's marker on its copy of the scratch volume."""
    compute, storage = walk.tenant.compute, walk.tenant.block_storage
    step("image demo-bfv while it runs (server image create): its volumes are snapshotted "
         "and the image names the snapshots")
    started = time.monotonic()
    image = compute.create_server_image(server, "demo-bfv-image")
    image = walk.tenant.image.get_image(image.id)
    mappings = json.loads(image.properties["block_device_mapping"])
    snapshots = [storage.wait_for_status(storage.get_snapshot(m["snapshot_id"]), "available",
                                         interval=0.5, wait=120) for m in mappings]
    say("    image %s (%s, %d bytes) names %d volume snapshots, all available (%.1fs)"
        % (image.id, image.status, image.size or 0, len(snapshots), time.monotonic() - started))
    for m in mappings:
        say("      %s: snapshot %s, %d GiB, boot_index %s" % (
            m["device_name"], m["snapshot_id"], m["volume_size"], m.get("boot_index")))
    step("boot demo-bfv-copy from that image: new volumes made from the snapshots")
    started = time.monotonic()
    copy = compute.create_server(name="demo-bfv-copy", image_id=image.id,
                                 flavor_id=flavor.id, networks="none")
    copy = walk.wait(copy, "ACTIVE")
    walk.wait_console(copy, meta["boot_count_marker"])
    walk.wait_console(copy, "FLOTILLA-DISK-MARKER vdb found %s" % server.id)
    boot_count = walk.boot_count(copy, meta["boot_count_marker"])
    volumes = [a.volume_id for a in compute.volume_attachments(copy)]
    say("    ACTIVE in %.1fs on volumes %s; its console: %s %d, and it found demo-bfv's "
        "marker on vdb" % (time.monotonic() - started, ", ".join(volumes),
                           meta["boot_count_marker"], boot_count))
    compute.delete_server(copy)
    compute.wait_for_delete(copy, interval=0.5, wait=120)
    kept = _kept(storage, volumes)
    walk.tenant.image.delete_image(image)
    for snapshot in snapshots:
        storage.delete_snapshot(snapshot)
    for snapshot in snapshots:
        storage.wait_for_delete(snapshot, interval=0.5, wait=60)
    say("    demo-bfv-copy deleted with its volumes%s; the image and its snapshots deleted"
        % (" (KEPT: %s)" % ", ".join(kept) if kept else ""))
    return {"server": copy.id, "boot_count": boot_count, "snapshots": len(snapshots),
            "volumes": volumes, "volumes_deleted": not kept}


def _kept(storage, volume_ids: list[str], timeout: float = 60) -> list[str]:
    """Which of the volumes are still there after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    kept = list(volume_ids)
    while kept and time.monotonic() < deadline:
        kept = [v for v in volume_ids if storage.find_volume(v, ignore_missing=True)]
        time.sleep(0.5)
    return kept


def _live_migrate(walk, server, host: str, rig: dict, say, step) -> tuple[str, str]:
    """Live-migrate the server off ``host``: its only disk is the volume,
    so nothing is copied; the new host reaches the same NBD export."""
    step("live-migrate demo-bfv off %s: its disk stays on the volume host" % host)
    started = time.monotonic()
    walk.admin.compute.live_migrate_server(server, host=None, block_migration="auto")
    deadline = started + 120
    while True:
        now = walk.admin.compute.get_server(server.id)
        if now.compute_host != host and now.status == "ACTIVE" and not now.task_state:
            break
        if now.status == "ERROR" or time.monotonic() > deadline:
            raise RuntimeError("demo-bfv did not move: %s %s" % (now.status, now.task_state))
        time.sleep(0.5)
    there = now.compute_host
    disks = subprocess.run(["virsh", "-q", "-c", rig[there], "domblklist", "--details",
                            server.id], capture_output=True, text=True).stdout
    say("    running on %s after %.1fs, no disk copied" % (there, time.monotonic() - started))
    for line in disks.splitlines():
        say("    virsh domblklist on %s: %s" % (there, " ".join(line.split())))
    return there, disks

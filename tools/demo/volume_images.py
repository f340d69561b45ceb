"""The demo's images and volumes, both ways, on the volume-backed demo-bfv:

* **rebuild** (compute 2.93): ``server rebuild`` of demo-bfv writes the
  image afresh over its root volume, in place (same volume id). The guest
  boots again and counts 1: a reboot on the old disk would have counted on.
  Its scratch volume, untouched, still holds the marker it wrote;
* **upload** (``openstack image create --volume V --force``, Cinder's
  os-volume_upload_image): demo-bfv's root volume, in use, is copied point
  in time into a qcow2 image, and demo-from-volume boots from that image on
  a local disk: its guest counts on from demo-bfv's boots.

Takes the :class:`tools.demo.demo.Walkthrough` it runs in, prints its
progress and returns what it saw for the e2e test.
"""

from __future__ import annotations

import time


def rebuild(walk, server, image, root_volume: str, meta: dict, say, step) -> dict:
    """Rebuild the volume-backed ``server`` from ``image``: its root volume
    ``root_volume`` is re-imaged in place."""
    compute, storage = walk.tenant.compute, walk.tenant.block_storage
    step("rebuild demo-bfv from the image (compute 2.93): its root volume is written "
         "afresh in place, its scratch volume kept")
    boots = _printed(walk, server, meta["boot_marker"])
    started = time.monotonic()
    compute.rebuild_server(server, image=image.id)      # the SDK speaks 2.93 and later
    server = walk.wait(compute.get_server(server.id), "ACTIVE")
    walk.wait_console(server, meta["boot_marker"], count=boots + 1)
    walk.wait_console(server, "FLOTILLA-DISK-MARKER vdb found %s" % server.id)
    boot_count = walk.boot_count(server, meta["boot_count_marker"])
    volumes = {a.volume_id: a.device for a in compute.volume_attachments(server)}
    root = storage.get_volume(root_volume)
    say("    ACTIVE again in %.1fs; root volume %s is still vda (%s), now holding image %s"
        % (time.monotonic() - started, root.id, root.status,
           (root.volume_image_metadata or {}).get("image_id")))
    say("    its console: %s %d (booted from a freshly written disk: a reboot counts on); "
        "the scratch volume at vdb still holds its marker" % (meta["boot_count_marker"],
                                                              boot_count))
    return {"boot_count": boot_count, "root_kept": volumes.get(root_volume) == "/dev/vda",
            "root_image": (root.volume_image_metadata or {}).get("image_id")}


def upload(walk, server, flavor, root_volume: str, meta: dict, say, step) -> dict:
    """Upload the root volume of the running ``server`` to a qcow2 image and
    boot an image-backed server from it."""
    compute, storage, images = (walk.tenant.compute, walk.tenant.block_storage,
                                walk.tenant.image)
    step("upload demo-bfv's root volume to an image while it runs (image create --volume "
         "--force) and boot demo-from-volume from it")
    before = walk.boot_count(server, meta["boot_count_marker"])
    started = time.monotonic()
    answer = storage.upload_volume_to_image(root_volume, "demo-bfv-volume", force=True,
                                            disk_format="qcow2", container_format="bare")
    image = images.wait_for_status(images.get_image(answer["image_id"]), "active",
                                   interval=0.5, wait=300)
    # The volume service puts the volume back just after the image goes
    # active: wait for that from fresh reads.
    volume = _wait_status(storage, root_volume, "in-use")
    say("    image %s active in %.1fs: %s, %d bytes for a %d GiB disk; the volume is %s again"
        % (image.id, time.monotonic() - started, image.disk_format, image.size or 0,
           (image.virtual_size or 0) >> 30, volume.status))
    started = time.monotonic()
    copy = compute.create_server(name="demo-from-volume", image_id=image.id,
                                 flavor_id=flavor.id, networks="none")
    copy = walk.wait(copy, "ACTIVE")
    walk.wait_console(copy, meta["boot_count_marker"])
    boot_count = walk.boot_count(copy, meta["boot_count_marker"])
    say("    ACTIVE in %.1fs on a local disk; its console: %s %d (demo-bfv's disk had "
        "counted %d)" % (time.monotonic() - started, meta["boot_count_marker"], boot_count,
                         before))
    compute.delete_server(copy)
    compute.wait_for_delete(copy, interval=0.5, wait=120)
    images.delete_image(image)
    say("    demo-from-volume and its image deleted")
    return {"boot_count": boot_count, "source_boot_count": before,
            "volume_status": volume.status, "disk_format": image.disk_format}


def _printed(walk, server, marker: str) -> int:
    """How many times the guest's console shows ``marker``."""
    output = walk.tenant.compute.get_server_console_output(server).get("output", "")
    return output.count(marker)


def _wait_status(storage, volume_id: str, status: str, timeout: float = 60):
    """The volume once a fresh read shows ``status`` (openstacksdk's wait
    returns at once on an object that already shows it, however old)."""
    deadline = time.monotonic() + timeout
    while True:
        volume = storage.get_volume(volume_id)
        if volume.status == status or time.monotonic() > deadline:
            return volume
        time.sleep(0.5)

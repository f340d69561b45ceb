"""Snapshots, backups and rebuilds through the real HTTP API, in one process.

The unmodified openstacksdk talks to the API on a loopback port; the
conductor, scheduler and two agents run on memory:// (tests/fixtures/
api_stack.py). On the fake driver a snapshot is a real qcow2 file that the
agent uploads through its signed URL; on libvirt's test:///default, which
has no disks, a snapshot fails cleanly and a rebuild works.
"""

from __future__ import annotations

import os
import time

import pytest

from compute.ops import snapshot as snapshot_ops
from compute.virt.fake import FakeDriver
from flotilla import exception
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import images as images_db
from tests.fixtures.api_stack import APIStack
from tests.fixtures.image_app import qcow2_bytes


@pytest.fixture
def stack(conf, tmp_path):
    conf.set_override("compute_driver", "fake", group="compute")
    cloud = APIStack(conf, tmp_path, lambda host: FakeDriver())
    yield cloud
    cloud.stop()


@pytest.fixture
def conn(stack):
    return stack.connect()


def _boot(conn, name="vm", image=None):
    image = image or conn.image.create_image(name="base", data=qcow2_bytes(8192),
                                             disk_format="qcow2", container_format="bare")
    server = conn.compute.create_server(name=name, image_id=image.id, flavor_id="1",
                                        networks="none")
    return _status(conn, server, "ACTIVE"), image


def _create_image(conn, server, name: str) -> str:
    """createImage's image id, from the answer itself (2.45): the SDK's
    create_server_image reads the image back afterwards and returns None
    when a quick failure already deleted it."""
    answer = conn.compute.post("/servers/%s/action" % server.id,
                               json={"createImage": {"name": name}}, microversion="2.45")
    assert answer.status_code == 202, answer.text
    return answer.json()["image_id"]


def _wait(predicate, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("%s not reached within %ss" % (what, timeout))
        time.sleep(0.05)


# The SDK's own waits poll every 2 s; these look every 50 ms.
def _status(conn, server, status: str):
    return _wait(lambda: (s := conn.compute.get_server(server.id)).status == status
                 and s.task_state is None and s, "server %s %s" % (server.name, status))


def _active_image(conn, image_id: str):
    return _wait(lambda: (i := conn.image.get_image(image_id)).status == "active" and i,
                 "image %s active" % image_id)


def _idle(conn, server):
    return _wait(lambda: (s := conn.compute.get_server(server.id)).task_state is None and s,
                 "server %s idle" % server.name)


def _events(conn, server, action_name):
    action = next(a for a in conn.compute.server_actions(server) if a.action == action_name)
    action = conn.compute.get_server_action(action.request_id, server)
    return action, {e["event"]: e for e in action.events}


def _finished(conn, server, action_name) -> None:
    """Until every ``action_name`` action of ``server`` has run its last
    step: backups rotate after the server is idle again (as Nova's do)."""
    def done():
        for action in conn.compute.server_actions(server):
            if action.action != action_name:
                continue
            detail = conn.compute.get_server_action(action.request_id, server)
            events = {e["event"]: e for e in detail.events}
            if not events.get("conductor_rotate_backups", {}).get("result"):
                return False
        return True
    _wait(done, "every %s finished" % action_name)


def _snapshot_files(stack) -> list[str]:
    root = stack.conf.compute.snapshots_directory
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]


def test_create_image_of_a_running_server(stack, conn):
    server, base = _boot(conn)
    image = _active_image(conn, conn.compute.create_server_image(
        server, "snap-1", metadata={"purpose": "test"}).id)
    assert image.status == "active"
    assert image.owner == db.instance_get(server.id).project_id
    assert (image.min_disk, image.min_ram) == (1, 0)
    # What the image API shows (the SDK sorts some keys into attributes).
    shown = conn.image.get("/images/%s" % image.id).json()
    assert shown["image_type"] == "snapshot"
    assert shown["instance_uuid"] == server.id
    assert shown["base_image_ref"] == base.id
    assert shown["user_id"] == db.instance_get(server.id).user_id
    assert shown["purpose"] == "test"
    assert shown["visibility"] == "private"
    assert image.disk_format == "qcow2" and image.size > 0
    row = images_db.image_get(image.id)
    # The file the agent uploaded is the qcow2 the fake driver wrote.
    with open(row.location, "rb") as f:
        assert f.read(4) == b"QFI\xfb"
    server = _idle(conn, server)
    assert (server.status, server.task_state, server.vm_state) == ("ACTIVE", None, "active")
    _finished(conn, server, "createImage")
    action, events = _events(conn, server, "createImage")
    assert action.message is None     # finished, successfully
    for name in ("conductor_snapshot_on_host", "compute_snapshot_instance",
                 "compute_upload_image", "conductor_snapshot_on_host_report",
                 "conductor_finish_snapshot", "conductor_rotate_backups"):
        assert events[name]["result"] == "Success", (name, events)
    assert _snapshot_files(stack) == []
    # A server booted from the snapshot.
    copy, _ = _boot(conn, "copy", image=image)
    assert copy.image.id == image.id


def test_each_snapshot_task_state_is_seen(stack, conn):
    server, _ = _boot(conn)
    seen = []
    driver = next(d for d in stack.drivers.values() if server.id in d.guests)
    real = driver.snapshot

    def snapshot(instance, target, base_image=None, on_copied=None):
        seen.append(db.instance_get(server.id).task_state)

        def copied():
            on_copied()
            seen.append(db.instance_get(server.id).task_state)
        return real(instance, target, base_image, copied)
    driver.snapshot = snapshot
    upload = snapshot_ops.upload_file

    def watched_upload(*args, **kwargs):
        seen.append(db.instance_get(server.id).task_state)
        return upload(*args, **kwargs)
    snapshot_ops.upload_file = watched_upload
    try:
        _active_image(conn, conn.compute.create_server_image(server, "snap").id)
    finally:
        snapshot_ops.upload_file = upload
    assert seen == [st.IMAGE_SNAPSHOT, st.IMAGE_PENDING_UPLOAD, st.IMAGE_UPLOADING]
    assert _idle(conn, server).task_state is None


def test_a_failed_copy_removes_the_image_and_says_why(stack, conn):
    server, _ = _boot(conn)
    driver = next(d for d in stack.drivers.values() if server.id in d.guests)
    driver.inject_failure("snapshot", exception.SnapshotFailed(
        instance_uuid=server.id, reason="disk on fire at /var/lib/secret"), server.id)
    image_id = _create_image(conn, server, "doomed")
    _wait(lambda: images_db.image_count(db.instance_get(server.id).project_id) == 1,
          "only the base image left")
    with pytest.raises(exception.ImageNotFound):
        images_db.image_get(image_id)
    server = _idle(conn, server)
    assert server.status == "ACTIVE"
    fault = db.instance_fault_get_all(server.id)[0]
    assert fault.message == "The server's disk could not be copied."
    assert "disk on fire" in fault.details            # for administrators
    action, events = _events(conn, server, "createImage")
    assert action.message == "Error"
    assert events["conductor_snapshot_on_host_report"]["result"] == "Error"
    assert "secret" not in str(events["compute_snapshot_instance"].get("details"))
    assert _snapshot_files(stack) == []


def test_an_image_deleted_during_the_upload_leaves_the_server_clean(stack, conn,
                                                                    monkeypatch):
    server, _ = _boot(conn)
    upload = snapshot_ops.upload_file
    deleted = []

    def delete_then_upload(url, path, *args, **kwargs):
        image_id = url.split("/v2/images/")[1].split("/")[0]
        conn.image.delete_image(image_id)     # the owner deletes it meanwhile
        deleted.append(image_id)
        return upload(url, path, *args, **kwargs)
    monkeypatch.setattr(snapshot_ops, "upload_file", delete_then_upload)
    conn.compute.create_server_image(server, "gone")
    _wait(lambda: deleted, "the upload")
    server = _wait(lambda: (s := conn.compute.get_server(server.id)).task_state is None
                   and s, "server idle")
    assert server.status == "ACTIVE"
    fault = db.instance_fault_get_all(server.id)[0]
    assert fault.message == "The image was deleted before the snapshot was uploaded."
    assert _snapshot_files(stack) == []
    assert os.listdir(stack.conf.image.store_path) == [
        images_db.image_get(server.image.id).id]


def test_backups_rotate(stack, conn):
    server, _ = _boot(conn)
    made = []
    for n in range(3):
        image = _active_image(conn, conn.compute.backup_server(
            server, "nightly-%d" % n, "daily", 2).id)
        made.append(image.id)
        _idle(conn, server)
        _finished(conn, server, "createBackup")
    weekly = _active_image(conn, conn.compute.backup_server(
        server, "weekly-0", "weekly", 1).id)
    _idle(conn, server)
    _finished(conn, server, "createBackup")
    backups = [i for i in conn.image.get("/images").json()["images"]
               if i.get("image_type") == "backup"]
    names = sorted(i["name"] for i in backups)
    assert names == ["nightly-1", "nightly-2", "weekly-0"]
    assert {i["backup_type"] for i in backups} == {"daily", "weekly"}
    _, events = _events(conn, server, "createBackup")
    assert events["conductor_rotate_backups"]["result"] == "Success"
    assert weekly.id not in made


def test_rebuild_from_another_image_and_a_stopped_server_stays_stopped(stack, conn):
    server, base = _boot(conn)
    other = conn.image.create_image(name="other", data=qcow2_bytes(4096),
                                    disk_format="qcow2", container_format="bare")
    rebuilt = conn.compute.rebuild_server(server, other, name="renamed",
                                          metadata={"v": "2"})
    assert rebuilt.status == "REBUILD"          # what --wait polls for
    server = _status(conn, rebuilt, "ACTIVE")
    assert (server.name, server.image.id, server.metadata) == ("renamed", other.id,
                                                               {"v": "2"})
    driver = next(d for d in stack.drivers.values() if server.id in d.guests)
    assert ("image=%s" % other.id).encode() in driver.guests[server.id].disk
    conn.compute.stop_server(server)
    _status(conn, server, "SHUTOFF")
    rebuilt = conn.compute.rebuild_server(server, base)
    assert rebuilt.status == "REBUILD"
    server = _wait(lambda: (s := conn.compute.get_server(server.id)).task_state is None
                   and s, "rebuilt")
    assert (server.status, server.image.id) == ("SHUTOFF", base.id)
    action, events = _events(conn, server, "rebuild")
    assert action.message is None
    assert events["compute_rebuild_instance"]["result"] == "Success"
    assert events["conductor_record_image"]["result"] == "Success"


@pytest.fixture
def libvirt_stack(conf, tmp_path):
    from compute.virt.libvirt.driver import LibvirtDriver
    conf.set_override("connection_uri", "test:///default", group="libvirt")
    conf.set_override("instances_path", str(tmp_path / "instances"), group="libvirt")
    cloud = APIStack(conf, tmp_path, lambda host: LibvirtDriver(conf), hosts=("lvhost",))
    yield cloud
    cloud.stop()


def test_on_the_libvirt_test_driver_a_snapshot_fails_cleanly_and_rebuild_works(
        libvirt_stack):
    conn = libvirt_stack.connect()
    server, base = _boot(conn)
    image_id = _create_image(conn, server, "nope")
    server = _wait(lambda: (s := conn.compute.get_server(server.id)).task_state is None
                   and s, "snapshot over")
    assert server.status == "ACTIVE"
    with pytest.raises(exception.ImageNotFound):
        images_db.image_get(image_id)
    fault = db.instance_fault_get_all(server.id)[0]
    assert fault.message == "Snapshots are not supported by the server's host."
    other = conn.image.create_image(name="other", data=qcow2_bytes(4096),
                                    disk_format="qcow2", container_format="bare")
    conn.compute.rebuild_server(server, other)
    server = _status(conn, server, "ACTIVE")
    assert server.image.id == other.id
    assert libvirt_stack.drivers["lvhost"].get_info(
        {"uuid": server.id, "flavor": {"memory_mb": 64}}).power_state == 1


def test_an_agent_restarted_mid_snapshot_reports_it_and_the_server_comes_back(
        stack, conn):
    import threading

    from compute.manager import ComputeManager
    server, _ = _boot(conn)
    host = db.instance_get(server.id).host
    driver = stack.drivers[host]
    copying = threading.Event()
    release = threading.Event()
    real = driver.snapshot

    def stuck(instance, target, base_image=None, on_copied=None):
        copying.set()
        release.wait(30)          # the "dead" agent's copy never ends
        return real(instance, target, base_image, on_copied)
    driver.snapshot = stuck
    image_id = conn.compute.create_server_image(server, "interrupted").id
    try:
        assert copying.wait(30)
        assert db.instance_get(server.id).task_state == st.IMAGE_SNAPSHOT
        # What the dead agent left in its snapshots directory.
        directory = os.path.join(stack.conf.compute.snapshots_directory, host)
        leftover = os.path.join(directory, ".%s.qcow2.part-dead" % image_id)
        with open(leftover, "wb") as f:
            f.write(b"partial")
        # A new agent on the same host (its guests are still there) starts.
        reborn = FakeDriver()
        reborn.guests = driver.guests
        manager = ComputeManager(stack.conf, reborn, stack.cloud.conductor, host=host)
        manager.init_host()
        assert ("recover_snapshot", server.id) in reborn.calls
        assert not os.path.exists(leftover)
        server = _status(conn, server, "ACTIVE")
        with pytest.raises(exception.ImageNotFound):
            images_db.image_get(image_id)
        fault = db.instance_fault_get_all(server.id)[0]
        assert "interrupted by a restart" in fault.message
        manager.cleanup_host()
    finally:
        release.set()
    # The old agent's late copy finds the server out of its snapshot task,
    # and its report finds no flow waiting: nothing changes.
    old_pool = stack.cloud.compute_services[host].manager.snapshots.pool
    _wait(lambda: old_pool.in_flight() == 0, "the old agent's snapshot to end")
    inst = db.instance_get(server.id)
    assert (inst.vm_state, inst.task_state) == (st.ACTIVE, None)
    assert len(db.instance_fault_get_all(server.id)) == 1
    with pytest.raises(exception.ImageNotFound):
        images_db.image_get(image_id)

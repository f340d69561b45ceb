"""The evacuate flow (conductor/flows/evacuate.py) on fake hosts: a server
whose host's agent is stopped and forced down is rebuilt on the other host
(host, claims, migration record ``done``); the old agent, restarted,
destroys its stale copy without touching the database; an evacuation whose
source came back up is refused with nothing changed."""

from __future__ import annotations

import time
import uuid as uuidlib

import pytest

from compute.virt.fake import FakeDriver
from flotilla import deadlines
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import images as images_db
from flotilla.db import migration_records as mig_db
from tests.fixtures.scheduling import SchedulingCloud, events

HOSTS = ["host1", "host2"]


@pytest.fixture
def cloud(conf):
    conf.set_override("compute_driver", "fake", group="compute")
    c = SchedulingCloud(conf, HOSTS, lambda host: FakeDriver())
    yield c
    c.stop()


def _boot(cloud) -> dict:
    image_id = str(uuidlib.uuid4())
    images_db.image_create({"id": image_id, "name": "base", "status": "active",
                            "disk_format": "qcow2", "container_format": "bare",
                            "visibility": "public", "location": "/nonexistent"})
    _ctxt, [uuid] = cloud.boot_servers(1)
    [inst] = cloud.wait_settled([uuid])
    assert inst["vm_state"] == st.ACTIVE
    db.instance_update(uuid, {"image_ref": image_id})
    return db.instance_get(uuid).to_dict()


def _evacuate(cloud, inst: dict) -> str:
    """What the API does: the task, the record, the action, the cast."""
    ctxt = cloud.ctxt
    db.instance_update(inst["uuid"], {"task_state": st.REBUILDING,
                                      "task_deadline": deadlines.task_deadline(
                                          cloud.conf, st.REBUILDING)},
                       expected_task_state=None)
    migration = mig_db.migration_create(inst["uuid"], inst["host"], None, "evacuation")
    db.action_start(inst["uuid"], "evacuate", ctxt.request_id, "u1", "p1")
    cloud.conductor.evacuate_instance(ctxt, inst["uuid"], migration.uuid, None, False)
    return migration.uuid


def _wait_migration(uuid: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        migration = db.migration_get(uuid)
        if migration.status in ("done", "failed", "error"):
            return migration
        assert time.monotonic() < deadline, "migration %s is %s" % (uuid, migration.status)
        time.sleep(0.05)


def _other(host: str) -> str:
    return HOSTS[1] if host == HOSTS[0] else HOSTS[0]


def test_evacuate_rebuilds_on_the_other_host_and_the_old_agent_cleans_up(cloud):
    inst = _boot(cloud)
    source, dest = inst["host"], _other(inst["host"])
    old_driver = cloud.drivers[source]
    cloud.stop_host(source)
    db.service_set_forced_down(source, "flotilla-compute", True)
    migration_uuid = _evacuate(cloud, inst)
    migration = _wait_migration(migration_uuid)
    assert migration.status == "done", migration.error_reason
    assert (migration.source_host, migration.dest_host) == (source, dest)
    now = cloud.wait_idle(inst["uuid"])
    assert (now["host"], now["node"], now["vm_state"]) == (dest, dest, st.ACTIVE)
    assert inst["uuid"] in cloud.drivers[dest].guests
    [claim] = db.allocation_get_by_consumer(inst["uuid"])
    assert claim.host == dest
    assert db.allocation_get_by_consumer(migration_uuid) == []
    recorded = [(a, e, r) for a, e, r, _ in events(inst["uuid"])]
    for step in ("choose_destination", "move_to_destination", "rebuild_on_destination",
                 "reattach_volumes"):
        assert ("evacuate", "conductor_" + step, "Success") in recorded
    # The dead host comes back: its stale copy goes, the database stays.
    assert inst["uuid"] in old_driver.guests
    db.service_set_forced_down(source, "flotilla-compute", False)
    cloud.start_host(source, old_driver)
    deadline = time.monotonic() + 20
    while inst["uuid"] in old_driver.guests:
        assert time.monotonic() < deadline, "the stale guest was not destroyed"
        time.sleep(0.05)
    after = db.instance_get(inst["uuid"]).to_dict()
    assert (after["host"], after["vm_state"], after["task_state"]) == (dest, st.ACTIVE,
                                                                       None)
    assert inst["uuid"] in cloud.drivers[dest].guests


def test_a_stopped_server_is_evacuated_stopped(cloud):
    inst = _boot(cloud)
    source = inst["host"]
    db.instance_update(inst["uuid"], {"vm_state": st.STOPPED})
    cloud.stop_host(source)
    db.service_set_forced_down(source, "flotilla-compute", True)
    migration = _wait_migration(_evacuate(cloud, db.instance_get(inst["uuid"]).to_dict()))
    assert migration.status == "done", migration.error_reason
    now = cloud.wait_idle(inst["uuid"])
    assert (now["host"], now["vm_state"]) == (_other(source), st.STOPPED)


def test_an_evacuation_whose_source_is_up_again_changes_nothing(cloud):
    inst = _boot(cloud)
    source = inst["host"]
    migration = _wait_migration(_evacuate(cloud, inst))     # its agent runs
    assert migration.status == "failed"
    assert "is up again" in migration.error_reason
    now = cloud.wait_idle(inst["uuid"])
    assert (now["host"], now["vm_state"], now["task_state"]) == (source, st.ACTIVE, None)
    [claim] = db.allocation_get_by_consumer(inst["uuid"])
    assert claim.host == source
    assert db.allocation_get_by_consumer(migration.uuid) == []


def test_attached_volumes_are_attached_again_on_the_new_host(cloud):
    from flotilla.db import volumes as volumes_db
    from flotilla.objects import Instance
    inst = _boot(cloud)
    source, dest = inst["host"], _other(inst["host"])
    volume = volumes_db.volume_create({"project_id": "p1", "size_gb": 1, "status": "in-use",
                                       "host": "volhost"}, {})
    attachment = volumes_db.attachment_create(volume.id, inst["uuid"], source)
    connection = {"volume_id": volume.id, "export": "vol-" + volume.id,
                  "host": "127.0.0.1", "port": 10809, "protocol": "nbd", "format": "raw"}
    device = cloud.compute.attach_volume(cloud.ctxt, source, inst["uuid"], connection)
    volumes_db.attachment_update(attachment.uuid, {"status": "attached", "device": device,
                                                   "connection_info": connection})
    cloud.stop_host(source)
    db.service_set_forced_down(source, "flotilla-compute", True)
    migration = _wait_migration(_evacuate(cloud, inst))
    assert migration.status == "done", migration.error_reason
    now = Instance.from_record(cloud.wait_idle(inst["uuid"]))
    assert now.host == dest
    assert volume.id in cloud.drivers[dest].get_volume_devices(now)
    [after] = volumes_db.attachments_of_instance(inst["uuid"])
    assert (after.host, after.volume_id) == (dest, volume.id)
    assert volumes_db.volume_get(volume.id).status == "in-use"


def test_a_server_booted_from_a_volume_is_evacuated_with_its_volumes(cloud):
    """No image: the destination defines the guest around its root volume
    (vda) and its other volume, at the devices they had; the rows name the
    new host."""
    from flotilla.db import volumes as volumes_db
    from flotilla.objects import Instance
    inst = _boot(cloud)
    source, dest = inst["host"], _other(inst["host"])
    rows = []
    for boot_index, device in ((0, "vda"), (None, "vdb")):
        volume = volumes_db.volume_create({"project_id": "p1", "size_gb": 1,
                                           "status": "in-use", "host": "volhost"}, {})
        attachment = volumes_db.attachment_create(volume.id, inst["uuid"], source,
                                                  boot_index=boot_index)
        connection = {"volume_id": volume.id, "export": volume.id, "host": "127.0.0.1",
                      "port": 10809, "protocol": "nbd", "format": "raw"}
        volumes_db.attachment_update(attachment.uuid, {"status": "attached",
                                                       "device": device,
                                                       "connection_info": connection})
        rows.append((volume.id, device))
    db.instance_update(inst["uuid"], {"image_ref": ""})      # booted from a volume
    cloud.stop_host(source)
    db.service_set_forced_down(source, "flotilla-compute", True)
    migration = _wait_migration(_evacuate(cloud, inst))
    assert migration.status == "done", migration.error_reason
    now = Instance.from_record(cloud.wait_idle(inst["uuid"]))
    assert (now.host, now.vm_state, now.image_ref) == (dest, st.ACTIVE, "")
    driver = cloud.drivers[dest]
    (root_id, _), (data_id, _) = rows
    assert driver.get_volume_devices(now) == {root_id: "vda", data_id: "vdb"}
    assert driver.guests[inst["uuid"]].disk == b""        # no local root disk
    assert {a.volume_id: a.host for a in volumes_db.attachments_of_instance(
        inst["uuid"])} == {root_id: dest, data_id: dest}

"""Resize and cold migration of servers with volumes attached, and resize to
the same host (conductor/flows/resize.py, conductor/flows/resize_volumes.py)
on fake hosts: the volumes' connections follow the guest (the destination
defines it with them, a revert gives them back to the source), the
attachments' host switches with the instance, no export is touched; a
failure reverts with the volumes on the source; agents capped below compute
RPC 1.10 refuse before anything moves. With ``[DEFAULT]
allow_resize_to_same_host`` a one-host cloud resizes in place (both claims
on the host during VERIFY_RESIZE), and never cold-migrates in place."""

from __future__ import annotations

import pytest

from compute.virt import power_state
from compute.virt.block_device import VolumeConnection
from compute.virt.fake import FakeDriver
from compute.virt.fake_migration import FakeFabric
from flotilla import exception
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import volumes as vdb
from tests.fixtures.cloud import FLAVOR
from tests.fixtures.scheduling import SchedulingCloud, faults
from tests.functional.test_resize import (
    BIGGER,
    _boot,
    _other,
    _reap_a_lost_cast,
    _resize,
    _resize_failing_on_the_destination,
    _second,
    _usage_matches_claims,
    _wait_migration,
)

SAME = dict(FLAVOR, swap=0, extra_specs={})


def _cloud(conf, hosts):
    conf.set_override("compute_driver", "fake", group="compute")
    fabric = FakeFabric()
    return SchedulingCloud(conf, hosts, lambda host: FakeDriver(fabric=fabric))


@pytest.fixture
def cloud(conf):
    c = _cloud(conf, ["host1", "host2"])
    yield c
    c.stop()


def _attach(cloud, inst: dict, boot_index: int | None = None) -> tuple[str, str, dict]:
    """What the attach flow leaves: the disk plugged on the server's host,
    the volume in-use, its attachment attached there with its connection.
    (volume id, device, connection)."""
    volume = vdb.volume_create({"size_gb": 1, "status": st.VOLUME_IN_USE,
                                "project_id": "p1", "host": "vol1"},
                               {"volumes": -1, "gigabytes": -1})
    connection = VolumeConnection(volume_id=volume.id, export=volume.id, host="127.0.0.1",
                                  port=10809).to_dict()
    device = cloud.drivers[inst["host"]].attach_volume(inst["uuid"], connection)
    attachment = vdb.attachment_create(volume.id, inst["uuid"], inst["host"],
                                       boot_index=boot_index)
    vdb.attachment_update(attachment.uuid, {"status": "attached", "device": device,
                                            "connection_info": connection})
    return volume.id, device, connection


def _attachment_hosts(uuid: str) -> list[str]:
    return [a.host for a in vdb.attachments_of_instance(uuid)]


def _volume_devices(cloud, host: str, uuid: str) -> dict[str, str]:
    return cloud.drivers[host].guests[uuid].devices()


def test_resize_with_a_volume_then_confirm(cloud):
    inst = _boot(cloud)
    source, dest = inst["host"], _other(inst["host"])
    vid, device, connection = _attach(cloud, inst)
    migration_uuid = _resize(cloud, inst, BIGGER)
    migration = _wait_migration(migration_uuid, ("finished", "error"))
    assert migration.status == "finished", migration.error_reason
    now = cloud.wait_idle(inst["uuid"])
    assert (now["host"], now["vm_state"], now["flavor_id"]) == (dest, st.RESIZED, "2")
    # The destination defined it with the same export, on the same device.
    guest = cloud.drivers[dest].guests[inst["uuid"]]
    assert guest.power_state == power_state.RUNNING
    assert guest.devices() == {vid: device}
    assert guest.volumes[vid][1].to_dict() == connection
    assert _attachment_hosts(inst["uuid"]) == [dest]
    assert vdb.volume_get(vid).status == st.VOLUME_IN_USE

    _second(cloud, inst["uuid"], "confirmResize", st.RESIZE_CONFIRMING, "confirming",
            "confirm_resize", migration_uuid)
    assert _wait_migration(migration_uuid, ("confirmed", "finished")).status == "confirmed"
    assert inst["uuid"] not in cloud.drivers[source].guests
    assert _volume_devices(cloud, dest, inst["uuid"]) == {vid: device}
    assert _attachment_hosts(inst["uuid"]) == [dest]
    assert vdb.volume_get(vid).status == st.VOLUME_IN_USE
    # Nothing detached anywhere: the volume stayed plugged into the guest.
    assert ("detach_volume", inst["uuid"]) not in cloud.drivers[source].calls
    assert ("detach_volume", inst["uuid"]) not in cloud.drivers[dest].calls
    _usage_matches_claims()


def test_cold_migrate_with_volumes_then_revert(cloud):
    inst = _boot(cloud)
    source, dest = inst["host"], _other(inst["host"])
    first = _attach(cloud, inst)
    second = _attach(cloud, inst)
    migration_uuid = _resize(cloud, inst, SAME, action="migrate")
    assert _wait_migration(migration_uuid, ("finished", "error")).status == "finished"
    assert _volume_devices(cloud, dest, inst["uuid"]) == {first[0]: first[1],
                                                          second[0]: second[1]}
    assert _attachment_hosts(inst["uuid"]) == [dest, dest]

    _second(cloud, inst["uuid"], "revertResize", st.RESIZE_REVERTING, "reverting",
            "revert_resize", migration_uuid)
    assert _wait_migration(migration_uuid, ("reverted", "finished")).status == "reverted"
    now = cloud.wait_idle(inst["uuid"])
    assert (now["host"], now["vm_state"]) == (source, st.ACTIVE)
    assert inst["uuid"] not in cloud.drivers[dest].guests
    guest = cloud.drivers[source].guests[inst["uuid"]]
    assert guest.power_state == power_state.RUNNING
    assert guest.devices() == {first[0]: first[1], second[0]: second[1]}
    assert _attachment_hosts(inst["uuid"]) == [source, source]
    _usage_matches_claims()


def test_a_failure_on_the_destination_gives_the_volumes_back_to_the_source(cloud):
    inst = _boot(cloud)
    source = inst["host"]
    vid, device, _connection = _attach(cloud, inst)
    guest, migration_uuid = _resize_failing_on_the_destination(cloud, inst)
    assert guest.devices() == {vid: device}
    assert _attachment_hosts(inst["uuid"]) == [source]
    assert vdb.volume_get(vid).status == st.VOLUME_IN_USE
    assert db.allocation_get_by_consumer(migration_uuid) == []
    _usage_matches_claims()


def test_a_volume_backed_server_is_cold_migrated_and_confirmed(cloud):
    inst = _boot(cloud)
    source, dest = inst["host"], _other(inst["host"])
    # Its boot volume (boot index 0) is recorded as vda's owner.
    vid, device, _connection = _attach(cloud, inst, boot_index=0)
    migration_uuid = _resize(cloud, inst, SAME, action="migrate")
    assert _wait_migration(migration_uuid, ("finished", "error")).status == "finished"
    assert _volume_devices(cloud, dest, inst["uuid"]) == {vid: device}
    _second(cloud, inst["uuid"], "confirmResize", st.RESIZE_CONFIRMING, "confirming",
            "confirm_resize", migration_uuid)
    assert _wait_migration(migration_uuid, ("confirmed", "finished")).status == "confirmed"
    assert inst["uuid"] not in cloud.drivers[source].guests
    assert _attachment_hosts(inst["uuid"]) == [dest]


def test_agents_capped_below_1_10_refuse_a_server_with_volumes(conf):
    conf.set_override("compute", "1.9", group="upgrade_levels")
    c = _cloud(conf, ["host1", "host2"])
    try:
        inst = _boot(c)
        _attach(c, inst)
        migration_uuid = _resize(c, inst, BIGGER)
        migration = _wait_migration(migration_uuid, ("error", "finished"))
        assert migration.status == "error"
        assert "1.10" in migration.error_reason and "volumes" in migration.error_reason
        now = c.wait_idle(inst["uuid"])
        assert (now["host"], now["vm_state"], now["flavor_id"]) == (inst["host"],
                                                                     st.ACTIVE, "1")
        guest = c.drivers[inst["host"]].guests[inst["uuid"]]
        assert guest.power_state == power_state.RUNNING
        # Refused before anything moved: the source was never asked.
        assert ("migrate_disk_and_power_off", inst["uuid"]) not in \
            c.drivers[inst["host"]].calls
        assert db.allocation_get_by_consumer(migration_uuid) == []
        assert faults(inst["uuid"])
        # Without volumes the same agents still resize (the 1.6 forms).
        vdb_rows = vdb.attachments_of_instance(inst["uuid"])
        for row in vdb_rows:
            vdb.attachment_delete(row.uuid)
            c.drivers[inst["host"]].detach_volume(inst["uuid"], row.volume_id)
        again = _resize(c, db.instance_get(inst["uuid"]).to_dict(), BIGGER)
        assert _wait_migration(again, ("finished", "error")).status == "finished"
    finally:
        c.stop()


# --- the same host -----------------------------------------------------------------

@pytest.fixture
def one_host(conf):
    c = _cloud(conf, ["host1"])
    yield c
    c.stop()


def _claims_on_host1(inst_uuid: str, migration_uuid: str) -> list[tuple[str, int]]:
    return sorted([(c.host, c.memory_mb) for c in db.allocation_get_by_consumer(inst_uuid)]
                  + [(c.host, c.memory_mb)
                     for c in db.allocation_get_by_consumer(migration_uuid)])


def test_without_the_option_a_resize_never_stays_on_its_host(one_host):
    inst = _boot(one_host)
    migration_uuid = _resize(one_host, inst, BIGGER)
    migration = _wait_migration(migration_uuid, ("error", "finished"))
    assert migration.status == "error"
    now = one_host.wait_idle(inst["uuid"])
    assert (now["host"], now["vm_state"], now["flavor_id"]) == ("host1", st.ACTIVE, "1")
    assert one_host.drivers["host1"].guests[inst["uuid"]].power_state == \
        power_state.RUNNING


def test_same_host_resize_with_a_volume_confirmed(one_host):
    one_host.conf.set_override("allow_resize_to_same_host", True)
    inst = _boot(one_host)
    vid, device, _connection = _attach(one_host, inst)
    migration_uuid = _resize(one_host, inst, BIGGER)
    migration = _wait_migration(migration_uuid, ("finished", "error"))
    assert migration.status == "finished", migration.error_reason
    assert (migration.source_host, migration.dest_host) == ("host1", "host1")
    now = one_host.wait_idle(inst["uuid"])
    assert (now["host"], now["vm_state"], now["flavor_id"]) == ("host1", st.RESIZED, "2")
    driver = one_host.drivers["host1"]
    guest = driver.guests[inst["uuid"]]
    assert guest.instance.flavor.memory_mb == 128
    assert guest.power_state == power_state.RUNNING
    assert guest.devices() == {vid: device}
    assert inst["uuid"] in driver._kept_here
    # Both claims on the one host: the old flavor's and the new one's.
    assert _claims_on_host1(inst["uuid"], migration_uuid) == [("host1", 64),
                                                              ("host1", 128)]
    _usage_matches_claims()
    assert _attachment_hosts(inst["uuid"]) == ["host1"]

    _second(one_host, inst["uuid"], "confirmResize", st.RESIZE_CONFIRMING, "confirming",
            "confirm_resize", migration_uuid)
    assert _wait_migration(migration_uuid, ("confirmed", "finished")).status == "confirmed"
    now = one_host.wait_idle(inst["uuid"])
    assert (now["vm_state"], now["flavor_id"]) == (st.ACTIVE, "2")
    assert inst["uuid"] not in driver._kept_here
    assert driver.guests[inst["uuid"]].power_state == power_state.RUNNING
    assert driver.guests[inst["uuid"]].instance.flavor.memory_mb == 128
    assert _claims_on_host1(inst["uuid"], migration_uuid) == [("host1", 128)]
    _usage_matches_claims()


def _resized_on_its_host(one_host) -> tuple[dict, str, str, str]:
    """A server with a volume resized to BIGGER on its own host, waiting
    in VERIFY_RESIZE: (instance, volume id, its device, migration uuid)."""
    one_host.conf.set_override("allow_resize_to_same_host", True)
    inst = _boot(one_host)
    vid, device, _connection = _attach(one_host, inst)
    migration_uuid = _resize(one_host, inst, BIGGER)
    assert _wait_migration(migration_uuid, ("finished", "error")).status == "finished"
    one_host.wait_idle(inst["uuid"])
    return inst, vid, device, migration_uuid


def test_same_host_resize_reverted(one_host):
    inst, vid, device, migration_uuid = _resized_on_its_host(one_host)
    _second(one_host, inst["uuid"], "revertResize", st.RESIZE_REVERTING, "reverting",
            "revert_resize", migration_uuid)
    assert _wait_migration(migration_uuid, ("reverted", "finished")).status == "reverted"
    now = one_host.wait_idle(inst["uuid"])
    assert (now["host"], now["vm_state"], now["flavor_id"]) == ("host1", st.ACTIVE, "1")
    driver = one_host.drivers["host1"]
    guest = driver.guests[inst["uuid"]]
    assert guest.instance.flavor.memory_mb == 64 and not guest.kept_for_revert
    assert guest.power_state == power_state.RUNNING
    assert guest.devices() == {vid: device}
    assert inst["uuid"] not in driver._kept_here
    assert _claims_on_host1(inst["uuid"], migration_uuid) == [("host1", 64)]
    _usage_matches_claims()


def test_a_failed_same_host_resize_gives_the_original_back(one_host):
    one_host.conf.set_override("allow_resize_to_same_host", True)
    inst = _boot(one_host)
    driver = one_host.drivers["host1"]
    driver.inject_failure("finish_migration",
                          exception.MigrationError(instance_uuid=inst["uuid"],
                                                   reason="injected"))
    migration_uuid = _resize(one_host, inst, BIGGER)
    assert _wait_migration(migration_uuid, ("error", "finished")).status == "error"
    now = one_host.wait_idle(inst["uuid"])
    assert (now["host"], now["vm_state"], now["flavor_id"]) == ("host1", st.ACTIVE, "1")
    guest = driver.guests[inst["uuid"]]
    assert guest.instance.flavor.memory_mb == 64
    assert guest.power_state == power_state.RUNNING and not guest.kept_for_revert
    assert inst["uuid"] not in driver._kept_here
    assert db.allocation_get_by_consumer(migration_uuid) == []
    _usage_matches_claims()


def test_a_cold_migration_never_stays_on_its_host(one_host):
    one_host.conf.set_override("allow_resize_to_same_host", True)
    inst = _boot(one_host)
    migration_uuid = _resize(one_host, inst, SAME, action="migrate")
    assert _wait_migration(migration_uuid, ("error", "finished")).status == "error"
    now = one_host.wait_idle(inst["uuid"])
    assert (now["host"], now["vm_state"]) == ("host1", st.ACTIVE)
    assert one_host.drivers["host1"].guests[inst["uuid"]].power_state == \
        power_state.RUNNING


def test_the_reaper_finishes_a_lost_revert_with_the_volumes_back_on_the_source(cloud):
    inst = _boot(cloud)
    source, dest = inst["host"], _other(inst["host"])
    vid, device, _connection = _attach(cloud, inst)
    migration_uuid = _resize(cloud, inst, BIGGER)
    assert _wait_migration(migration_uuid, ("finished", "error")).status == "finished"
    cloud.wait_idle(inst["uuid"])
    assert _reap_a_lost_cast(cloud, inst["uuid"], migration_uuid, st.RESIZE_REVERTING,
                             "reverting") == 1
    assert db.migration_get(migration_uuid).status == "reverted"
    now = db.instance_get(inst["uuid"])
    assert (now.host, now.vm_state, now.task_state) == (source, st.ACTIVE, None)
    assert inst["uuid"] not in cloud.drivers[dest].guests
    assert _volume_devices(cloud, source, inst["uuid"]) == {vid: device}
    assert _attachment_hosts(inst["uuid"]) == [source]
    _usage_matches_claims()


def test_the_reaper_finishes_a_lost_same_host_revert(one_host):
    inst, vid, device, migration_uuid = _resized_on_its_host(one_host)
    assert _reap_a_lost_cast(one_host, inst["uuid"], migration_uuid, st.RESIZE_REVERTING,
                             "reverting") == 1
    assert db.migration_get(migration_uuid).status == "reverted"
    now = db.instance_get(inst["uuid"])
    assert (now.host, now.vm_state, now.flavor_id) == ("host1", st.ACTIVE, "1")
    driver = one_host.drivers["host1"]
    guest = driver.guests[inst["uuid"]]
    assert guest.instance.flavor.memory_mb == 64 and guest.devices() == {vid: device}
    assert inst["uuid"] not in driver._kept_here
    assert _claims_on_host1(inst["uuid"], migration_uuid) == [("host1", 64)]
    _usage_matches_claims()

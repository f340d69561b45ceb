"""The resize flow (conductor/flows/resize.py) on fake hosts: resize and
confirm, cold migration and revert (host, flavor, claims, migration
record), a failure on the destination reverted to where the server was,
and the automatic confirmation."""

from __future__ import annotations

import datetime
import time

import pytest

from compute.virt import power_state
from compute.virt.fake import FakeDriver
from compute.virt.fake_migration import FakeFabric
from flotilla import deadlines, exception
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import migration_records as mig_db
from flotilla.db import resizes as rs_db
from tests.fixtures.cloud import FLAVOR
from tests.fixtures.scheduling import SchedulingCloud, events, faults

HOSTS = ["host1", "host2"]
BIGGER = {"flavorid": "2", "name": "bigger", "memory_mb": 128, "vcpus": 2,
          "root_gb": 2, "ephemeral_gb": 0, "swap": 0, "extra_specs": {}}


@pytest.fixture
def cloud(conf):
    conf.set_override("compute_driver", "fake", group="compute")
    fabric = FakeFabric()
    c = SchedulingCloud(conf, HOSTS, lambda host: FakeDriver(fabric=fabric))
    yield c
    c.stop()


def _boot(cloud) -> dict:
    _ctxt, [uuid] = cloud.boot_servers(1)
    [inst] = cloud.wait_settled([uuid])
    assert inst["vm_state"] == st.ACTIVE
    return inst


def _resize(cloud, inst: dict, flavor: dict, action: str = "resize",
            host: str | None = None) -> str:
    """What the API does: the task, the record, the action, the cast."""
    ctxt = cloud.ctxt
    db.instance_update(inst["uuid"], {"task_state": st.RESIZE_PREP,
                                      "task_deadline": deadlines.task_deadline(
                                          cloud.conf, st.RESIZE_PREP)},
                       expected_task_state=None)
    kind = rs_db.COLD if action == "migrate" else rs_db.RESIZE
    migration = mig_db.migration_create(inst["uuid"], inst["host"], None, kind)
    db.action_start(inst["uuid"], action, ctxt.request_id, "u1", "p1")
    cloud.conductor.resize_instance(ctxt, inst["uuid"], migration.uuid, flavor, host,
                                    action)
    return migration.uuid


def _wait_migration(uuid: str, statuses, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        migration = db.migration_get(uuid)
        if migration.status in statuses:
            return migration
        assert time.monotonic() < deadline, "migration %s is %s" % (uuid, migration.status)
        time.sleep(0.05)


def _other(host: str) -> str:
    return HOSTS[1] if host == HOSTS[0] else HOSTS[0]


def _second(cloud, uuid: str, name: str, task: str, status: str, method: str,
            migration_uuid: str) -> None:
    db.instance_update(uuid, {"task_state": task}, expected_vm_state=st.RESIZED,
                       expected_task_state=None)
    mig_db.migration_update(migration_uuid, {"status": status})
    db.action_start(uuid, name, cloud.ctxt.request_id + name, "u1", "p1")
    getattr(cloud.conductor, method)(cloud.ctxt, uuid, migration_uuid)


def _usage_matches_claims() -> None:
    for node in db.compute_node_get_all():
        assert node.memory_mb_used == sum(
            a.memory_mb for a in db.allocation_get_all_by_host(node.host))


def test_resize_then_confirm(cloud):
    inst = _boot(cloud)
    source, dest = inst["host"], _other(inst["host"])
    migration_uuid = _resize(cloud, inst, BIGGER)
    migration = _wait_migration(migration_uuid, ("finished", "error"))
    assert migration.status == "finished", migration.error_reason
    now = cloud.wait_idle(inst["uuid"])
    assert (now["host"], now["vm_state"], now["flavor_id"], now["memory_mb"]) == (
        dest, st.RESIZED, "2", 128)
    assert cloud.drivers[dest].guests[inst["uuid"]].instance.flavor.memory_mb == 128
    assert cloud.drivers[dest].guests[inst["uuid"]].power_state == power_state.RUNNING
    kept = cloud.drivers[source].guests[inst["uuid"]]
    assert kept.kept_for_revert and kept.power_state == power_state.SHUTDOWN
    # Both claims held: the source by the instance, the destination by the migration.
    [claim] = db.allocation_get_by_consumer(inst["uuid"])
    [mclaim] = db.allocation_get_by_consumer(migration_uuid)
    assert (claim.host, claim.memory_mb) == (source, 64)
    assert (mclaim.host, mclaim.memory_mb, mclaim.vcpus) == (dest, 128, 2)
    # The migrations view names both flavors by Nova's integer ids.
    from api.compute.migrations import _flavor_ids
    db.flavor_create({"flavorid": "1", "name": "tiny", "memory_mb": 64, "vcpus": 1,
                      "root_gb": 1})
    db.flavor_create({"flavorid": "2", "name": "bigger", "memory_mb": 128, "vcpus": 2,
                      "root_gb": 2})
    assert _flavor_ids(db.migration_get(migration_uuid)) == (
        db.flavor_get("1").id, db.flavor_get("2").id)
    recorded = [(a, e, r) for a, e, r, _ in events(inst["uuid"])]
    for step in ("choose_destination", "migrate_disk", "finish_on_destination", "switch"):
        assert ("resize", "conductor_" + step, "Success") in recorded

    _second(cloud, inst["uuid"], "confirmResize", st.RESIZE_CONFIRMING, "confirming",
            "confirm_resize", migration_uuid)
    assert _wait_migration(migration_uuid, ("confirmed", "finished")).status == "confirmed"
    now = cloud.wait_idle(inst["uuid"])
    assert (now["host"], now["vm_state"]) == (dest, st.ACTIVE)
    assert inst["uuid"] not in cloud.drivers[source].guests
    [claim] = db.allocation_get_by_consumer(inst["uuid"])
    assert (claim.host, claim.memory_mb) == (dest, 128)
    assert db.allocation_get_by_consumer(migration_uuid) == []
    _usage_matches_claims()


def test_cold_migrate_then_revert(cloud):
    inst = _boot(cloud)
    source, dest = inst["host"], _other(inst["host"])
    migration_uuid = _resize(cloud, inst, dict(FLAVOR, swap=0, extra_specs={}),
                             action="migrate", host=dest)
    assert _wait_migration(migration_uuid, ("finished", "error")).status == "finished"
    now = cloud.wait_idle(inst["uuid"])
    assert (now["host"], now["vm_state"], now["flavor_id"]) == (dest, st.RESIZED, "1")

    _second(cloud, inst["uuid"], "revertResize", st.RESIZE_REVERTING, "reverting",
            "revert_resize", migration_uuid)
    assert _wait_migration(migration_uuid, ("reverted", "finished")).status == "reverted"
    now = cloud.wait_idle(inst["uuid"])
    assert (now["host"], now["vm_state"], now["flavor_id"]) == (source, st.ACTIVE, "1")
    assert inst["uuid"] not in cloud.drivers[dest].guests
    guest = cloud.drivers[source].guests[inst["uuid"]]
    assert guest.power_state == power_state.RUNNING and not guest.kept_for_revert
    [claim] = db.allocation_get_by_consumer(inst["uuid"])
    assert claim.host == source
    assert db.allocation_get_by_consumer(migration_uuid) == []
    _usage_matches_claims()


def test_a_resize_of_a_stopped_server_stays_stopped(cloud):
    inst = _boot(cloud)
    cloud.drivers[inst["host"]].power_off(inst["uuid"])
    db.instance_update(inst["uuid"], {"vm_state": st.STOPPED})
    inst = db.instance_get(inst["uuid"]).to_dict()
    migration_uuid = _resize(cloud, inst, BIGGER)
    assert _wait_migration(migration_uuid, ("finished", "error")).status == "finished"
    dest = _other(inst["host"])
    assert cloud.drivers[dest].guests[inst["uuid"]].power_state == power_state.SHUTDOWN
    _second(cloud, inst["uuid"], "confirmResize", st.RESIZE_CONFIRMING, "confirming",
            "confirm_resize", migration_uuid)
    _wait_migration(migration_uuid, ("confirmed",))
    assert cloud.wait_idle(inst["uuid"])["vm_state"] == st.STOPPED


def _resize_failing_on_the_destination(cloud, inst):
    """A resize of ``inst`` whose destination fails to finish it: the
    migration errors, the server is ACTIVE on its source with its old
    flavor, nothing stays on the destination: (the source's guest, the
    migration's uuid)."""
    source, dest = inst["host"], _other(inst["host"])
    cloud.drivers[dest].inject_failure(
        "finish_migration", exception.MigrationError(instance_uuid=inst["uuid"],
                                                     reason="injected"))
    migration_uuid = _resize(cloud, inst, BIGGER)
    migration = _wait_migration(migration_uuid, ("error", "finished"))
    assert migration.status == "error" and "injected" in migration.error_reason
    now = cloud.wait_idle(inst["uuid"])
    assert (now["host"], now["vm_state"], now["flavor_id"]) == (source, st.ACTIVE, "1")
    guest = cloud.drivers[source].guests[inst["uuid"]]
    assert guest.power_state == power_state.RUNNING and not guest.kept_for_revert
    assert inst["uuid"] not in cloud.drivers[dest].guests
    assert inst["uuid"] not in cloud.drivers[dest]._staged
    return guest, migration_uuid


def test_a_failure_on_the_destination_is_reverted(cloud):
    inst = _boot(cloud)
    _guest, migration_uuid = _resize_failing_on_the_destination(cloud, inst)
    assert db.allocation_get_by_consumer(migration_uuid) == []
    assert faults(inst["uuid"])
    _usage_matches_claims()


def test_no_other_host_is_an_error_that_changes_nothing(cloud):
    inst = _boot(cloud)
    migration_uuid = _resize(cloud, inst, BIGGER, host=inst["host"])
    assert _wait_migration(migration_uuid, ("error", "finished")).status == "error"
    now = cloud.wait_idle(inst["uuid"])
    assert (now["host"], now["vm_state"]) == (inst["host"], st.ACTIVE)


def test_automatic_confirmation_after_the_window(cloud):
    inst = _boot(cloud)
    migration_uuid = _resize(cloud, inst, BIGGER)
    _wait_migration(migration_uuid, ("finished",))
    cloud.wait_idle(inst["uuid"])
    flow = cloud.conductor_manager.flows["resize"]
    assert flow.auto_confirm() == 0          # window 0: never
    cloud.conf.set_override("resize_confirm_window", 60)
    assert flow.auto_confirm() == 0          # not yet
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=120)
    assert flow.auto_confirm(now=later) == 1
    assert db.migration_get(migration_uuid).status == "confirmed"
    assert db.instance_get(inst["uuid"]).vm_state == st.ACTIVE


def test_deleting_a_resized_server_removes_both_copies_and_claims(cloud):
    inst = _boot(cloud)
    source, dest = inst["host"], _other(inst["host"])
    migration_uuid = _resize(cloud, inst, BIGGER)
    _wait_migration(migration_uuid, ("finished",))
    cloud.wait_idle(inst["uuid"])
    db.instance_update(inst["uuid"], {"task_state": st.DELETING},
                       expected_vm_state=st.RESIZED, expected_task_state=None)
    db.action_start(inst["uuid"], "delete", cloud.ctxt.request_id + "d", "u1", "p1")
    cloud.conductor.delete_instance(cloud.ctxt, inst["uuid"])
    assert _wait_migration(migration_uuid, ("confirmed",)).status == "confirmed"
    assert inst["uuid"] not in cloud.drivers[source].guests
    assert inst["uuid"] not in cloud.drivers[dest].guests
    assert db.allocation_get_by_consumer(inst["uuid"]) == []
    assert db.allocation_get_by_consumer(migration_uuid) == []
    _usage_matches_claims()


def _reap_a_lost_cast(cloud, instance_uuid: str, migration_uuid: str, task_state: str,
                      status: str) -> int:
    """What the API does for confirmResize/revertResize (``task_state``,
    the migration ``status``) without the cast, lost with a conductor that
    died; then the reaper an hour later. How many tasks it ended."""
    from conductor.reaper import Reaper
    db.instance_update(instance_uuid, {"task_state": task_state,
                                       "task_deadline": deadlines.task_deadline(
                                           cloud.conf, task_state)},
                       expected_vm_state=st.RESIZED, expected_task_state=None)
    mig_db.migration_update(migration_uuid, {"status": status})
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    return Reaper(cloud.conf, cloud.conductor_manager.flows, cloud.conf.host).run(now=later)


def test_the_reaper_finishes_a_confirm_whose_cast_was_lost(cloud):
    inst = _boot(cloud)
    source = inst["host"]
    migration_uuid = _resize(cloud, inst, BIGGER)
    _wait_migration(migration_uuid, ("finished",))
    cloud.wait_idle(inst["uuid"])
    assert _reap_a_lost_cast(cloud, inst["uuid"], migration_uuid, st.RESIZE_CONFIRMING,
                             "confirming") == 1
    assert db.migration_get(migration_uuid).status == "confirmed"
    now = db.instance_get(inst["uuid"])
    assert (now.vm_state, now.task_state) == (st.ACTIVE, None)
    assert inst["uuid"] not in cloud.drivers[source].guests


def test_a_failed_disk_copy_is_reported_and_reverted(cloud):
    inst = _boot(cloud)
    source, dest = inst["host"], _other(inst["host"])
    cloud.drivers[source].inject_failure(
        "migrate_disk_and_power_off",
        exception.MigrationError(instance_uuid=inst["uuid"], reason="link down"))
    migration_uuid = _resize(cloud, inst, BIGGER)
    migration = _wait_migration(migration_uuid, ("error", "finished"))
    assert migration.status == "error" and "link down" in migration.error_reason
    now = cloud.wait_idle(inst["uuid"])
    assert (now["host"], now["vm_state"], now["flavor_id"]) == (source, st.ACTIVE, "1")
    assert cloud.drivers[source].guests[inst["uuid"]].power_state == power_state.RUNNING
    assert inst["uuid"] not in cloud.drivers[dest].guests
    assert db.allocation_get_by_consumer(migration_uuid) == []
    assert "disk" in faults(inst["uuid"])[0]
    recorded = [(a, e, r) for a, e, r, _ in events(inst["uuid"])]
    assert ("resize", "conductor_migrate_disk_report", "Error") in recorded


def test_a_cold_migration_no_host_can_hold_ends_with_the_reason(cloud):
    """Without a named host the API answers 202 (as Nova) and the flow
    finds no room: the migration errors, the server is ACTIVE again where
    it was, and the reason is in the action (its event and message) and
    the fault."""
    inst = _boot(cloud)
    other = _other(inst["host"])
    node = db.compute_node_get(other)
    free = int(node.memory_mb * node.ram_allocation_ratio - node.memory_mb_used)
    db.allocation_claim(other, "hog", {"memory_mb": free}, node.generation)
    migration_uuid = _resize(cloud, inst, dict(inst["flavor"]), action="migrate")
    migration = _wait_migration(migration_uuid, ("error", "finished"))
    assert migration.status == "error", migration.status
    now = cloud.wait_idle(inst["uuid"])
    assert (now["host"], now["vm_state"], now["task_state"]) == (
        inst["host"], st.ACTIVE, None)
    [action] = [a for a in db.action_get_all(inst["uuid"]) if a.action == "migrate"]
    assert action.finish_time is not None and action.message == "Error"
    [event] = [e for e in db.action_events_get(action.id) if e.result == "Error"]
    assert event.event == "conductor_choose_destination"
    assert "No valid host was found" in event.traceback
    assert "RamFilter eliminated 1 of 1 host" in event.traceback
    assert "RamFilter" in faults(inst["uuid"])[0]
    assert "RamFilter" in migration.error_reason
    assert db.allocation_get_by_consumer(migration_uuid) == []


def test_a_source_agent_killed_during_the_disk_copy_reports_it_when_back(cloud):
    """The copy runs in the source agent: killed mid-copy (the guest off,
    part of its disk on the destination, its report lost), the agent
    started again reports the copy failed, so the flow reverts at once:
    the guest runs on its source again, nothing is left on the destination,
    the migration ends ``error`` and its claim is freed (before, the
    restart cleared the task under the flow: the migration stayed
    ``migrating`` with its claim, the guest off)."""
    from tests.functional.test_live_migration import _DeadConductor
    inst = _boot(cloud)
    source, dest = inst["host"], _other(inst["host"])
    driver = cloud.drivers[source]
    cloud.conf.set_override("graceful_shutdown_timeout", 0)
    old = cloud.compute_services[source].manager

    def killed(instance, migrate_data, *args, **kwargs):
        FakeDriver.migrate_disk_and_power_off(driver, instance, migrate_data)
        old.resizes.conductor = _DeadConductor()
        cloud.stop_host(source)
        raise exception.MigrationError(instance_uuid=inst["uuid"], reason="killed")
    driver.migrate_disk_and_power_off = killed
    migration_uuid = _resize(cloud, inst, BIGGER)
    deadline = time.monotonic() + 20
    while source in cloud.compute_services:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert db.migration_get(migration_uuid).status == "migrating"
    assert db.instance_get(inst["uuid"]).task_state == st.RESIZE_MIGRATING
    del driver.migrate_disk_and_power_off
    cloud.start_host(source, driver)
    migration = _wait_migration(migration_uuid, ("error", "finished", "reverted"))
    assert migration.status == "error", migration.status
    assert "interrupted by a restart" in migration.error_reason
    now = cloud.wait_idle(inst["uuid"])
    assert (now["host"], now["vm_state"], now["flavor_id"]) == (source, st.ACTIVE, "1")
    assert driver.guests[inst["uuid"]].power_state == power_state.RUNNING
    assert inst["uuid"] not in cloud.drivers[dest].guests
    assert inst["uuid"] not in cloud.drivers[dest]._staged
    assert db.allocation_get_by_consumer(migration_uuid) == []
    [claim] = db.allocation_get_by_consumer(inst["uuid"])
    assert claim.host == source
    _usage_matches_claims()

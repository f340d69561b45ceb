"""The live migration flow (conductor/flows/live_migrate.py) on fake hosts:
success (host, claims and migration record), progress written on the
record, and every revert branch (a refused check, a failed prepare, a
failed or aborted job): the guest stays on its source, running, the
destination is cleaned, the migration's claim freed, the record says why."""

from __future__ import annotations

import time

import pytest

from compute.virt.fake import FakeDriver
from compute.virt.fake_migration import FakeFabric
from flotilla import deadlines, exception
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import migration_records as mig_db
from tests.fixtures.scheduling import SchedulingCloud, events, faults
from tests.fixtures.waiting import wait_until

HOSTS = ["host1", "host2"]


@pytest.fixture
def cloud(conf):
    conf.set_override("compute_driver", "fake", group="compute")
    conf.set_override("live_migration_progress_interval", 0.2, group="compute")
    fabric = FakeFabric()
    c = SchedulingCloud(conf, HOSTS, lambda host: FakeDriver(fabric=fabric))
    yield c
    c.stop()


def _boot(cloud) -> dict:
    _ctxt, [uuid] = cloud.boot_servers(1)
    [inst] = cloud.wait_settled([uuid])
    assert inst["vm_state"] == st.ACTIVE
    return inst


def _live_migrate(cloud, inst: dict, host: str | None = None, force: bool = False):
    """What the API does: the task, the record, the action, the cast."""
    ctxt = cloud.ctxt
    db.instance_update(inst["uuid"], {"task_state": st.MIGRATING,
                                      "task_deadline": deadlines.task_deadline(
                                          cloud.conf, st.MIGRATING)},
                       expected_task_state=None)
    migration = mig_db.migration_create(inst["uuid"], inst["host"], None, "live-migration")
    db.action_start(inst["uuid"], "live-migration", ctxt.request_id, "u1", "p1")
    cloud.conductor.live_migrate_instance(ctxt, inst["uuid"], migration.uuid, host, force)
    return migration.uuid


def _wait_migration(uuid: str, statuses=("completed", "error", "cancelled"),
                    timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        migration = db.migration_get(uuid)
        if migration.status in statuses:
            return migration
        assert time.monotonic() < deadline, "migration %s is %s" % (uuid, migration.status)
        time.sleep(0.05)


def _other(host: str) -> str:
    return HOSTS[1] if host == HOSTS[0] else HOSTS[0]


def _assert_stayed(cloud, inst: dict, migration_uuid: str) -> None:
    source, dest = inst["host"], _other(inst["host"])
    now = cloud.wait_idle(inst["uuid"])
    assert now["host"] == source and now["vm_state"] == st.ACTIVE
    assert inst["uuid"] in cloud.drivers[source].guests
    assert inst["uuid"] not in cloud.drivers[dest].guests
    assert inst["uuid"] not in cloud.drivers[dest]._prepared      # cleaned
    assert db.allocation_get_by_consumer(migration_uuid) == []
    [claim] = db.allocation_get_by_consumer(inst["uuid"])
    assert claim.host == source


def test_live_migration_moves_the_guest_and_swaps_the_claims(cloud):
    inst = _boot(cloud)
    source, dest = inst["host"], _other(inst["host"])
    migration_uuid = _live_migrate(cloud, inst)
    migration = _wait_migration(migration_uuid)
    assert migration.status == "completed", migration.error_reason
    now = cloud.wait_idle(inst["uuid"])
    assert now["host"] == dest and now["node"] == dest and now["vm_state"] == st.ACTIVE
    assert migration.source_host == source and migration.dest_host == dest
    assert inst["uuid"] in cloud.drivers[dest].guests
    assert inst["uuid"] not in cloud.drivers[source].guests
    [claim] = db.allocation_get_by_consumer(inst["uuid"])
    assert claim.host == dest
    assert db.allocation_get_by_consumer(migration_uuid) == []
    for node in db.compute_node_get_all():
        assert node.memory_mb_used == sum(
            a.memory_mb for a in db.allocation_get_all_by_host(node.host))
    # The last step's event result is written once the step returned, just
    # after it marked the migration completed.
    wanted = {("live-migration", "conductor_" + step, "Success") for step in (
        "choose_destination", "prepare_destination", "migrate_on_source", "finalize")}
    wait_until(lambda: wanted <= {(a, e, r) for a, e, r, _ in events(inst["uuid"])},
               timeout=10, what="every step's event recorded as Success")


def test_progress_is_written_on_the_migration_record(cloud):
    inst = _boot(cloud)
    source = cloud.drivers[inst["host"]]
    source.hold_migrations(True)
    try:
        migration_uuid = _live_migrate(cloud, inst)
        deadline = time.monotonic() + 20
        while not db.migration_get(migration_uuid).memory_total:
            assert time.monotonic() < deadline, "no progress written"
            time.sleep(0.05)
        migration = db.migration_get(migration_uuid)
        assert migration.status == "running"
        assert migration.memory_total == 64 * 1024 ** 2
        assert 0 < migration.memory_processed < migration.memory_total
        assert migration.memory_remaining == migration.memory_total \
            - migration.memory_processed
    finally:
        source.hold_migrations(False)
    assert _wait_migration(migration_uuid).status == "completed"


def test_a_refused_destination_check_changes_nothing(cloud):
    inst = _boot(cloud)
    dest = cloud.drivers[_other(inst["host"])]
    dest.cpu_model = "another-cpu"
    migration_uuid = _live_migrate(cloud, inst)
    migration = _wait_migration(migration_uuid)
    assert migration.status == "error"
    assert "CPU" in migration.error_reason
    _assert_stayed(cloud, inst, migration_uuid)
    assert any("live migration" in f.lower() or "cpu" in f.lower()
               for f in faults(inst["uuid"]))


def test_a_failed_prepare_is_reverted(cloud, monkeypatch):
    inst = _boot(cloud)
    dest = cloud.drivers[_other(inst["host"])]

    def broken(*args, **kwargs):
        raise exception.MigrationError(instance_uuid=inst["uuid"], reason="no room for disk")
    monkeypatch.setattr(dest, "pre_live_migration", broken)
    migration_uuid = _live_migrate(cloud, inst)
    migration = _wait_migration(migration_uuid)
    assert migration.status == "error" and "no room for disk" in migration.error_reason
    _assert_stayed(cloud, inst, migration_uuid)
    assert ("rollback_live_migration_at_destination", inst["uuid"]) in dest.calls


def test_a_failed_job_leaves_the_guest_running_on_its_source(cloud, monkeypatch):
    inst = _boot(cloud)
    source = cloud.drivers[inst["host"]]

    def broken(instance, migrate_data):
        raise exception.MigrationError(instance_uuid=inst["uuid"], reason="link down")
    monkeypatch.setattr(source, "live_migration", broken)
    migration_uuid = _live_migrate(cloud, inst)
    migration = _wait_migration(migration_uuid)
    assert migration.status == "error" and "link down" in migration.error_reason
    _assert_stayed(cloud, inst, migration_uuid)


def test_an_aborted_job_is_cancelled_and_reverted(cloud):
    inst = _boot(cloud)
    source = cloud.drivers[inst["host"]]
    source.hold_migrations(True)
    try:
        migration_uuid = _live_migrate(cloud, inst)
        deadline = time.monotonic() + 20
        while inst["uuid"] not in source._jobs:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        source.live_migration_abort(db.instance_get(inst["uuid"]).to_dict())
    finally:
        source.hold_migrations(False)
    migration = _wait_migration(migration_uuid)
    assert migration.status == "error" and "aborted" in migration.error_reason
    _assert_stayed(cloud, inst, migration_uuid)


def test_a_forced_host_that_is_the_source_is_refused(cloud):
    inst = _boot(cloud)
    migration_uuid = _live_migrate(cloud, inst, host=inst["host"], force=True)
    migration = _wait_migration(migration_uuid)
    assert migration.status == "error"
    _assert_stayed(cloud, inst, migration_uuid)


def test_agents_restarting_mid_migration_leave_the_guest_to_its_flow(conf):
    """Start-up reconciliation on both hosts of a migration in progress:
    the destination keeps the incoming domain (an unknown one is still
    destroyed), the source does not call its departed guest vanished, and
    neither clears the migrating task."""
    from flotilla.objects import Instance
    from tests.fixtures.cloud import InProcessCloud
    conf.set_override("compute_driver", "fake", group="compute")
    fabric = FakeFabric()
    cloud = InProcessCloud(conf, HOSTS, lambda host: FakeDriver(fabric=fabric))
    try:
        uuid = cloud.boot("host1")["uuid"]
        db.instance_update(uuid, {"task_state": st.MIGRATING})
        migration = mig_db.migration_create(uuid, "host1", "host2", "live-migration",
                                            status=mig_db.RUNNING)
        source, dest = cloud.drivers["host1"], cloud.drivers["host2"]
        cloud.stop_host("host2")
        cloud.stop_host("host1")
        # The guest arrived on host2 while both agents were down.
        dest.spawn(Instance(uuid=uuid), None)
        source.destroy(Instance(uuid=uuid))
        orphan = "00000000-0000-4000-8000-000000000002"
        dest.spawn(Instance(uuid=orphan), None)
        cloud.start_host("host2", dest)
        cloud.start_host("host1", source)
        assert uuid in dest.guests
        assert orphan not in dest.guests
        inst = db.instance_get(uuid)
        assert (inst.vm_state, inst.task_state, inst.host) == (st.ACTIVE, st.MIGRATING,
                                                                "host1")
        assert db.instance_fault_get_all(uuid) == []
        assert db.migration_get(migration.uuid).status == mig_db.RUNNING
    finally:
        cloud.stop()


def test_the_reaper_ends_a_stuck_migration_through_its_flow(conf):
    """Past its deadline a live migration is not just cleared: the flow's
    cleanup aborts the job, rolls the destination back, frees the claim and
    ends the migration in error; the guest runs on its source."""
    conf.set_override("compute_driver", "fake", group="compute")
    conf.set_override("task_timeouts", {"migrating": "2"}, group="conductor")
    conf.set_override("reaper_interval", 1, group="conductor")
    fabric = FakeFabric()
    cloud = SchedulingCloud(conf, HOSTS, lambda host: FakeDriver(fabric=fabric))
    try:
        inst = _boot(cloud)
        source = cloud.drivers[inst["host"]]
        source.hold_migrations(True)
        migration_uuid = _live_migrate(cloud, inst)
        migration = _wait_migration(migration_uuid, timeout=30)
        source.hold_migrations(False)
        assert migration.status == "error"
        _assert_stayed(cloud, inst, migration_uuid)
        assert ("live_migration_abort", inst["uuid"]) in source.calls
        assert any("timed out" in f.lower() or "deadline" in f.lower()
                   for f in faults(inst["uuid"])), faults(inst["uuid"])
    finally:
        cloud.stop()


def _held_migration(cloud):
    inst = _boot(cloud)
    source = cloud.drivers[inst["host"]]
    source.hold_migrations(True)
    migration_uuid = _live_migrate(cloud, inst)
    deadline = time.monotonic() + 20
    while inst["uuid"] not in source._jobs or \
            db.migration_get(migration_uuid).status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return inst, source, migration_uuid


def test_abort_through_the_conductor_cancels_the_migration(cloud):
    inst, source, migration_uuid = _held_migration(cloud)
    _abort_and_check(cloud, inst, source, migration_uuid)


def _abort_and_check(cloud, inst: dict, source, migration_uuid: str) -> None:
    """Abort the held migration through the conductor: cancelled, the guest
    left on its source."""
    try:
        cloud.conductor.live_migration_abort(cloud.ctxt, inst["uuid"], migration_uuid)
        migration = _wait_migration(migration_uuid)
    finally:
        source.hold_migrations(False)
    assert migration.status == "cancelled", migration.error_reason
    _assert_stayed(cloud, inst, migration_uuid)


def test_abort_before_the_job_starts_cancels_at_the_next_step(cloud):
    inst = _boot(cloud)
    dest = cloud.drivers[_other(inst["host"])]
    original = dest.check_can_migrate_destination
    holder: dict = {}

    def slow_check(instance, data):
        # The abort arrives while the destination is being checked.
        cloud.conductor.live_migration_abort(cloud.ctxt, inst["uuid"], holder["uuid"])
        time.sleep(0.5)
        return original(instance, data)
    dest.check_can_migrate_destination = slow_check
    holder["uuid"] = _live_migrate(cloud, inst)
    migration = _wait_migration(holder["uuid"])
    assert migration.status == "cancelled"
    _assert_stayed(cloud, inst, holder["uuid"])
    assert "pre_live_migration" not in [c[0] for c in dest.calls]


def test_force_complete_finishes_a_migration_that_does_not_converge(cloud):
    inst, source, migration_uuid = _held_migration(cloud)
    try:
        cloud.conductor.live_migration_force_complete(cloud.ctxt, inst["uuid"],
                                                      migration_uuid)
        migration = _wait_migration(migration_uuid)
    finally:
        source.hold_migrations(False)
    assert migration.status == "completed"
    dest = _other(inst["host"])
    now = cloud.wait_idle(inst["uuid"])
    assert now["host"] == dest and now["vm_state"] == st.ACTIVE
    from compute.virt import power_state
    assert cloud.drivers[dest].guests[inst["uuid"]].power_state == power_state.RUNNING


class _DeadConductor:
    """What a killed agent's threads reach: nothing (its reports are lost)."""

    def __getattr__(self, name):
        def lost(*args, **kwargs):
            raise exception.MessagingTimeout(reason="the agent is dead")
        return lost


def _source_agent_crashes(cloud, inst: dict) -> tuple[FakeDriver, str]:
    """A held migration whose source agent dies (its reports lost; the job
    goes on in the hypervisor) and starts again on the same host."""
    cloud.conf.set_override("graceful_shutdown_timeout", 0)
    cloud.conf.set_override("flow_poll_interval", 3600, group="conductor")
    source = cloud.drivers[inst["host"]]
    source.hold_migrations(True)
    migration_uuid = _live_migrate(cloud, inst)
    deadline = time.monotonic() + 20
    while inst["uuid"] not in source._jobs or \
            db.migration_get(migration_uuid).status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    old = cloud.compute_services[inst["host"]].manager
    old.live_migrations.conductor = _DeadConductor()
    cloud.stop_host(inst["host"])
    cloud.start_host(inst["host"], source)
    deadline = time.monotonic() + 20
    while ("live_migration_recover", inst["uuid"]) not in source.calls:
        assert time.monotonic() < deadline, source.calls
        time.sleep(0.05)
    return source, migration_uuid


def test_a_restarted_source_agent_watches_the_job_and_reports_it(cloud):
    """The job outlived its agent: the new one adopts it (progress goes on)
    and reports its end, so the flow completes without its poll."""
    inst = _boot(cloud)
    source, migration_uuid = _source_agent_crashes(cloud, inst)
    source.hold_migrations(False)
    migration = _wait_migration(migration_uuid)
    assert migration.status == "completed", migration.error_reason
    now = cloud.wait_idle(inst["uuid"])
    assert now["host"] == _other(inst["host"])
    assert db.allocation_get_by_consumer(migration_uuid) == []


def test_an_adopted_job_can_be_aborted(cloud):
    inst = _boot(cloud)
    source, migration_uuid = _source_agent_crashes(cloud, inst)
    _abort_and_check(cloud, inst, source, migration_uuid)


def test_a_job_that_ended_while_the_source_agent_was_down_is_reported(conf):
    """The migration is running but its job is gone and the guest still
    runs on the source: the restarted agent reports the failure at once (the
    flow reverts) instead of leaving it to the reaper."""
    conf.set_override("compute_driver", "fake", group="compute")
    conf.set_override("flow_poll_interval", 3600, group="conductor")
    fabric = FakeFabric()
    cloud = SchedulingCloud(conf, HOSTS, lambda host: FakeDriver(fabric=fabric))
    try:
        inst = _boot(cloud)
        source = cloud.drivers[inst["host"]]
        conf.set_override("graceful_shutdown_timeout", 0)
        old = cloud.compute_services[inst["host"]].manager

        def die(*args):
            # The agent dies as the job would start: nothing of it is left.
            old.live_migrations.conductor = _DeadConductor()
            cloud.stop_host(inst["host"])
        source.live_migration = die
        migration_uuid = _live_migrate(cloud, inst)
        deadline = time.monotonic() + 20
        while inst["host"] in cloud.compute_services:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert db.migration_get(migration_uuid).status == "running"
        del source.live_migration
        cloud.start_host(inst["host"], source)
        migration = _wait_migration(migration_uuid)
        assert migration.status == "error"
        assert "while the source's compute agent was down" in migration.error_reason \
            or "not running" in migration.error_reason, migration.error_reason
        _assert_stayed(cloud, inst, migration_uuid)
    finally:
        cloud.stop()


def test_a_live_migration_keeps_the_volumes_plugged(cloud):
    """A volume is not copied: the destination's definition names the same
    NBD export at the same device, the attachment moves with the instance
    in the completing transaction, and a later detach runs on the new host."""
    from flotilla.db import volumes as vdb
    from flotilla.objects import Instance
    from tests.functional.volume.test_volume_flows import (
        _attach,
        _detach,
        _volume,
        _wait_status,
        start_volume_service,
    )
    volume_service = start_volume_service(cloud.conf, cloud)
    try:
        inst = _boot(cloud)
        source, dest = inst["host"], _other(inst["host"])
        volume_id = _volume(cloud)
        _attach(cloud, inst["uuid"], volume_id)
        _wait_status(volume_id, st.VOLUME_IN_USE)
        device = cloud.drivers[source].get_volume_devices(Instance(uuid=inst["uuid"]))[volume_id]
        migration = _wait_migration(_live_migrate(cloud, inst))
        assert migration.status == "completed", migration.error
        assert cloud.wait_idle(inst["uuid"])["host"] == dest
        [attachment] = vdb.attachments_of_instance(inst["uuid"])
        assert attachment.host == dest and attachment.device == device
        assert vdb.volume_get(volume_id).status == st.VOLUME_IN_USE
        assert cloud.drivers[dest].get_volume_devices(Instance(uuid=inst["uuid"])) == \
            {volume_id: device}
        assert volume_id in cloud.daemon.exported          # served all along
        _detach(cloud, inst["uuid"], volume_id)
        _wait_status(volume_id, st.VOLUME_AVAILABLE)
        assert cloud.drivers[dest].get_volume_devices(Instance(uuid=inst["uuid"])) == {}
        assert volume_id not in cloud.daemon.exported
    finally:
        volume_service.stop(grace=5)

"""Scheduler + conductor build flow in one process (memory://, SQLite)."""

from __future__ import annotations

import collections

import pytest

from compute.virt.fake import FakeDriver
from flotilla import states as st
from flotilla.db import api as db
from tests.fixtures.scheduling import SchedulingCloud, events, fault_details, faults
from tests.fixtures.waiting import wait_until

HOSTS = ["host1", "host2", "host3"]


@pytest.fixture
def cloud(conf):
    conf.set_override("compute_driver", "fake", group="compute")
    # host1 has the most free RAM: with host_subset_size 1 it is chosen first.
    sizes = {"host1": 16384, "host2": 8192, "host3": 8192}
    c = SchedulingCloud(conf, HOSTS, lambda host: FakeDriver(memory_mb=sizes[host]))
    yield c
    c.stop()


@pytest.fixture
def reaper_cloud(conf):
    """The cloud with a 1 s scheduling timeout and the reaper every second
    (set before the conductor starts, as an operator would)."""
    conf.set_override("compute_driver", "fake", group="compute")
    conf.set_override("task_timeouts", {"scheduling": "1"}, group="conductor")
    conf.set_override("reaper_interval", 1, group="conductor")
    c = SchedulingCloud(conf, HOSTS, lambda host: FakeDriver())
    yield c
    c.stop()


def _usage_matches_allocations():
    for node in db.compute_node_get_all():
        allocs = db.allocation_get_all_by_host(node.host)
        assert node.memory_mb_used == sum(a.memory_mb for a in allocs)
        assert node.vcpus_used == sum(a.vcpus for a in allocs)
        assert node.memory_mb_used <= node.memory_mb * node.ram_allocation_ratio


def test_build_one_server(cloud):
    ctxt, [uuid] = cloud.boot_servers(1)
    [inst] = cloud.wait_settled([uuid])
    assert inst["vm_state"] == st.ACTIVE
    assert inst["host"] in HOSTS
    assert uuid in cloud.drivers[inst["host"]].guests
    [alloc] = db.allocation_get_by_consumer(uuid)
    assert alloc.host == inst["host"] and alloc.memory_mb == 64
    # build_on_host ends when its cast returned, which a fake agent can
    # outrun to ACTIVE: wait for it rather than assume.
    steps = {("create", e, "Success") for e in ("conductor_select_destinations",
                                                "conductor_schedule_instance",
                                                "conductor_build_on_host")}
    wait_until(lambda: steps <= {(a, e, r) for a, e, r, _ in events(uuid)}, timeout=5,
               what="the build's conductor steps recorded as done")
    recorded = events(uuid)
    assert ("create", "compute_create_instance", "Success", inst["host"]) in recorded
    action = db.action_get(uuid, ctxt.request_id)
    assert action.finish_time is not None and action.message is None
    assert action.current_step is None


def test_build_n_servers(cloud):
    _, uuids = cloud.boot_servers(9)
    insts = cloud.wait_settled(uuids)
    assert {i["vm_state"] for i in insts} == {st.ACTIVE}
    assert sum(len(d.guests) for d in cloud.drivers.values()) == 9
    _usage_matches_allocations()


def test_reschedule_after_a_spawn_failure_on_the_first_host(cloud, conf):
    conf.set_override("host_subset_size", 1, group="scheduler")
    cloud.drivers["host1"].inject_spawn_failure()  # the next spawn on host1 fails
    _, [uuid] = cloud.boot_servers(1)
    inst = cloud.wait_for(uuid, lambda i: i["vm_state"] == st.ACTIVE, timeout=30)
    assert inst["host"] in ("host2", "host3")
    assert uuid not in cloud.drivers["host1"].guests
    assert [a.host for a in db.allocation_get_by_consumer(uuid)] == [inst["host"]]
    recorded = events(uuid)
    assert ("create", "compute_create_instance", "Error", "host1") in recorded
    builds = [e for e in recorded if e[1] == "conductor_build_on_host"]
    assert len(builds) == 2
    assert any("injected failure" in f for f in fault_details(uuid))
    assert not any("host1" in f for f in faults(uuid))
    _usage_matches_allocations()


def test_build_fails_after_max_attempts(cloud, conf):
    conf.set_override("max_attempts", 2, group="scheduler")
    for driver in cloud.drivers.values():
        driver.inject_spawn_failure()
    _, [uuid] = cloud.boot_servers(1)
    inst = cloud.wait_for(uuid, lambda i: i["vm_state"] == st.ERROR, timeout=30)
    assert inst["task_state"] is None
    assert db.allocation_get_by_consumer(uuid) == []
    assert "max_attempts is 2" in faults(uuid)[0]
    assert len([e for e in events(uuid) if e[1] == "compute_create_instance"]) == 2


def test_an_unreachable_host_counts_as_a_failed_attempt(cloud, conf):
    conf.set_override("host_subset_size", 1, group="scheduler")
    # A host with the most capacity and a live service record, but no agent
    # consuming its queue: the cast is refused at once.
    db.compute_node_update("ghost", {"vcpus": 64, "memory_mb": 65536, "disk_gb": 1000})
    db.service_heartbeat("ghost", "flotilla-compute", "compute")
    _, [uuid] = cloud.boot_servers(1)
    inst = cloud.wait_for(uuid, lambda i: i["vm_state"] == st.ACTIVE, timeout=30)
    assert inst["host"] in HOSTS
    assert db.allocation_get_all_by_host("ghost") == []
    assert any("compute.ghost" in f for f in fault_details(uuid))
    assert "The service of the server's host is not running." in faults(uuid)


def test_no_valid_host_is_a_fault_the_tenant_can_read(cloud):
    _, [uuid] = cloud.boot_servers(1, flavor={"flavorid": "big", "name": "big",
                                              "memory_mb": 100000, "vcpus": 1,
                                              "root_gb": 1, "ephemeral_gb": 0})
    [inst] = cloud.wait_settled([uuid])
    assert inst["vm_state"] == st.ERROR and inst["host"] is None
    [fault] = faults(uuid)
    assert fault.startswith("No valid host was found.")
    assert "RamFilter eliminated 3 of 3 hosts" in fault
    assert db.allocation_get_by_consumer(uuid) == []
    assert ("create", "conductor_select_destinations", "Error") in [
        e[:3] for e in events(uuid)]


def test_image_properties_and_zone_are_honoured(cloud):
    _, [uuid] = cloud.boot_servers(1, image_properties={"arch": "aarch64"})
    [inst] = cloud.wait_settled([uuid])
    assert "ImagePropertiesFilter eliminated 3 of 3 hosts" in faults(uuid)[0]
    _, [uuid] = cloud.boot_servers(1, availability_zone="elsewhere")
    [inst] = cloud.wait_settled([uuid])
    assert inst["vm_state"] == st.ERROR
    assert "AvailabilityZoneFilter eliminated 3 of 3 hosts" in faults(uuid)[0]
    _, [uuid] = cloud.boot_servers(1, availability_zone="nova",
                                   image_properties={"arch": "x86_64"})
    assert cloud.wait_settled([uuid])[0]["vm_state"] == st.ACTIVE


def test_affinity_group_shares_one_host(cloud):
    group = db.server_group_create({"name": "g", "policy": "affinity",
                                    "project_id": "p1"}).uuid
    _, uuids = cloud.boot_servers(3, group=group)
    insts = cloud.wait_settled(uuids)
    assert {i["vm_state"] for i in insts} == {st.ACTIVE}
    assert len({i["host"] for i in insts}) == 1
    # A later member joins them.
    _, [late] = cloud.boot_servers(1, group=group)
    assert cloud.wait_settled([late])[0]["host"] == insts[0]["host"]


def test_anti_affinity_group_spreads_then_refuses(cloud):
    group = db.server_group_create({"name": "g", "policy": "anti-affinity",
                                    "project_id": "p1"}).uuid
    _, uuids = cloud.boot_servers(3, group=group)
    insts = cloud.wait_settled(uuids)
    assert {i["vm_state"] for i in insts} == {st.ACTIVE}
    assert sorted(i["host"] for i in insts) == HOSTS
    _, [extra] = cloud.boot_servers(1, group=group)
    [inst] = cloud.wait_settled([extra])
    assert inst["vm_state"] == st.ERROR
    assert "ServerGroupAntiAffinityFilter eliminated 3 of 3 hosts" in faults(extra)[0]


def test_reaper_ends_a_build_whose_message_was_dropped(reaper_cloud):
    cloud = reaper_cloud
    build_flow = cloud.conductor_manager.flows["build"]
    dropped = []
    # The cast "succeeds" but the message never reaches the agent.
    build_flow.compute.build_and_run_instance = lambda ctxt, host, uuid, image: \
        dropped.append((host, uuid))
    _, [uuid] = cloud.boot_servers(1)
    inst = cloud.wait_for(uuid, lambda i: i["vm_state"] == st.ERROR and (
        "create", "conductor_reap_task", "Error") in [e[:3] for e in events(uuid)],
        timeout=15)
    assert dropped and dropped[0][1] == uuid
    assert inst["task_state"] is None and inst["task_deadline"] is None
    assert db.allocation_get_by_consumer(uuid) == []
    assert "Task scheduling timed out" in faults(uuid)[0]
    assert ("create", "conductor_reap_task", "Error") in [e[:3] for e in events(uuid)]
    _usage_matches_allocations()


def test_delete_active_and_never_scheduled_instances(cloud):
    _, [active] = cloud.boot_servers(1)
    host = cloud.wait_settled([active])[0]["host"]
    _, [failed] = cloud.boot_servers(1, flavor={"flavorid": "big", "name": "big",
                                                "memory_mb": 100000, "vcpus": 1,
                                                "root_gb": 1})
    cloud.wait_settled([failed])
    for uuid in (active, failed):
        cloud.conductor.delete_instance(cloud.ctxt, uuid)
    for uuid in (active, failed):
        # The agent soft-deletes, then frees the claim: wait for both.
        inst = cloud.wait_for(uuid, lambda i: i["deleted"]
                              and not db.allocation_get_by_consumer(i["uuid"]),
                              read_deleted=True)
        assert inst["vm_state"] == st.DELETED
        assert db.allocation_get_by_consumer(uuid) == []
    assert active not in cloud.drivers[host].guests
    _usage_matches_allocations()


def test_spread_uses_every_host(cloud, conf):
    conf.set_override("host_subset_size", 1, group="scheduler")
    _, uuids = cloud.boot_servers(6)
    insts = cloud.wait_settled(uuids)
    per_host = collections.Counter(i["host"] for i in insts)
    # host1 has twice the RAM of the others: RAM-spreading fills it first.
    assert set(per_host) == set(HOSTS)

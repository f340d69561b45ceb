"""The scheduler's cached host states follow the database (SQLite)."""

from __future__ import annotations

from flotilla.db import scheduling as sched_db
from scheduler.filter_scheduler import FilterScheduler
from scheduler.host_manager import HostManager

FLAVOR = {"memory_mb": 1024, "vcpus": 1, "root_gb": 1}


def _nodes(count=2, memory_mb=4096, first=0, services=True):
    sched_db.compute_nodes_bulk_create([
        {"host": "h%d" % i, "vcpus": 16, "memory_mb": memory_mb, "disk_gb": 100,
         "cpu_allocation_ratio": 1.0, "ram_allocation_ratio": 1.0,
         "disk_allocation_ratio": 1.0} for i in range(first, first + count)],
        services=services)


def test_a_claim_by_another_scheduler_is_seen_without_a_full_read(db):
    _nodes()
    manager = HostManager(60, full_refresh=3600, liveness_refresh=3600)
    before = {s.host: s for s in manager.get_host_states()}
    db.allocation_claim("h1", "elsewhere", {"memory_mb": 1024}, before["h1"].generation)
    after = {s.host: s for s in manager.get_host_states()}
    assert after["h1"].memory_mb_used == 1024
    assert after["h1"].generation == before["h1"].generation + 1
    assert after["h0"].memory_mb_used == 0


def test_heartbeats_and_disabling_follow_the_liveness_refresh(db):
    _nodes(count=1, services=False)
    manager = HostManager(60, full_refresh=3600, liveness_refresh=0)
    assert not manager.get_host_states()[0].service_up       # never reported
    db.service_heartbeat("h0", "flotilla-compute", "compute")
    assert manager.get_host_states()[0].service_up
    db.service_set_disabled("h0", "flotilla-compute", True, "maintenance")
    assert manager.get_host_states()[0].service_disabled


def test_a_request_refused_on_the_cached_view_is_decided_again_on_a_full_read(db, conf):
    conf.set_override("host_state_full_refresh", 3600, group="scheduler")
    _nodes(count=1, memory_mb=1024)
    sched = FilterScheduler(conf)
    assert sched.select_destinations({"flavor": FLAVOR}, ["a"])[0]["host"] == "h0"
    # A new host the incremental read would find anyway, and the first host
    # freed behind the cache's back: both must be usable at once.
    db.allocation_free("a")
    _nodes(count=1, memory_mb=1024, first=1)
    chosen = {sched.select_destinations({"flavor": FLAVOR}, [u])[0]["host"] for u in "bc"}
    assert chosen == {"h0", "h1"}

"""Claims guarded by the host generation, through the filter scheduler (SQLite)."""

from __future__ import annotations

import threading

import pytest

from flotilla import exception
from flotilla.db import scheduling as sched_db
from scheduler.filter_scheduler import FilterScheduler

FLAVOR = {"memory_mb": 1024, "vcpus": 1, "root_gb": 1}


def _nodes(db, count=2, memory_mb=4096):
    sched_db.compute_nodes_bulk_create([
        {"host": "h%d" % i, "vcpus": 16, "memory_mb": memory_mb, "disk_gb": 100,
         "cpu_allocation_ratio": 1.0, "ram_allocation_ratio": 1.0,
         "disk_allocation_ratio": 1.0} for i in range(count)])


def test_a_claim_on_a_stale_generation_conflicts(db):
    _nodes(db)
    node = db.compute_node_get("h0")
    db.allocation_claim("h0", "i1", {"memory_mb": 1024}, node.generation)
    with pytest.raises(exception.ResourceProviderGenerationConflict):
        db.allocation_claim("h0", "i2", {"memory_mb": 1024}, node.generation)
    assert db.compute_node_get("h0").memory_mb_used == 1024


def test_scheduler_retries_a_lost_claim_on_the_new_generation(db, conf):
    conf.set_override("host_subset_size", 1, group="scheduler")
    _nodes(db, count=1)
    sched = FilterScheduler(conf)
    states = sched.host_manager.get_host_states()
    # Another scheduler claims after our read: our generation is stale.
    db.allocation_claim("h0", "other", {"memory_mb": 1024}, states[0].generation)
    from scheduler.scheduling_request import SchedulingRequest
    rs = SchedulingRequest.from_spec({"flavor": FLAVOR})
    host = sched._place_one(states, rs, "mine")
    assert host.host == "h0"
    node = db.compute_node_get("h0")
    assert node.memory_mb_used == 2048 and host.generation == node.generation


def test_a_lost_claim_on_a_host_now_full_moves_to_the_next_host(db, conf):
    conf.set_override("host_subset_size", 1, group="scheduler")
    _nodes(db, count=2, memory_mb=1024)
    sched = FilterScheduler(conf)
    states = sched.host_manager.get_host_states()
    first = states[0].host
    db.allocation_claim(first, "other", {"memory_mb": 1024}, states[0].generation)
    from scheduler.scheduling_request import SchedulingRequest
    rs = SchedulingRequest.from_spec({"flavor": FLAVOR})
    # Make the full host the preferred one, so the stale view picks it.
    states.sort(key=lambda h: h.host != first)
    host = sched._place_one(states, rs, "mine")
    assert host.host != first
    assert db.compute_node_get(first).memory_mb_used == 1024


def test_all_or_nothing_frees_earlier_claims(db, conf):
    _nodes(db, count=1, memory_mb=2048)
    sched = FilterScheduler(conf)
    with pytest.raises(exception.NoValidHost, match="RamFilter eliminated 1 of 1 host"):
        sched.select_destinations({"flavor": FLAVOR, "num_instances": 3}, ["a", "b", "c"])
    assert db.compute_node_get("h0").memory_mb_used == 0
    assert db.allocation_get_all_by_host("h0") == []


def test_concurrent_schedulers_never_overcommit(db, conf):
    _nodes(db, count=3, memory_mb=4096)  # room for exactly 12
    errors, placed = [], []

    def worker(n):
        sched = FilterScheduler(conf)
        for i in range(6):
            try:
                placed.extend(sched.select_destinations({"flavor": FLAVOR},
                                                        ["w%d-%d" % (n, i)]))
            except exception.NoValidHost as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(placed) == 12 and len(errors) == 6
    for node in db.compute_node_get_all():
        assert node.memory_mb_used == 4096
        assert len(db.allocation_get_all_by_host(node.host)) == 4


def test_anti_affinity_members_of_one_request_get_distinct_hosts(db, conf):
    _nodes(db, count=3)
    group = db.server_group_create({"name": "g", "policy": "anti-affinity"}).uuid
    for uuid in ("a", "b", "c"):
        db.instance_create({"uuid": uuid, "flavor": FLAVOR})
    db.server_group_add_members(group, ["a", "b", "c"])
    sched = FilterScheduler(conf)
    dests = sched.select_destinations({"flavor": FLAVOR, "group": group}, ["a", "b", "c"])
    assert len({d["host"] for d in dests}) == 3

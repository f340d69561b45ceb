"""Compute node reports and generation-guarded resource claims."""

from __future__ import annotations

import pytest

from flotilla import exception
from tests.unit.db.fixtures import race

REPORT = {"vcpus": 8, "memory_mb": 16384, "disk_gb": 100,
          "hypervisor_type": "QEMU", "hypervisor_hostname": "host1",
          "cpu_arch": "x86_64", "running_vms": 0}


def test_report_creates_then_updates(db):
    node = db.compute_node_update("host1", REPORT)
    assert (node.vcpus, node.generation, node.vcpus_used) == (8, 0, 0)
    node = db.compute_node_update("host1", {"running_vms": 3})
    assert node.generation == 0, "a non-inventory change keeps the generation"
    node = db.compute_node_update("host1", {"vcpus": 16})
    assert (node.vcpus, node.generation) == (16, 1)
    with pytest.raises(exception.Invalid):
        db.compute_node_update("host1", {"vcpus_used": 0})
    assert [n.host for n in db.compute_node_get_all()] == ["host1"]


def test_claim_and_free(db):
    db.compute_node_update("host1", REPORT)
    node = db.allocation_claim("host1", "inst-1",
                               {"vcpus": 2, "memory_mb": 2048, "disk_gb": 10}, 0)
    assert (node.generation, node.vcpus_used, node.memory_mb_used) == (1, 2, 2048)
    assert [a.consumer_id for a in db.allocation_get_all_by_host("host1")] == ["inst-1"]
    assert db.allocation_free("inst-1") == 1
    assert db.allocation_free("inst-1") == 0
    node = db.compute_node_get("host1")
    assert (node.generation, node.vcpus_used, node.disk_gb_used) == (2, 0, 0)


def test_claim_with_stale_generation_conflicts(db):
    db.compute_node_update("host1", REPORT)
    db.allocation_claim("host1", "inst-1", {"vcpus": 1}, 0)
    with pytest.raises(exception.ResourceProviderGenerationConflict) as info:
        db.allocation_claim("host1", "inst-2", {"vcpus": 1}, 0)
    assert info.value.kwargs["generation"] == 1
    node = db.compute_node_get("host1")
    assert node.vcpus_used == 1
    assert db.allocation_get_by_consumer("inst-2") == []


def test_claim_unknown_host(db):
    with pytest.raises(exception.ComputeNodeNotFound):
        db.allocation_claim("nowhere", "inst-1", {"vcpus": 1}, 0)


def test_claim_twice_for_one_consumer_conflicts(db):
    db.compute_node_update("host1", REPORT)
    db.allocation_claim("host1", "inst-1", {"vcpus": 1}, 0)
    with pytest.raises(exception.Conflict):
        db.allocation_claim("host1", "inst-1", {"vcpus": 1}, 1)
    assert db.compute_node_get("host1").vcpus_used == 1


def test_claim_race_exactly_one_wins(db):
    db.compute_node_update("host1", REPORT)
    wins, conflicts = race(
        10, lambda n: db.allocation_claim("host1", "inst-%d" % n, {"vcpus": 1}, 0),
        exception.ResourceProviderGenerationConflict)
    assert len(wins) == 1 and len(conflicts) == 9
    node = db.compute_node_get("host1")
    assert (node.vcpus_used, node.generation) == (1, 1)

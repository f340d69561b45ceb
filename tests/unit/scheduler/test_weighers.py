"""Weighers: normalisation, multipliers (spread and pack), entry points."""

from __future__ import annotations

from scheduler.weighers import WeightHandler
from scheduler.weighers.cpu_weigher import CPUWeigher
from scheduler.weighers.disk_weigher import DiskWeigher
from scheduler.weighers.ram_weigher import RAMWeigher
from tests.unit.scheduler.fakes import host, spec


def _names(hosts):
    return [h.host for h in hosts]


def test_ram_weigher_spreads_and_packs(conf):
    hosts = [host("small", memory_mb=2048), host("big", memory_mb=8192),
             host("mid", memory_mb=4096)]
    handler = WeightHandler(conf, ["RAMWeigher"])
    assert _names(handler.weigh(hosts, spec())) == ["big", "mid", "small"]
    conf.set_override("ram_weight_multiplier", -1.0, group="scheduler")
    assert _names(handler.weigh(hosts, spec())) == ["small", "mid", "big"]


def test_cpu_and_disk_weighers_use_free_capacity_after_ratios(conf):
    a = host("a", vcpus=4, vcpus_used=3, cpu_allocation_ratio=4.0, disk_gb=100,
             disk_gb_used=90)
    b = host("b", vcpus=8, vcpus_used=0, disk_gb=50, disk_gb_used=0)
    assert CPUWeigher(conf).raw_weight(a, spec()) == 13.0
    assert CPUWeigher(conf).raw_weights([a, b], spec()) == [13.0, 8.0]
    assert DiskWeigher(conf).raw_weights([a, b], spec()) == [10.0, 50.0]
    assert RAMWeigher(conf).raw_weight(b, spec()) == 8192


def test_weights_are_normalised_so_units_do_not_dominate(conf):
    # a: much more RAM (MB are big numbers), b: more vCPUs. With equal
    # multipliers each weigher contributes at most 1: CPU x2 wins.
    a = host("a", memory_mb=65536, vcpus=2)
    b = host("b", memory_mb=1024, vcpus=64)
    conf.set_override("cpu_weight_multiplier", 2.0, group="scheduler")
    handler = WeightHandler(conf, ["RAMWeigher", "CPUWeigher"])
    assert _names(handler.weigh([a, b], spec())) == ["b", "a"]


def test_equal_hosts_keep_their_order_and_zero_multiplier_is_ignored(conf):
    hosts = [host("x"), host("y"), host("z")]
    assert _names(WeightHandler(conf).weigh(hosts, spec())) == ["x", "y", "z"]
    conf.set_override("ram_weight_multiplier", 0.0, group="scheduler")
    assert _names(WeightHandler(conf, ["RAMWeigher"]).weigh(
        [host("s", memory_mb=1), host("l")], spec())) == ["s", "l"]

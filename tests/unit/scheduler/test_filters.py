"""Every host filter, the handler's reasons and entry point loading."""

from __future__ import annotations

import pytest

from flotilla import exception
from scheduler.filters import FilterHandler, describe
from scheduler.filters.affinity_filter import ServerGroupAffinityFilter
from scheduler.filters.anti_affinity_filter import ServerGroupAntiAffinityFilter
from scheduler.filters.availability_zone_filter import AvailabilityZoneFilter
from scheduler.filters.compute_filter import ComputeFilter
from scheduler.filters.core_filter import CoreFilter
from scheduler.filters.disk_filter import DiskFilter
from scheduler.filters.image_properties_filter import ImagePropertiesFilter
from scheduler.filters.num_instances_filter import NumInstancesFilter
from scheduler.filters.ram_filter import RamFilter
from scheduler.filters.retry_filter import RetryFilter
from tests.unit.scheduler.fakes import host, spec


def _both(flt, h, s):
    """host_passes and the bulk filter_all must agree."""
    one = flt.host_passes(h, s)
    assert flt.filter_all([h], s) == ([h] if one else [])
    return one


def test_compute_filter(conf):
    f = ComputeFilter(conf)
    assert _both(f, host(), spec())
    assert not _both(f, host(service_up=False), spec())
    assert not _both(f, host(service_disabled=True), spec())


@pytest.mark.parametrize("cls, field, total, used, ratio, need, ok", [
    (RamFilter, "memory_mb", 1024, 512, 1.0, 512, True),
    (RamFilter, "memory_mb", 1024, 600, 1.0, 512, False),
    (RamFilter, "memory_mb", 1024, 1024, 1.5, 512, True),
    (CoreFilter, "vcpus", 2, 2, 1.0, 1, False),
    (CoreFilter, "vcpus", 2, 2, 4.0, 1, True),
    (DiskFilter, "disk_gb", 20, 10, 1.0, 10, True),
    (DiskFilter, "disk_gb", 20, 11, 1.0, 10, False),
])
def test_resource_filters_apply_allocation_ratios(conf, cls, field, total, used, ratio,
                                                  need, ok):
    prefix = {"memory_mb": "ram", "vcpus": "cpu", "disk_gb": "disk"}[field]
    h = host(**{field: total, field + "_used": used, prefix + "_allocation_ratio": ratio})
    s = spec(memory_mb=need if field == "memory_mb" else 1,
             vcpus=need if field == "vcpus" else 1,
             root_gb=need if field == "disk_gb" else 1)
    assert _both(cls(conf), h, s) is ok


def test_disk_filter_skipped_for_diskless_flavor(conf):
    assert not DiskFilter(conf).run_filter_for_request(spec(root_gb=0))


def test_availability_zone_filter(conf):
    f = AvailabilityZoneFilter(conf)
    assert not f.run_filter_for_request(spec())
    assert _both(f, host(availability_zone="az1"), spec(availability_zone="az1"))
    assert not _both(f, host(availability_zone="az2"), spec(availability_zone="az1"))
    # A host reporting no zone is in the default zone.
    assert _both(f, host(), spec(availability_zone="nova"))
    conf.set_override("default_availability_zone", "main", group="scheduler")
    assert not _both(f, host(), spec(availability_zone="nova"))


def test_image_properties_filter(conf):
    f = ImagePropertiesFilter(conf)
    assert not f.run_filter_for_request(spec())
    arm = spec(image={"properties": {"arch": "aarch64"}})
    assert not _both(f, host(cpu_arch="x86_64"), arm)
    assert _both(f, host(cpu_arch="aarch64"), arm)
    assert _both(f, host(cpu_arch="x86_64"), spec(image={"properties": {"arch": "amd64"}}))
    assert _both(f, host(cpu_arch=None), arm)  # unknown arch does not exclude
    qemu = spec(image={"properties": {"hypervisor_type": "qemu"}})
    assert _both(f, host(hypervisor_type="QEMU"), qemu)
    assert not _both(f, host(hypervisor_type="xen"), qemu)
    assert not _both(f, host(), spec(memory_mb=256, image={"min_ram": 512}))
    assert not _both(f, host(), spec(root_gb=1, image={"min_disk": 5}))
    assert _both(f, host(), spec(memory_mb=512, root_gb=5,
                                 image={"min_ram": 512, "min_disk": 5}))


def test_affinity_filters(conf):
    aff, anti = ServerGroupAffinityFilter(conf), ServerGroupAntiAffinityFilter(conf)
    s = spec(group="g")
    s.group_policy = "affinity"
    assert not aff.run_filter_for_request(s)  # first member goes anywhere
    s.group_hosts = {"h1"}
    assert aff.run_filter_for_request(s) and not anti.run_filter_for_request(s)
    assert _both(aff, host("h1"), s) and not _both(aff, host("h2"), s)
    s.group_policy = "anti-affinity"
    assert anti.run_filter_for_request(s) and not aff.run_filter_for_request(s)
    assert not _both(anti, host("h1"), s) and _both(anti, host("h2"), s)


def test_num_instances_filter(conf):
    conf.set_override("max_instances_per_host", 2, group="scheduler")
    f = NumInstancesFilter(conf)
    assert _both(f, host(num_instances=1), spec())
    assert not _both(f, host(num_instances=2), spec())


def test_retry_filter(conf):
    f = RetryFilter(conf)
    assert not f.run_filter_for_request(spec())
    s = spec(excluded_hosts=["h1"])
    assert not _both(f, host("h1"), s) and _both(f, host("h2"), s)


def test_handler_reports_what_each_filter_eliminated(conf):
    handler = FilterHandler(conf)
    hosts = [host("a", memory_mb=256), host("b", memory_mb=256), host("c", memory_mb=256),
             host("d", service_up=False), host("e")]
    s = spec(memory_mb=512, group="g")
    s.group_policy, s.group_hosts = "anti-affinity", {"e"}
    passed, eliminations = handler.run(hosts, s)
    assert passed == []
    assert describe(eliminations, len(hosts)) == (
        "ComputeFilter eliminated 1 of 5 hosts; RamFilter eliminated 3 of 4 hosts; "
        "ServerGroupAntiAffinityFilter eliminated 1 of 1 host.")
    assert handler.host_passes(host("x", memory_mb=256), s) == "RamFilter"
    assert handler.host_passes(host("x"), s) is None
    assert describe([], 0) == "There are no compute hosts."


def test_unknown_filter_name_is_an_error_naming_it(conf):
    conf.set_override("enabled_filters", ["RamFilter", "NoSuchFilter"], group="scheduler")
    with pytest.raises(exception.Invalid, match="NoSuchFilter"):
        FilterHandler(conf)


def test_default_filters_load_through_entry_points(conf):
    names = [f.name for f in FilterHandler(conf).filters]
    assert names == list(conf.scheduler.enabled_filters)

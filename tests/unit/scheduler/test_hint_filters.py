"""The scheduler-hint and aggregate filters: same_host, different_host,
AggregateInstanceExtraSpecsFilter, and zones from aggregates."""

from __future__ import annotations

from scheduler.filters.aggregate_extra_specs_filter import AggregateInstanceExtraSpecsFilter
from scheduler.filters.availability_zone_filter import AvailabilityZoneFilter
from scheduler.filters.different_host_filter import DifferentHostFilter
from scheduler.filters.same_host_filter import SameHostFilter
from tests.unit.scheduler.fakes import host
from tests.unit.scheduler.fakes import spec as base_spec


def spec(**fields):
    """A request with SchedulingRequest fields set (as the scheduler sets
    them before filtering)."""
    request_fields = {k: fields.pop(k) for k in ("availability_zone", "scheduler_hints")
                      if k in fields}
    extra = fields.pop("flavor_extra_specs", None)
    if extra:
        request_fields["flavor"] = {"memory_mb": 512, "vcpus": 1, "root_gb": 10,
                                    "extra_specs": extra}
    request = base_spec(**request_fields)
    for key, value in fields.items():
        setattr(request, key, value)
    return request


def test_same_and_different_host(conf):
    same, different = SameHostFilter(conf), DifferentHostFilter(conf)
    plain = spec()
    assert not same.run_filter_for_request(plain)
    assert not different.run_filter_for_request(plain)
    hinted = spec(same_hosts={"h1"}, different_hosts={"h1"})
    assert same.host_passes(host("h1"), hinted) and not same.host_passes(host("h2"), hinted)
    assert different.host_passes(host("h2"), hinted)
    assert not different.host_passes(host("h1"), hinted)
    # A hint naming servers on no host: same_host lets nothing through.
    nowhere = spec(same_hosts=set())
    assert same.run_filter_for_request(nowhere)
    assert not same.host_passes(host("h1"), nowhere)


def test_hint_uuids_take_one_or_a_list():
    s = spec(scheduler_hints={"same_host": "u1", "different_host": ["u2", "u3"]})
    assert s.hint_uuids("same_host") == ["u1"]
    assert s.hint_uuids("different_host") == ["u2", "u3"]
    assert s.hint_uuids("query") is None


def test_aggregate_extra_specs(conf):
    f = AggregateInstanceExtraSpecsFilter(conf)
    aggregates = {"h1": [(None, {"ssd": "true", "gpu": "a100"})], "h2": [(None, {})]}
    assert not f.run_filter_for_request(spec(flavor_extra_specs={"network": "true"}))
    wanted = spec(flavor_extra_specs={"aggregate_instance_extra_specs:ssd": "true",
                                      "network": "true"}, host_aggregates=aggregates)
    assert f.run_filter_for_request(wanted)
    assert f.host_passes(host("h1"), wanted)
    assert not f.host_passes(host("h2"), wanted)
    assert not f.host_passes(host("h3"), wanted)       # in no aggregate
    either = spec(flavor_extra_specs={"aggregate_instance_extra_specs:gpu": "<in> h100 a100"},
                  host_aggregates=aggregates)
    assert f.host_passes(host("h1"), either)
    other = spec(flavor_extra_specs={"aggregate_instance_extra_specs:gpu": "s== h100"},
                 host_aggregates=aggregates)
    assert not f.host_passes(host("h1"), other)


def test_zone_from_an_aggregate_wins(conf):
    f = AvailabilityZoneFilter(conf)
    s = spec(availability_zone="az1", host_aggregates={"h1": [("az1", {})]})
    assert f.host_passes(host("h1", availability_zone="nova"), s)
    assert not f.host_passes(host("h2", availability_zone="nova"), s)
    assert f.host_passes(host("h3", availability_zone="az1"), s)

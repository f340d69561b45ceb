"""The volume placement rule (flotilla.volume_placement): Cinder's thin
provisioning rule over what each volume host reported and what is
provisioned there."""

from __future__ import annotations

import pytest

from flotilla.volume_placement import HostSpace, rank_hosts


def space(host, total, free, provisioned, ratio=1.0) -> HostSpace:
    return HostSpace(host, float(total), float(free), provisioned, ratio)


@pytest.mark.parametrize("total, free, provisioned, ratio, size, fits", [
    (10, 10, 0, 1.0, 10, True),       # exactly the backend
    (10, 10, 0, 1.0, 11, False),
    (10, 10, 6, 1.0, 5, False),       # sparse: free unchanged, provisioned counts
    (10, 10, 6, 1.0, 4, True),
    (10, 3, 0, 1.0, 4, False),        # other files filled the filesystem
    (10, 10, 6, 2.0, 14, True),       # overcommit allowed by the ratio
    (10, 10, 6, 2.0, 15, False),
    (10, 3, 0, 2.0, 7, False),        # but never beyond free x ratio
])
def test_fits(total, free, provisioned, ratio, size, fits):
    assert space("h", total, free, provisioned, ratio).fits(size) is fits


def test_virtual_free_is_the_smaller_bound():
    assert space("h", 10, 10, 6).virtual_free_gb == 4
    assert space("h", 10, 3, 0).virtual_free_gb == 3
    assert space("h", 10, 10, 6, 2.0).virtual_free_gb == 14


def test_rank_most_free_first_ties_by_name_and_drops_what_cannot_hold_it():
    hosts = [space("c", 10, 10, 8), space("b", 20, 6, 0), space("a", 8, 8, 2)]
    assert [h.host for h in rank_hosts(hosts, 1)] == ["a", "b", "c"]   # 6, 6, 2
    assert [h.host for h in rank_hosts(hosts, 3)] == ["a", "b"]
    assert rank_hosts(hosts, 7) == []


def test_describe_names_the_free_space_and_the_ratio():
    text = space("vol1", 8, 5, 2, 1.5).describe()
    assert text.startswith("vol1: 7.5 GiB free") and "2 GiB provisioned" in text  # 5 x 1.5
    assert "max_over_subscription_ratio 1.5" in text

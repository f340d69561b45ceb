"""Host aggregates in the database: names, hosts, zones, metadata."""

from __future__ import annotations

import pytest

from flotilla.db import aggregates as agg_db
from flotilla.db import api as db_api


@pytest.fixture
def hosts(db):  # noqa: F811 - the db fixture
    for host in ("h1", "h2"):
        db_api.service_heartbeat(host, "flotilla-compute", "compute")


def test_a_host_is_never_in_two_zones(hosts):
    a, _ = agg_db.aggregate_create("a", "az1")
    b, _ = agg_db.aggregate_create("b", "az2")
    plain, _ = agg_db.aggregate_create("plain")
    agg_db.aggregate_add_host(a.id, "h1")
    with pytest.raises(agg_db.AggregateConflict):
        agg_db.aggregate_add_host(b.id, "h1")
    agg_db.aggregate_add_host(plain.id, "h1")        # no zone: fine
    with pytest.raises(agg_db.AggregateConflict):
        agg_db.aggregate_update(plain.id, zone="az2", set_zone=True)
    assert agg_db.host_zones() == {"h1": "az1"}
    with pytest.raises(agg_db.AggregateConflict):
        agg_db.aggregate_create("a")
    with pytest.raises(agg_db.HostNotFound):
        agg_db.aggregate_add_host(a.id, "nohost")


def test_metadata_merges_and_sets_the_zone(hosts):
    a, _ = agg_db.aggregate_create("a")
    row, _ = agg_db.aggregate_set_metadata(a.id, {"ssd": "true", "x": "1"})
    assert row.metadata_ == {"ssd": "true", "x": "1"}
    row, _ = agg_db.aggregate_set_metadata(a.id, {"x": None, "availability_zone": "az9"})
    assert row.metadata_ == {"ssd": "true", "availability_zone": "az9"}
    assert row.availability_zone == "az9"
    agg_db.aggregate_add_host(a.id, "h2")
    with pytest.raises(agg_db.AggregateNotEmpty):
        agg_db.aggregate_delete(a.id)
    agg_db.aggregate_remove_host(a.id, "h2")
    with pytest.raises(agg_db.AggregateHostNotFound):
        agg_db.aggregate_remove_host(a.id, "h2")
    agg_db.aggregate_delete(a.id)
    with pytest.raises(agg_db.AggregateNotFound):
        agg_db.aggregate_get(a.id)

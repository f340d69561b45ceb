"""Volume placement by free space (issue 11): two volume services whose
in-memory backends report different space; the API puts a volume on the
one with the most free space that can hold it, counts what is provisioned
there (volumes and snapshots) at once, and answers 413 with the free space
when none can hold it - a volume from a snapshot or an image too."""

from __future__ import annotations

import pytest

from flotilla import binaries, service
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import volume_capacity as capdb
from flotilla.db import volume_snapshots as sdb
from flotilla.db import volumes as vdb
from flotilla.volume_placement import pick_volume_host
from tests.functional.api.fixtures import IMAGE_ID, api_cloud  # noqa: F401
from tests.functional.volume.test_volume_api import V, _create
from tests.functional.volume.test_volume_flows import MemoryBackend, MemoryDaemon, _wait_status
from volume.backend import Capacity
from volume.manager import VolumeManager

GIB = 1024 ** 3


class SizedBackend(MemoryBackend):
    """A memory backend of ``total_gb`` with ``free_gb`` left (other files
    took the rest); its volumes are sparse (4 KiB allocated each)."""

    def __init__(self, total_gb: int, free_gb: int) -> None:
        super().__init__()
        self.total_gb, self.free_gb = total_gb, free_gb

    def free_bytes(self) -> int:
        return self.free_gb * GIB

    def capacity(self) -> Capacity:
        return Capacity(self.total_gb * GIB, self.free_gb * GIB, 4096 * len(self.volumes))


@pytest.fixture
def cloud(api_cloud, conf):  # noqa: F811
    # Reports at start only: each test says when the next one comes.
    conf.set_override("capacity_report_interval", 0, group="volume")
    api_cloud.services = {}
    for host, total, free in (("vol1", 8, 5), ("vol2", 10, 10)):
        backend = SizedBackend(total, free)
        svc = service.Service(conf, binaries.VOLUME, "volume",
                              VolumeManager(conf, host=host, backend=backend,
                                            daemon=MemoryDaemon()),
                              transport=api_cloud.transport, per_host=True, host=host)
        svc.start()
        api_cloud.services[host] = svc
    yield api_cloud
    for svc in api_cloud.services.values():
        svc.stop(grace=5)


def _host_of(cloud, size, **spec) -> str:
    r = _create(cloud, size=size, **spec)
    assert r.status_code == 202, r.text
    row = _wait_status(r.json["volume"]["id"], st.VOLUME_AVAILABLE)
    return row.host


def test_each_service_reports_its_space_at_start_and_on_schedule(cloud):
    reports = capdb.capacity_get_all()
    assert {h: (r.total_bytes, r.free_bytes, r.provisioned_gb) for h, r in reports.items()} \
        == {"vol1": (8 * GIB, 5 * GIB, 0), "vol2": (10 * GIB, 10 * GIB, 0)}
    assert _host_of(cloud, 3) == "vol2"
    manager = cloud.services["vol2"].manager
    manager.backend.free_gb = 9
    manager._report_capacity()
    row = capdb.capacity_get_all(["vol2"])["vol2"]
    assert (row.free_bytes, row.allocated_bytes, row.provisioned_gb) == (9 * GIB, 4096, 3)
    assert row.reported_at > reports["vol2"].reported_at


def test_the_host_with_the_most_free_space_that_holds_it_and_provisioned_counts(cloud):
    # Free space: min(total - provisioned, reported free). vol1 8 GiB with
    # 5 free (other files took 3): 5; vol2: 10. Volumes are sparse, so the
    # reported free space does not move; the provisioned sizes do, at once.
    assert _host_of(cloud, 3) == "vol2"        # vol2 7, vol1 5
    assert _host_of(cloud, 3) == "vol2"        # vol2 4, vol1 5
    assert _host_of(cloud, 2) == "vol1"        # vol1 min(6, 5) = 5, vol2 4
    assert _host_of(cloud, 2) == "vol1"        # vol1 4, vol2 4
    assert _host_of(cloud, 1) == "vol1"        # a tie: the first by name; vol1 3
    assert _host_of(cloud, 1) == "vol2"        # vol2 3, vol1 3
    # A snapshot takes its size on its volume's host: vol1 3 - 2 = 1, so
    # what would have been a tie goes to vol2.
    vid = [v.id for v in vdb.volume_get_all(host="vol1") if v.size_gb == 2][0]
    sdb.snapshot_create({"volume_id": vid, "status": st.SNAPSHOT_AVAILABLE},
                        {"snapshots": -1, "gigabytes": -1}, (st.VOLUME_AVAILABLE,))
    assert _host_of(cloud, 1) == "vol2"        # vol2 2, vol1 1
    assert _host_of(cloud, 2) == "vol2"        # only vol2 holds 2; now 0
    r = _create(cloud, size=2)
    assert r.status_code == 413 and "vol1: 1.0 GiB free" in r.text, r.text
    # A disabled service gets nothing.
    db.service_set_disabled("vol1", binaries.VOLUME, True, "maintenance")
    r = _create(cloud, size=1)
    assert r.status_code == 413 and "vol2: 0.0 GiB free" in r.text, r.text
    db.service_set_disabled("vol1", binaries.VOLUME, False)
    assert _host_of(cloud, 1) == "vol1"


def test_larger_than_every_free_space_is_413_naming_the_free_space(cloud, conf):
    r = _create(cloud, size=11)
    assert r.status_code == 413, r.text
    message = r.json["overLimit"]["message"]
    assert "Insufficient free space" in message and "11 GiB" in message
    assert "vol2: 10.0 GiB free" in message and "max_over_subscription_ratio 1" in message
    assert vdb.volume_get_all() == []
    # Sparse volumes may overcommit the backend when the ratio says so.
    conf.set_override("max_over_subscription_ratio", 2.0, group="volume")
    assert _host_of(cloud, 11) == "vol2"


def test_a_volume_from_a_snapshot_or_an_image_counts_too(cloud):
    assert _host_of(cloud, 1) == "vol2"
    source = _host_of(cloud, 2, name="src")
    assert source == "vol2"
    vid = vdb.volume_get_all(host="vol2")[0].id
    snap = sdb.snapshot_create({"volume_id": vid, "status": st.SNAPSHOT_AVAILABLE,
                                "project_id": "p1"},
                               {"snapshots": -1, "gigabytes": -1}, (st.VOLUME_AVAILABLE,))
    # vol2: 10 - 1 - 2 - 2 (the snapshot) = 5 GiB left; the copy goes there.
    r = _create(cloud, size=6, snapshot_id=snap.id)
    assert r.status_code == 413 and "vol2" in r.text and "where its source is" in r.text, \
        r.text
    # From an image: anywhere that holds it, the most free space first.
    r = _create(cloud, size=9, imageRef=IMAGE_ID)
    assert r.status_code == 413 and "Insufficient free space" in r.text, r.text
    r = _create(cloud, size=5, imageRef=IMAGE_ID)
    assert r.status_code == 202, r.text
    assert vdb.volume_get(r.json["volume"]["id"]).host in ("vol1", "vol2")


def test_a_host_that_never_reported_is_used_only_when_no_other_holds_it(cloud):
    db.service_heartbeat("vol0", binaries.VOLUME, "volume")     # no report
    assert _host_of(cloud, 3) == "vol2"
    r = _create(cloud, size=20)
    assert r.status_code == 202, r.text
    assert vdb.volume_get(r.json["volume"]["id"]).host == "vol0"
    assert cloud.request("GET", V + "/volumes").status_code == 200


@pytest.mark.parametrize("size, competing, placed", [(8, 5, None), (4, 8, "vol1")])
def test_a_create_that_took_the_space_after_the_pick_sends_the_next_elsewhere(
        cloud, monkeypatch, size, competing, placed):
    """The pick reads without a lock; the insert checks again under a
    per-host lock: another create that took the space in between (here
    ``competing`` GiB on vol2, the pick) makes this one pick again."""
    from api.volume import resources
    picked = []

    def pick_then_lose_the_race(conf, size_gb=0):
        host = pick_volume_host(conf, size_gb)
        if not picked:
            vdb.volume_create({"size_gb": competing, "status": st.VOLUME_AVAILABLE,
                               "host": host, "project_id": "p2"},
                              {"volumes": -1, "gigabytes": -1})
        picked.append(host)
        return host

    monkeypatch.setattr(resources, "pick_volume_host", pick_then_lose_the_race)
    r = _create(cloud, size=size)
    assert picked[0] == "vol2"
    if placed is None:
        # vol2 5 GiB left, vol1 5: nowhere for 8.
        assert r.status_code == 413 and "Insufficient free space" in r.text, r.text
        assert [v.size_gb for v in vdb.volume_get_all(host="vol2")] == [competing]
    else:
        assert r.status_code == 202, r.text
        assert vdb.volume_get(r.json["volume"]["id"]).host == placed


def test_a_snapshot_or_an_extend_needs_the_space_on_the_volumes_host(cloud):
    vid = _wait_status(_create(cloud, size=4).json["volume"]["id"], st.VOLUME_AVAILABLE).id
    other = _wait_status(_create(cloud, size=4).json["volume"]["id"],
                         st.VOLUME_AVAILABLE)
    assert (vdb.volume_get(vid).host, other.host) == ("vol2", "vol2")   # vol2: 2 left
    r = cloud.request("POST", V + "/snapshots", json={"snapshot": {"volume_id": vid}},
                      headers={"OpenStack-API-Version": "volume 3.65"})
    assert r.status_code == 413 and "snapshot creation" in r.text, r.text
    assert "vol2: 2.0 GiB free" in r.text and sdb.snapshot_get_all() == []
    r = cloud.request("POST", V + "/volumes/%s/action" % vid,
                      json={"os-extend": {"new_size": 7}})
    assert r.status_code == 413 and "Requested size 3 GiB" in r.text, r.text
    assert "volume host vol2: 2.0 GiB free" in r.text and vdb.volume_get(vid).size_gb == 4
    r = cloud.request("POST", V + "/volumes/%s/action" % vid,
                      json={"os-extend": {"new_size": 6}})
    assert r.status_code == 202, r.text


def test_the_pools_as_cinder_lists_them_for_admins(cloud):
    assert _host_of(cloud, 3) == "vol2"
    assert cloud.request("GET", V + "/scheduler-stats/get_pools").status_code == 403
    r = cloud.request("GET", V + "/scheduler-stats/get_pools", "admin")
    assert r.status_code == 200, r.text
    assert [p["name"] for p in r.json["pools"]] == [
        "vol1@libvirt_pool#flotilla-volumes", "vol2@libvirt_pool#flotilla-volumes"]
    assert "capabilities" not in r.json["pools"][0]
    r = cloud.request("GET", V + "/scheduler-stats/get_pools?detail=True", "admin")
    caps = {p["name"].split("@")[0]: p["capabilities"] for p in r.json["pools"]}
    assert (caps["vol2"]["total_capacity_gb"], caps["vol2"]["free_capacity_gb"],
            caps["vol2"]["provisioned_capacity_gb"]) == (10, 10, 3)
    assert (caps["vol1"]["free_capacity_gb"], caps["vol1"]["provisioned_capacity_gb"],
            caps["vol1"]["max_over_subscription_ratio"]) == (5, 0, 1.0)
    assert caps["vol1"]["updated"].endswith("Z")


def test_volume_services_as_cinder_lists_and_sets_them_for_admins(cloud):
    url = V + "/os-services"
    assert cloud.request("GET", url).status_code == 403
    r = cloud.request("GET", url, "admin")
    assert r.status_code == 200, r.text
    assert [(s["binary"], s["host"], s["status"], s["state"], s["zone"])
            for s in r.json["services"]] == [
        ("cinder-volume", "vol1@libvirt_pool", "enabled", "up", "nova"),
        ("cinder-volume", "vol2@libvirt_pool", "enabled", "up", "nova")]
    # Filters take Cinder's names or Flotilla's; compute daemons are not here.
    for query in ("?host=vol2@libvirt_pool", "?host=vol2&binary=flotilla-volume",
                  "?binary=cinder-volume&host=vol2"):
        listed = cloud.request("GET", url + query, "admin").json["services"]
        assert [s["host"] for s in listed] == ["vol2@libvirt_pool"], query
    assert cloud.request("GET", url + "?binary=nova-compute", "admin").json == \
        {"services": []}

    # Disabled with a reason: vol2 (the most free space) gets no new volume.
    assert cloud.request("PUT", url + "/disable-log-reason", "member", json={
        "host": "vol2@libvirt_pool", "binary": "cinder-volume"}).status_code == 403
    r = cloud.request("PUT", url + "/disable-log-reason", "admin", json={
        "host": "vol2@libvirt_pool", "binary": "cinder-volume",
        "disabled_reason": "disk swap"})
    assert r.status_code == 200, r.text
    assert (r.json["status"], r.json["disabled"], r.json["disabled_reason"]) == \
        ("disabled", True, "disk swap")
    shown = cloud.request("GET", url + "?host=vol2", "admin").json["services"][0]
    assert (shown["status"], shown["disabled_reason"]) == ("disabled", "disk swap")
    assert _host_of(cloud, 1) == "vol1"
    r = cloud.request("PUT", url + "/enable", "admin",
                      json={"host": "vol2", "binary": "cinder-volume"})
    assert (r.status_code, r.json["status"], r.json["disabled_reason"]) == \
        (200, "enabled", None)
    assert _host_of(cloud, 1) == "vol2"

    # Bad input: 400 naming the field, 404 for no such service or action.
    r = cloud.request("PUT", url + "/disable", "admin", json={"host": "vol2"})
    assert r.status_code == 400 and "binary" in r.text
    r = cloud.request("PUT", url + "/disable", "admin",
                      json={"host": "vol2", "binary": "cinder-backup"})
    assert r.status_code == 400 and "binary" in r.text
    r = cloud.request("PUT", url + "/disable", "admin",
                      json={"host": "vol9", "binary": "cinder-volume"})
    assert r.status_code == 404 and "vol9" in r.text
    r = cloud.request("PUT", url + "/freeze", "admin",
                      json={"host": "vol2", "binary": "cinder-volume"})
    assert r.status_code == 404

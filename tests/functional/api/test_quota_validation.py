"""Quotas (limits, races at the edge) and request validation."""

from __future__ import annotations

import pytest

from flotilla.db import quotas as quotas_db
from tests.functional.api import quota_race
from tests.functional.api.fixtures import IMAGE_ID, C


def test_quota_race_sqlite(api_cloud):
    quota_race.race(api_cloud)


def test_keypair_quota_race_sqlite(api_cloud):
    quota_race.keypair_race(api_cloud)


def test_server_group_quota_race_sqlite(api_cloud):
    quota_race.group_race(api_cloud)


def test_cores_and_ram_quota(api_cloud):
    quotas_db.set_limit("p1", "ram", 100)
    api_cloud.create_server()
    r = api_cloud.request("POST", C + "/servers", json={"server": {
        "name": "x", "flavorRef": "1", "imageRef": IMAGE_ID}})
    assert r.status_code == 403
    assert "ram" in r.json["overLimit"]["message"]
    assert api_cloud.conductor.wait_for("build_instances", 1)
    assert len([c for c in api_cloud.conductor.calls if c[0] == "build_instances"]) == 1


def test_min_max_count(api_cloud):
    quotas_db.set_limit("p1", "instances", 3)
    r = api_cloud.request("POST", C + "/servers", json={"server": {
        "name": "m", "flavorRef": "1", "imageRef": IMAGE_ID, "min_count": 2,
        "max_count": 5}})
    assert r.status_code == 202
    call = api_cloud.conductor.wait_for("build_instances")[0]
    assert len(call["instance_uuids"]) == 2


def test_limits(api_cloud):
    api_cloud.create_server()
    absolute = api_cloud.request("GET", C + "/limits").json["limits"]["absolute"]
    assert absolute["maxTotalInstances"] == 10 and absolute["totalInstancesUsed"] == 1
    assert absolute["totalCoresUsed"] == 1 and absolute["totalRAMUsed"] == 64


BAD_SERVERS = [
    ({"name": "x" * 256}, "server.name"),
    ({"name": 5}, "server.name"),
    ({"flavorRef": None}, "server.flavorRef"),
    ({"imageRef": "not-a-uuid"}, "server.imageRef"),
    ({"bogus": 1}, "bogus"),
    ({"metadata": {"k": "v" * 300}}, "server.metadata.k"),
    ({"min_count": -1}, "server.min_count"),
    ({"max_count": 10 ** 9}, "server.max_count"),
    ({"networks": [{"uuid": "x"}]}, "server.networks"),
    ({"availability_zone": ""}, "server.availability_zone"),
]


@pytest.mark.parametrize("change,field", BAD_SERVERS)
def test_server_create_validation(api_cloud, change, field):
    server = {"name": "ok", "flavorRef": "1", "imageRef": IMAGE_ID}
    server.update(change)
    r = api_cloud.request("POST", C + "/servers", json={"server": server})
    assert r.status_code == 400, r.text
    assert field in r.json["badRequest"]["message"]
    assert api_cloud.conductor.calls == []
    assert quotas_db.get_usage("p1")["instances"] == 0


@pytest.mark.parametrize("server,message", [
    ({"name": "a", "flavorRef": "99", "imageRef": IMAGE_ID}, "Flavor 99"),
    ({"name": "a", "flavorRef": "1",
      "imageRef": "00000000-0000-4000-8000-000000000000"}, "image"),
    ({"name": "a", "flavorRef": "1", "imageRef": IMAGE_ID,
      "availability_zone": "mars"}, "availability zone"),
    ({"name": "a", "flavorRef": "1"}, "imageRef"),
])
def test_server_create_references(api_cloud, server, message):
    r = api_cloud.request("POST", C + "/servers", json={"server": server})
    assert r.status_code == 400 and message in r.json["badRequest"]["message"]
    assert api_cloud.conductor.calls == []


def test_group_hint_must_exist(api_cloud):
    r = api_cloud.request("POST", C + "/servers", json={
        "server": {"name": "a", "flavorRef": "1", "imageRef": IMAGE_ID},
        "os:scheduler_hints": {"group": "00000000-0000-4000-8000-000000000000"}})
    assert r.status_code == 400


def test_malformed_and_oversized_bodies(api_cloud):
    r = api_cloud.request("POST", C + "/servers", body="{nope",
                          headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    big = {"server": {"name": "a", "flavorRef": "1", "imageRef": IMAGE_ID,
                      "metadata": {"k%d" % i: "v" * 200 for i in range(1000)}}}
    r = api_cloud.request("POST", C + "/servers", json=big)
    assert r.status_code == 413
    r = api_cloud.request("POST", C + "/servers/%s/action" % IMAGE_ID,
                          json={"os-explode": None})
    assert r.status_code == 400
    r = api_cloud.request("POST", C + "/servers/%s/action" % IMAGE_ID,
                          json={"reboot": {"type": "GENTLE"}})
    assert r.status_code == 400 and "reboot.type" in r.json["badRequest"]["message"]


@pytest.mark.parametrize("flavor,field", [
    ({"ram": -1}, "flavor.ram"), ({"vcpus": 10 ** 7}, "flavor.vcpus"),
    ({"disk": "lots"}, "flavor.disk"), ({"name": ""}, "flavor.name"),
    ({"extra": 1}, "extra"),
])
def test_flavor_validation(api_cloud, flavor, field):
    body = {"name": "f", "ram": 64, "vcpus": 1, "disk": 1}
    body.update(flavor)
    r = api_cloud.request("POST", C + "/flavors", who="admin", json={"flavor": body})
    assert r.status_code == 400 and field in r.json["badRequest"]["message"]


def test_microversions(api_cloud):
    r = api_cloud.request("GET", C + "/servers", version="2.101")
    assert r.status_code == 406
    r = api_cloud.request("GET", C + "/servers", version="two")
    assert r.status_code == 400
    r = api_cloud.request("GET", C + "/servers", version="latest")
    assert r.headers["OpenStack-API-Version"] == "compute 2.100"
    assert "OpenStack-API-Version" in r.headers["Vary"]
    r = api_cloud.request("GET", C + "/servers",
                          headers={"X-OpenStack-Nova-API-Version": "2.47", "Accept": ""})
    assert r.status_code == 200
    assert r.headers["X-OpenStack-Nova-API-Version"] == "2.47"
    doc = api_cloud.request("GET", C, who="none").json["version"]
    assert (doc["version"], doc["min_version"], doc["status"]) == ("2.100", "2.1",
                                                                   "CURRENT")

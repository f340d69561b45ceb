"""The compute API's Nova conformance (issue 14) through every service in
one process: the API, scheduler, conductor and two agents on the fake
driver, over memory:// and SQLite.

Soft delete, restore and reclaim; scheduler hints and aggregate zones;
server create fields, metadata, tags and list filters; hosts, usage, the
audit log, hypervisor uptime and search; flavor extra specs and swap."""

from __future__ import annotations

import falcon.testing
import pytest

from api.app import create_app
from compute.virt.fake import FakeDriver
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import identity as identity_db
from flotilla.db import images as images_db
from tests.fixtures.scheduling import SchedulingCloud
from tests.fixtures.waiting import wait_until as wait_for

C = "/compute/v2.1"
IMAGE_ID = "21111111-2222-4333-8444-555555555555"


class Client:
    def __init__(self, conf, transport) -> None:
        self.client = falcon.testing.TestClient(create_app(conf, transport))
        self.tokens = {}
        for user, project, role in (("admin", "admin", "admin"),
                                    ("alice", "demo", "member")):
            identity_db.project_create(project, project_id=project)
            row = identity_db.user_create(user, "pw-" + user, scrypt_n=1024)
            identity_db.role_add(user, project, role)
            self.tokens[user], _ = identity_db.token_issue(
                row.id, project, identity_db.roles_for(row.id, project), 3600)

    def __call__(self, method: str, path: str, who: str = "alice",
                 version: str | None = None, **kwargs):
        headers = {"X-Auth-Token": self.tokens[who]}
        if version:
            headers["OpenStack-API-Version"] = "compute " + version
        return self.client.simulate_request(method, path, headers=headers, **kwargs)

    def boot(self, version: str | None = None, hints: dict | None = None, **spec) -> str:
        body = {"server": dict({"name": "vm", "flavorRef": "1", "imageRef": IMAGE_ID,
                                "networks": "none"}, **spec)}
        if hints:
            body["os:scheduler_hints"] = hints
        r = self("POST", C + "/servers", version=version, json=body)
        assert r.status_code == 202, r.text
        return r.json["server"]["id"]

    def status(self, uuid: str) -> str:
        r = self("GET", C + "/servers/" + uuid, who="admin")
        return "GONE" if r.status_code == 404 else r.json["server"]["status"]

    def wait_status(self, uuid: str, status: str) -> dict:
        wait_for(lambda: self.status(uuid) == status and
                 self("GET", C + "/servers/" + uuid, who="admin")
                 .json["server"]["OS-EXT-STS:task_state"] is None, timeout=30,
                 what="server %s %s" % (uuid, status))
        return self("GET", C + "/servers/" + uuid, who="admin").json["server"]


@pytest.fixture
def api(conf):
    conf.set_override("compute_driver", "fake", group="compute")
    conf.set_override("scrypt_n", 1024, group="identity")
    conf.set_override("reclaim_instance_interval", 2)
    conf.set_override("reaper_interval", 1, group="conductor")
    cloud = SchedulingCloud(conf, ["host1", "host2"], lambda host: FakeDriver())
    db.flavor_create({"flavorid": "1", "name": "tiny", "memory_mb": 64, "vcpus": 1,
                      "root_gb": 1, "swap": 512})
    images_db.image_create({"id": IMAGE_ID, "name": "img", "status": "active",
                            "disk_format": "qcow2", "container_format": "bare",
                            "visibility": "public", "checksum": "0" * 64, "size": 1024,
                            "owner": "demo", "properties": {"os_distro": "cirros"}})
    client = Client(conf, cloud.transport)
    yield client
    cloud.stop()


def test_soft_delete_restore_and_reclaim(api):
    uuid = api.boot()
    api.wait_status(uuid, "ACTIVE")
    assert api("DELETE", C + "/servers/" + uuid).status_code == 204
    server = api.wait_status(uuid, "SOFT_DELETED")
    assert server["OS-EXT-STS:vm_state"] == st.SOFT_DELETED
    assert server["OS-EXT-STS:power_state"] == 4          # powered off
    r = api("POST", C + "/servers/%s/action" % uuid, json={"restore": None})
    assert r.status_code == 202, r.text
    assert api.wait_status(uuid, "ACTIVE")["OS-EXT-STS:power_state"] == 1
    r = api("POST", C + "/servers/%s/action" % uuid, json={"restore": None})
    assert r.status_code == 409                          # not soft-deleted
    # Soft-deleted again, then reclaimed by the conductor after 2 s.
    assert api("DELETE", C + "/servers/" + uuid).status_code == 204
    api.wait_status(uuid, "SOFT_DELETED")
    wait_for(lambda: api.status(uuid) == "GONE", timeout=30, what="reclaim")
    # forceDelete skips the soft delete.
    other = api.boot()
    api.wait_status(other, "ACTIVE")
    r = api("POST", C + "/servers/%s/action" % other, json={"forceDelete": None})
    assert r.status_code == 202
    wait_for(lambda: api.status(other) == "GONE", timeout=30, what="force delete")


def test_reset_state_is_for_admins(api):
    uuid = api.boot()
    api.wait_status(uuid, "ACTIVE")
    body = {"os-resetState": {"state": "error"}}
    assert api("POST", C + "/servers/%s/action" % uuid, json=body).status_code == 403
    assert api("POST", C + "/servers/%s/action" % uuid, who="admin",
               json=body).status_code == 202
    assert api.status(uuid) == "ERROR"
    assert api("POST", C + "/servers/%s/action" % uuid, who="admin", json={
        "os-resetState": {"state": "deleted"}}).status_code == 400


def test_same_and_different_host_hints_and_aggregate_zones(api):
    first = api.boot()
    host = api.wait_status(first, "ACTIVE")["OS-EXT-SRV-ATTR:host"]
    near = api.boot(hints={"same_host": first})
    far = api.boot(hints={"different_host": [first]})
    assert api.wait_status(near, "ACTIVE")["OS-EXT-SRV-ATTR:host"] == host
    assert api.wait_status(far, "ACTIVE")["OS-EXT-SRV-ATTR:host"] != host
    # An aggregate with a zone makes its host that zone.
    other = "host2" if host == "host1" else "host1"
    r = api("POST", C + "/os-aggregates", who="admin",
            json={"aggregate": {"name": "fast", "availability_zone": "az-fast"}})
    agg = r.json["aggregate"]
    assert "hosts" not in agg and agg["availability_zone"] == "az-fast"
    r = api("POST", C + "/os-aggregates/%d/action" % agg["id"], who="admin",
            json={"add_host": {"host": other}})
    assert r.json["aggregate"]["hosts"] == [other]
    assert api("POST", C + "/os-aggregates/%d/action" % agg["id"], who="admin",
               json={"add_host": {"host": other}}).status_code == 409
    assert api("POST", C + "/os-aggregates/%d/action" % agg["id"], who="admin",
               json={"add_host": {"host": "nohost"}}).status_code == 404
    zones = api("GET", C + "/os-availability-zone").json["availabilityZoneInfo"]
    assert "az-fast" in {z["zoneName"] for z in zones}
    placed = api.boot(availability_zone="az-fast")
    assert api.wait_status(placed, "ACTIVE")["OS-EXT-SRV-ATTR:host"] == other
    # Metadata merges; a flavor's scoped extra spec must match it.
    r = api("POST", C + "/os-aggregates/%d/action" % agg["id"], who="admin",
            json={"set_metadata": {"metadata": {"ssd": "true"}}})
    assert r.json["aggregate"]["metadata"] == {"availability_zone": "az-fast", "ssd": "true"}
    r = api("POST", C + "/flavors", who="admin", json={"flavor": {
        "name": "ssd", "id": 42, "ram": 64, "vcpus": 1, "disk": 1,
        "os-flavor-access:is_public": "True"}})
    assert r.status_code == 200 and r.json["flavor"]["id"] == "42", r.text
    assert api("POST", C + "/flavors/42/os-extra_specs", who="admin", json={
        "extra_specs": {"aggregate_instance_extra_specs:ssd": "true"}}).status_code == 200
    on_ssd = api.boot(flavorRef="42")
    assert api.wait_status(on_ssd, "ACTIVE")["OS-EXT-SRV-ATTR:host"] == other
    assert api("DELETE", C + "/os-aggregates/%d" % agg["id"],
               who="admin").status_code == 400           # it has a host


def test_create_fields_metadata_tags_and_filters(api):
    r = api("POST", C + "/servers", version="2.90", json={"server": {
        "name": "web_1", "flavorRef": "1", "imageRef": IMAGE_ID, "networks": "none",
        "accessIPv4": "10.0.0.1", "accessIPv6": "0:0:0:0:0:babe:220.12.22.2",
        "OS-DCF:diskConfig": "AUTO", "hostname": "web-one", "adminPass": "s3cret",
        "tags": ["a", "b"], "metadata": {"k": "v"}}})
    assert r.status_code == 202, r.text
    assert r.json["server"]["adminPass"] == "s3cret"
    uuid = r.json["server"]["id"]
    server = api("GET", C + "/servers/" + uuid, version="2.90").json["server"]
    assert (server["accessIPv4"], server["accessIPv6"]) == ("10.0.0.1", "::babe:dc0c:1602")
    assert server["OS-DCF:diskConfig"] == "AUTO"
    assert server["OS-EXT-SRV-ATTR:hostname"] == "web-one"
    assert server["tags"] == ["a", "b"]
    assert server["flavor"]["swap"] == 512
    api.wait_status(uuid, "ACTIVE")
    generated = api("POST", C + "/servers", json={"server": {
        "name": "x", "flavorRef": "1", "imageRef": IMAGE_ID}}).json["server"]
    assert generated["adminPass"]
    # metadata
    base = C + "/servers/%s/metadata" % uuid
    assert api("POST", base, json={"metadata": {"k2": "v2"}}).json["metadata"] == {
        "k": "v", "k2": "v2"}
    assert api("PUT", base + "/k", json={"meta": {"k": "w"}}).json == {"meta": {"k": "w"}}
    assert api("PUT", base + "/k", json={"meta": {"x": "w"}}).status_code == 400
    assert api("DELETE", base + "/k2").status_code == 204
    assert api("GET", base).json["metadata"] == {"k": "w"}
    too_many = {"metadata": {str(i): "v" for i in range(129)}}
    assert api("PUT", base, json=too_many).status_code == 403      # quota
    # tags (2.26)
    tags = C + "/servers/%s/tags" % uuid
    assert api("GET", tags).status_code == 404                     # below 2.26
    assert api("PUT", tags + "/c", version="2.26").status_code == 201
    assert api("PUT", tags + "/c", version="2.26").status_code == 204
    assert api("GET", tags, version="2.26").json["tags"] == ["a", "b", "c"]
    assert api("DELETE", tags + "/a", version="2.26").status_code == 204
    assert api("GET", tags + "/a", version="2.26").status_code == 404
    # filters
    names = [s["name"] for s in api("GET", C + "/servers?name=^web_[0-9]$").json["servers"]]
    assert names == ["web_1"]
    assert api("GET", C + "/servers?name=(").status_code == 400
    assert len(api("GET", C + "/servers?flavor=1").json["servers"]) == 2
    assert api("GET", C + "/servers?image=nope").json["servers"] == []
    later = api("GET", C + "/servers?changes-since=2999-01-01T00:00:00Z").json
    assert later["servers"] == []
    assert api("GET", C + "/servers/%s/ips" % uuid).json == {"addresses": {}}
    assert api("GET", C + "/servers/%s/os-server-password" % uuid).json == {"password": ""}
    diag = api("GET", C + "/servers/%s/diagnostics" % uuid, who="admin",
               version="2.48").json
    assert diag["num_cpus"] == 1 and diag["driver"] == "libvirt"
    # PUT takes the standard fields too.
    r = api("PUT", C + "/servers/" + uuid, json={"server": {"accessIPv4": "10.0.0.9"}})
    assert r.json["server"]["accessIPv4"] == "10.0.0.9"


def test_hosts_usage_audit_and_hypervisors(api):
    uuid = api.boot()
    api.wait_status(uuid, "ACTIVE")
    hosts = api("GET", C + "/os-hosts", who="admin").json["hosts"]
    assert {"host_name": "host1", "service": "compute", "zone": "nova"} in hosts
    assert api("GET", C + "/os-hosts", who="admin", version="2.43").status_code == 404
    detail = api("GET", C + "/os-hosts/host1", who="admin").json["host"]
    assert [d["resource"]["project"] for d in detail][:3] == [
        "(total)", "(used_now)", "(used_max)"]
    assert api("GET", C + "/os-hosts/host1/reboot", who="admin").status_code == 501
    assert api("GET", C + "/os-hosts/nohost", who="admin").status_code == 404
    usage = api("GET", C + "/os-simple-tenant-usage?detailed=1", who="admin").json
    [entry] = usage["tenant_usages"]
    assert entry["tenant_id"] == "demo" and entry["server_usages"][0]["instance_id"] == uuid
    own = api("GET", C + "/os-simple-tenant-usage/demo").json["tenant_usage"]
    assert own["total_hours"] >= 0
    assert api("GET", C + "/os-simple-tenant-usage").status_code == 403
    assert api("GET", C + "/os-simple-tenant-usage?start=yesterday",
               who="admin").status_code == 400
    log = api("GET", C + "/os-instance_usage_audit_log", who="admin").json
    assert log["instance_usage_audit_logs"]["num_hosts"] == 2
    services = api("GET", C + "/os-services?binary=nova-compute", who="admin",
                   version="2.53").json["services"]
    assert {s["binary"] for s in services} == {"nova-compute"} and len(services) == 2
    assert all(len(s["id"]) == 36 and s["forced_down"] is False for s in services)
    found = api("GET", C + "/os-hypervisors/host/search", who="admin").json["hypervisors"]
    assert len(found) == 2
    with_servers = api("GET", C + "/os-hypervisors/host/servers", who="admin").json
    assert uuid in [s["uuid"] for h in with_servers["hypervisors"]
                    for s in h.get("servers", [])]
    node = found[0]["id"]
    uptime = api("GET", C + "/os-hypervisors/%s/uptime" % node, who="admin").json
    assert " up " in uptime["hypervisor"]["uptime"]
    shown = api("GET", C + "/os-hypervisors/%s" % node, who="admin", version="2.88").json
    assert " up " in shown["hypervisor"]["uptime"]
    info = api("GET", C + "/os-hypervisors/%s" % node, who="admin", version="2.28").json
    assert isinstance(info["hypervisor"]["cpu_info"], dict)


def test_images_proxy_and_limits(api):
    images = api("GET", C + "/images/detail").json["images"]
    assert [i["id"] for i in images] == [IMAGE_ID]
    assert images[0]["status"] == "ACTIVE" and images[0]["metadata"] == {"os_distro": "cirros"}
    r = api("PUT", C + "/images/%s/metadata/os_version" % IMAGE_ID,
            json={"meta": {"os_version": "1"}})
    assert r.status_code == 200
    assert api("GET", C + "/images/%s/metadata" % IMAGE_ID).json["metadata"] == {
        "os_distro": "cirros", "os_version": "1"}
    assert api("GET", C + "/images", version="2.36").status_code == 404
    limits = api("GET", C + "/limits").json["limits"]["absolute"]
    assert limits["maxSecurityGroupRules"] == 0
    assert "maxSecurityGroupRules" not in api("GET", C + "/limits", version="2.36").json[
        "limits"]["absolute"]
    assert api("GET", C + "/extensions").json["extensions"]
    assert api("GET", "/compute", who="admin").json["versions"][0]["id"] == "v2.0"

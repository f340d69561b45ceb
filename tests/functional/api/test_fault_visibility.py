"""What a server's owner reads about a failure: never a traceback or a host
name, at any microversion; administrators read everything.

A real build fails on both hosts of an in-process cloud (the fake driver
raises errors naming the host and an address, as libvirt's do); then the
server, its faults and its instance actions are read through the API.
"""

from __future__ import annotations

import falcon.testing
import pytest

from api.app import create_app
from compute.virt.fake import FakeDriver
from flotilla import exception
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import identity as identity_db
from tests.fixtures.scheduling import SchedulingCloud

C = "/compute/v2.1"
SECRETS = ("host1", "host2", "10.9.8.7", "Traceback")


@pytest.fixture
def failed_server(conf, tmp_path):
    conf.set_override("compute_driver", "fake", group="compute")
    conf.set_override("scrypt_n", 1024, group="identity")
    conf.set_override("max_attempts", 2, group="scheduler")
    cloud = SchedulingCloud(conf, ["host1", "host2"], lambda host: FakeDriver())
    try:
        yield _fail_a_build(cloud, conf)
    finally:
        cloud.stop()


def _fail_a_build(cloud, conf):
    for host, driver in cloud.drivers.items():
        driver.inject_spawn_failure(exc=exception.InstanceDeployFailure(
            instance_uuid="x", reason="qemu on %s: cannot open 10.9.8.7" % host))
    client = falcon.testing.TestClient(create_app(conf, cloud.transport))
    tokens = {}
    for user, project, role in (("alice", "demo", "member"), ("root", "admin", "admin")):
        identity_db.project_create(project, project_id=project)
        row = identity_db.user_create(user, "pw-" + user, scrypt_n=1024)
        identity_db.role_add(user, project, role)
        tokens[user], _ = identity_db.token_issue(
            row.id, project, identity_db.roles_for(row.id, project), 3600)
    db.flavor_create({"flavorid": "1", "name": "tiny", "memory_mb": 64, "vcpus": 1,
                      "root_gb": 1})
    from flotilla.db import images as images_db
    images_db.image_create({"id": "11111111-2222-4333-8444-555555555555", "name": "img",
                            "status": "active", "disk_format": "qcow2",
                            "container_format": "bare", "visibility": "public",
                            "checksum": "0" * 64, "size": 1024, "owner": "admin"})

    def request(method, path, who="alice", version="2.1", **kw):
        headers = {"X-Auth-Token": tokens[who], "OpenStack-API-Version": "compute " + version}
        return client.simulate_request(method, C + path, headers=headers, **kw)

    resp = request("POST", "/servers", json={"server": {
        "name": "doomed", "flavorRef": "1", "networks": "none",
        "imageRef": "11111111-2222-4333-8444-555555555555"}})
    assert resp.status_code == 202, resp.text
    uuid = resp.json["server"]["id"]
    cloud.wait_for(uuid, lambda i: i["vm_state"] == st.ERROR, timeout=30)
    return request, uuid


@pytest.mark.parametrize("version", ["2.1", "2.21", "2.51", "2.62", "2.84", "2.100"])
def test_the_owner_never_reads_a_host_or_a_traceback(failed_server, version):
    request, uuid = failed_server
    server = request("GET", "/servers/" + uuid, version=version).json["server"]
    assert server["status"] == "ERROR"
    assert "No valid host was found" in server["fault"]["message"]
    assert "details" not in server["fault"]
    actions = request("GET", "/servers/%s/os-instance-actions" % uuid,
                      version=version).json["instanceActions"]
    text = str(server) + str(actions)
    for action in actions:
        detail = request("GET", "/servers/%s/os-instance-actions/%s"
                         % (uuid, action["request_id"]), version=version).json
        events = detail["instanceAction"]["events"]
        assert events and all("traceback" not in e and "host" not in e for e in events)
        text += str(detail)
    for secret in SECRETS:
        assert secret not in text, secret


def test_administrators_read_the_details(failed_server):
    request, uuid = failed_server
    server = request("GET", "/servers/" + uuid, who="root", version="2.84").json["server"]
    assert "details" in server["fault"]
    [action] = request("GET", "/servers/%s/os-instance-actions" % uuid, who="root",
                       version="2.84").json["instanceActions"]
    events = request("GET", "/servers/%s/os-instance-actions/%s" % (uuid, action["request_id"]),
                     who="root", version="2.84").json["instanceAction"]["events"]
    failed = [e for e in events if e["result"] == "Error"]
    assert {e["host"] for e in failed} >= {"host1", "host2"}
    assert any("10.9.8.7" in (e["traceback"] or "") for e in failed)

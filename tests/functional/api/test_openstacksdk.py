"""The unmodified openstacksdk against flotilla in one process.

The API's real server (waitress) on a loopback port serves the API; the conductor,
scheduler and two compute agents (fake driver) run on memory://. The SDK
authenticates with a password against /identity/v3, uploads an image,
creates a server, waits for ACTIVE, stops, starts, reboots and deletes it.
"""

from __future__ import annotations

import openstack
import pytest

from api.app import create_app
from api.wsgi_server import WSGIService
from compute.virt.fake import FakeDriver
from flotilla.db import api as db
from flotilla.db import identity as identity_db
from tests.fixtures.scheduling import SchedulingCloud


@pytest.fixture
def sdk_cloud(conf, tmp_path):
    conf.set_override("compute_driver", "fake", group="compute")
    conf.set_override("store_path", str(tmp_path / "images"), group="image")
    conf.set_override("scrypt_n", 1024, group="identity")
    cloud = SchedulingCloud(conf, ["host1", "host2"], lambda host: FakeDriver())
    server = WSGIService(create_app(conf, cloud.transport), "127.0.0.1", 0, threads=8)
    server.start()
    identity_db.project_create("demo")
    identity_db.user_create("alice", "alice-password", "demo", scrypt_n=1024)
    identity_db.role_add("alice", "demo", "member")
    db.flavor_create({"flavorid": "1", "name": "tiny", "memory_mb": 64, "vcpus": 1,
                      "root_gb": 1})
    try:
        yield "http://127.0.0.1:%d" % server.port
    finally:
        server.stop()
        cloud.stop()


def _connect(endpoint: str):
    """The unmodified SDK, password auth against /identity/v3, as alice."""
    return openstack.connect(
        auth_url=endpoint + "/identity/v3", username="alice",
        password="alice-password", project_name="demo",
        user_domain_name="Default", project_domain_name="Default",
        region_name="RegionOne", identity_api_version="3")


def test_server_lifecycle_with_openstacksdk(sdk_cloud):
    conn = _connect(sdk_cloud)
    image = conn.image.create_image(name="tiny", data=b"\0" * 4096,
                                    disk_format="raw", container_format="bare")
    assert image.status == "active" or conn.image.wait_for_status(image, "active")
    server = conn.compute.create_server(name="vm1", image_id=image.id, flavor_id="1",
                                        networks="none")
    server = conn.compute.wait_for_server(server, status="ACTIVE", wait=60)
    assert server.flavor.original_name == "tiny"
    assert [s.name for s in conn.compute.servers()] == ["vm1"]
    conn.compute.stop_server(server)
    conn.compute.wait_for_server(server, status="SHUTOFF", wait=60)
    conn.compute.start_server(server)
    conn.compute.wait_for_server(server, status="ACTIVE", wait=60)
    conn.compute.reboot_server(server, "SOFT")
    conn.compute.wait_for_server(server, status="ACTIVE", wait=60)
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=60)
    assert list(conn.compute.servers()) == []


def test_server_groups_through_the_api(sdk_cloud):
    """Anti-affinity spreads the group's servers; a third one has no host."""
    conn = _connect(sdk_cloud)
    image = conn.image.create_image(name="tiny", data=b"\0" * 4096,
                                    disk_format="raw", container_format="bare")
    group = conn.compute.create_server_group(name="spread", policy="anti-affinity")
    servers = [conn.compute.create_server(
        name="g%d" % i, image_id=image.id, flavor_id="1", networks="none",
        scheduler_hints={"group": group.id}) for i in range(2)]
    servers = [conn.compute.wait_for_server(s, status="ACTIVE", wait=60) for s in servers]
    hosts = {db.instance_get(s.id).host for s in servers}
    assert hosts == {"host1", "host2"}
    third = conn.compute.create_server(name="g3", image_id=image.id, flavor_id="1",
                                       networks="none", scheduler_hints={"group": group.id})
    third = conn.compute.wait_for_server(third, status="ERROR", failures=[], wait=60)
    assert "anti-affinity" in third.fault["message"].lower() \
        or "no valid host" in third.fault["message"].lower()
    for server in servers + [third]:
        conn.compute.delete_server(server)
    for server in servers + [third]:
        conn.compute.wait_for_delete(server, wait=60)

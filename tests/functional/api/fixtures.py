"""An API on memory:// with recording conductor and compute endpoints.

The API's casts are received by recording endpoints shaped from the real
ConductorManager and ComputeManager (conductor topic and compute.host1), so
tests see exactly what reached the bus without the scheduler or agents, and
anything the real services would refuse fails here too. Principals: admin, reader and member of project p1, a
member of project p2, plus bad and expired tokens.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid

import falcon.testing
import pytest

from api.app import create_app
from compute.manager import ComputeManager
from conductor.manager import ConductorManager
from flotilla import rpc
from flotilla.db import api as db
from flotilla.db import identity as identity_db
from flotilla.db import images as images_db
from flotilla.db import schema
from tests.fixtures.recording_endpoint import recording_endpoint

C = "/compute/v2.1"
IMAGE_ID = "11111111-2222-4333-8444-555555555555"


def seed_identities_flavor_image() -> dict[str, str]:
    """Projects p1, p2, admin; users admin, reader, member (of p1) and other
    (member of p2); flavor "1" (tiny); the public image IMAGE_ID. Returns a
    token per user, plus "expired" and "bad" ones."""
    for name in ("p1", "p2", "admin"):
        identity_db.project_create(name, project_id=name)
    tokens = {}
    for user, project, role in (("admin", "admin", "admin"),
                                ("reader", "p1", "reader"),
                                ("member", "p1", "member"),
                                ("other", "p2", "member")):
        row = identity_db.user_create(user, "secret-" + user, scrypt_n=1024)
        identity_db.role_add(user, project, role)
        token, _ = identity_db.token_issue(
            row.id, project, identity_db.roles_for(row.id, project), 3600)
        tokens[user] = token
    expired, _ = identity_db.token_issue(
        identity_db.user_get("member").id, "p1", ["member", "reader"], -10)
    tokens["expired"] = expired
    tokens["bad"] = "not-a-token-" + uuid.uuid4().hex
    db.flavor_create({"flavorid": "1", "name": "tiny", "memory_mb": 64,
                      "vcpus": 1, "root_gb": 1})
    images_db.image_create({"id": IMAGE_ID, "name": "cirros", "status": "active",
                            "disk_format": "qcow2", "container_format": "bare",
                            "visibility": "public", "checksum": "0" * 64,
                            "size": 1024, "owner": "p1"})
    return tokens


# A migrated and seeded SQLite database, made once per process and copied
# for each cloud (migrating and seeding every time made the auth matrix
# slow); the raw tokens go with it (only their hashes are in the database).
_TEMPLATE: dict = {}


def _seeded_copy(conf) -> dict[str, str]:
    """Put a copy of the seeded database where ``conf`` looks for it (an
    SQLite file under state_path); its tokens."""
    target = os.path.join(conf.state_path, "flotilla.sqlite")
    # Its tokens live an hour: a template older than half that is remade.
    if not _TEMPLATE or time.monotonic() - _TEMPLATE["made"] > 1800:
        directory = tempfile.mkdtemp(prefix="flotilla-api-template-")
        path = os.path.join(directory, "flotilla.sqlite")
        original = conf.state_path
        conf.set_override("state_path", directory)
        db.configure(conf)
        schema.db_sync(conf)
        tokens = seed_identities_flavor_image()
        db.dispose()
        conf.set_override("state_path", original)
        _TEMPLATE.update(path=path, tokens=tokens, made=time.monotonic())
    os.makedirs(conf.state_path, exist_ok=True)
    shutil.copyfile(_TEMPLATE["path"], target)
    return dict(_TEMPLATE["tokens"])


class APICloud:
    def __init__(self, conf) -> None:
        conf.set_override("transport_url", "memory://")
        conf.set_override("scrypt_n", 1024, group="identity")
        self.conf = conf
        if conf.database.connection:
            db.configure(conf)
            schema.db_sync(conf)
            tokens = seed_identities_flavor_image()
        else:
            tokens = _seeded_copy(conf)
            db.configure(conf)
        self.transport = rpc.get_transport(conf)
        self.conductor = recording_endpoint(ConductorManager)
        self.compute = recording_endpoint(ComputeManager, results={
            "get_console_output": lambda kw: "console of %s" % kw["instance_uuid"],
            "get_diagnostics": lambda kw: {
                "state": "running", "cpu_time_ns": 5, "memory_kb": 65536, "vcpus": 1,
                "disks": {"vda": {"read_bytes": 1, "read_requests": 2, "write_bytes": 3,
                                  "write_requests": 4, "errors": 0}},
                "interfaces": {}, "memory": {"rss": 2048}},
            "reserve_volume_device": lambda kw: "vdb",
            "get_host_uptime": lambda kw: " 10:00:00 up 1 day,  2:03,  1 user,  "
                                          "load average: 0.10, 0.20, 0.30"})
        self._servers = []
        for topic, server, endpoint in (("conductor", None, self.conductor),
                                        ("compute", "host1", self.compute)):
            srv = rpc.RPCServer(self.transport, topic, server, [endpoint])
            srv.start()
            self._servers.append(srv)
        self.app = create_app(conf, self.transport)
        self.client = falcon.testing.TestClient(self.app)
        self.tokens = tokens
        db.compute_node_update("host1", {"vcpus": 8, "memory_mb": 8192,
                                         "disk_gb": 100, "availability_zone": "nova"})
        db.service_heartbeat("host1", "flotilla-compute", "compute")
        self.tokens["none"] = None

    def headers(self, who: str = "member", version: str | None = None) -> dict:
        headers = {}
        if self.tokens.get(who):
            headers["X-Auth-Token"] = self.tokens[who]
        if version:
            headers["OpenStack-API-Version"] = "compute " + version
        return headers

    def request(self, method: str, path: str, who: str = "member",
                version: str | None = None, **kwargs):
        headers = dict(self.headers(who, version), **kwargs.pop("headers", {}))
        return self.client.simulate_request(method, path, headers=headers, **kwargs)

    def create_server(self, who: str = "member", **spec):
        server = {"name": "vm", "flavorRef": "1", "imageRef": IMAGE_ID,
                  "networks": "none"}
        server.update(spec)
        resp = self.request("POST", C + "/servers", who, json={"server": server})
        assert resp.status_code == 202, resp.text
        return resp.json["server"]["id"]

    def stop(self) -> None:
        for srv in self._servers:
            srv.stop()
            srv.wait(timeout=5)
        self.transport.cleanup()
        db.dispose()


@pytest.fixture
def api_cloud(conf):
    cloud = APICloud(conf)
    yield cloud
    cloud.stop()

"""The auth matrix: every route against every kind of caller.

Callers: no token, a bad token, an expired token, a reader of project p1, a
member of p1 (the owner of the resources), a member of p2 and an admin.
Expected per route kind:

* public: never 401;
* project routes (reader/member rule): 401 without a valid token; a reader
  is refused (403) what needs member; another project's member gets 404 for
  p1's resources and its own (empty) view for collections;
* admin routes: 403 to everyone but the admin;
* key pairs (a user's own): any valid caller may list and create its own;
  another user's key pair is a 404 (it looks among its own);
* a project's quotas: another project's member is refused (403).
"""

from __future__ import annotations

import pytest

from api import policy
from flotilla import crypto
from flotilla import states as st
from flotilla.db import api as db
from flotilla.db import identity as identity_db
from flotilla.db import keypairs as keypairs_db
from tests.functional.api.fixtures import C

CALLERS = ("none", "bad", "expired", "reader", "member", "other", "admin")


def _server(cloud):
    uuid = cloud.create_server()
    db.instance_update(uuid, {"vm_state": st.ACTIVE, "task_state": None, "host": "host1"})
    return {"server_id": uuid,
            "request_id": db.action_get_all(uuid)[0].request_id}


def _volume(status: str) -> str:
    from flotilla.db import volumes as vdb
    return vdb.volume_create({"size_gb": 1, "status": status, "project_id": "p1",
                              "host": "vol1"}, {"volumes": -1, "gigabytes": -1}).id


def _server_volume(cloud):
    return dict(_server(cloud), _body={"volumeAttachment": {
        "volumeId": _volume(st.VOLUME_AVAILABLE)}})


def _server_attached(cloud):
    from flotilla.db import volumes as vdb
    values = _server(cloud)
    volume_id = _volume(st.VOLUME_IN_USE)
    att = vdb.attachment_create(volume_id, values["server_id"], "host1")
    vdb.attachment_update(att.uuid, {"status": "attached", "device": "vdb"})
    return dict(values, volume_id=volume_id)


def _server_attached_update(cloud):
    values = _server_attached(cloud)
    return dict(values, _version="2.85", _body={"volumeAttachment": {
        "volumeId": values["volume_id"], "delete_on_termination": True}})
def _server_259(cloud):
    return {"server_id": _server(cloud)["server_id"], "_version": "2.59"}


def _migrating_server(cloud):
    from flotilla.db import migration_records
    uuid = _server(cloud)["server_id"]
    migration = migration_records.migration_create(uuid, "host1", "host2",
                                                   "live-migration", status="running")
    return {"server_id": uuid, "migration_id": migration.id, "_version": "2.59"}


def _group(cloud):
    group = db.server_group_create({"name": "g", "policy": "affinity",
                                    "project_id": "p1", "user_id": "member"})
    return {"group_id": group.uuid}


def _server_meta(cloud):
    values = _server(cloud)
    db.instance_update(values["server_id"], {"metadata": {"k": "v"}})
    return dict(values, key="k")


def _server_226(cloud):
    return dict(_server(cloud), _version="2.26")


def _server_tag(cloud):
    values = _server_226(cloud)
    db.instance_update(values["server_id"], {"tags": ["t"]})
    return dict(values, tag="t")


def _server_net(cloud):
    return dict(_server(cloud), network="private")


def _aggregate(cloud):
    from flotilla.db import aggregates as agg_db
    row, _ = agg_db.aggregate_create("a1")
    return {"aggregate_id": str(row.id)}


def _flavor_spec(cloud):
    db.flavor_update("1", {"extra_specs": {"k": "v"}})
    return {"flavor_id": "1", "key": "k"}


def _server_event(cloud):
    values = _server(cloud)
    return {"_body": {"events": [{"name": "network-changed",
                                  "server_uuid": values["server_id"]}]}}


def _host(cloud):
    db.service_heartbeat("host1", "flotilla-compute", "compute")
    return {"host": "host1"}


def _image(cloud):
    """A public image owned by the admin's project: only the admin may
    change it (the image API's rule)."""
    import uuid

    from flotilla.db import images as images_db
    image = images_db.image_create({
        "id": str(uuid.uuid4()), "name": "proxy", "status": "active", "visibility": "public",
        "owner": identity_db.project_get("admin").id, "properties": {"k": "v"}})
    return {"image_id": image.id}


def _image_meta(cloud):
    return dict(_image(cloud), key="k")


def _project(cloud):
    return {"project_id": identity_db.project_get("p1").id}


def _user(cloud):
    return {"user_id": identity_db.user_get("admin").id}


def _assignment(cloud):
    return dict(_project(cloud), user_id=identity_db.user_get("reader").id,
                role_id="reader")


def _system_assignment(cloud):
    identity_db.system_role_add("reader", "reader")
    return {"user_id": identity_db.user_get("reader").id, "role_id": "reader"}


I3 = "/identity/v3"
# Identity administration: any valid token reaches the handler, which
# lets admins (and for reads system readers) through: 403 for the others.
IDENTITY_ROUTES = [
    ("GET", I3 + "/domains", None, None, "identity-admin"),
    ("POST", I3 + "/domains", None, {"domain": {"name": "d"}}, "identity-admin-403"),
    ("GET", I3 + "/domains/{domain_id}", lambda c: {"domain_id": "default"}, None,
     "token"),
    ("GET", I3 + "/projects", None, None, "identity-admin"),
    ("POST", I3 + "/projects", None, {"project": {"name": "p9"}}, "identity-admin"),
    ("GET", I3 + "/projects/{project_id}", _project, None, "identity-admin-or-own"),
    ("PATCH", I3 + "/projects/{project_id}", _project,
     {"project": {"description": "x"}}, "identity-admin"),
    ("DELETE", I3 + "/projects/{project_id}", _project, None, "identity-admin"),
    ("GET", I3 + "/users", None, None, "identity-admin"),
    ("POST", I3 + "/users", None, {"user": {"name": "u9", "password": "x"}},
     "identity-admin"),
    ("GET", I3 + "/users/{user_id}", _user, None, "identity-admin"),
    ("PATCH", I3 + "/users/{user_id}", _user, {"user": {"email": "a@b.c"}},
     "identity-admin"),
    ("DELETE", I3 + "/users/{user_id}", _user, None, "identity-admin"),
    ("POST", I3 + "/users/{user_id}/password", _user, {"user": {}}, "public"),
    ("GET", I3 + "/users/{user_id}/projects", _user, None, "identity-admin"),
    ("GET", I3 + "/roles", None, None, "identity-admin"),
    ("POST", I3 + "/roles", None, {"role": {"name": "member"}}, "identity-admin-409"),
    ("GET", I3 + "/roles/{role_id}", lambda c: {"role_id": "member"}, None,
     "identity-admin"),
    ("GET", I3 + "/projects/{project_id}/users/{user_id}/roles", _assignment, None,
     "identity-admin"),
    ("PUT", I3 + "/projects/{project_id}/users/{user_id}/roles/{role_id}", _assignment,
     None, "identity-admin"),
    ("HEAD", I3 + "/projects/{project_id}/users/{user_id}/roles/{role_id}", _assignment,
     None, "identity-admin"),
    ("GET", I3 + "/projects/{project_id}/users/{user_id}/roles/{role_id}", _assignment,
     None, "identity-admin"),
    ("DELETE", I3 + "/projects/{project_id}/users/{user_id}/roles/{role_id}",
     _assignment, None, "identity-admin"),
    ("GET", I3 + "/system/users/{user_id}/roles", _system_assignment, None,
     "identity-admin"),
    ("PUT", I3 + "/system/users/{user_id}/roles/{role_id}", _system_assignment, None,
     "identity-admin"),
    ("HEAD", I3 + "/system/users/{user_id}/roles/{role_id}", _system_assignment, None,
     "identity-admin"),
    ("GET", I3 + "/system/users/{user_id}/roles/{role_id}", _system_assignment, None,
     "identity-admin"),
    ("DELETE", I3 + "/system/users/{user_id}/roles/{role_id}", _system_assignment, None,
     "identity-admin"),
    ("GET", I3 + "/role_assignments", None, None, "identity-admin"),
]


def _node(cloud):
    return {"hypervisor_id": str(db.compute_node_get("host1").id)}


PUBLIC_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMbIi5qUPHRmi/HPvi6LJCyT2H0hLB7Q6k"
              "BddAoGeAIy matrix@test")


def _keypair(cloud):
    """A key pair of the user "member" (of p1)."""
    keypairs_db.key_pair_create(identity_db.user_get("member").id, "k1", PUBLIC_KEY,
                                crypto.ssh_fingerprint(PUBLIC_KEY), "ssh",
                                lambda session: {"key_pairs": -1})
    return {"keypair_name": "k1"}


def _private_flavor(cloud) -> dict:
    db.flavor_create({"flavorid": "priv", "name": "private", "memory_mb": 64,
                      "vcpus": 1, "root_gb": 1, "is_public": False})
    return {"flavor_id": "priv"}


SERVER_BODY = {"server": {"name": "x", "flavorRef": "1",
                          "imageRef": "11111111-2222-4333-8444-555555555555"}}

# (method, template, setup, body, kind) where kind is how the rule plays:
# public, own (a p1 resource), collection (per-project view), admin, token.
ROUTES = [
    ("GET", "/", None, None, "public"),
    ("GET", "/compute", None, None, "public"),
    ("GET", C, None, None, "public"),
    ("GET", C + "/openapi.json", None, None, "public"),
    ("GET", "/identity", None, None, "public"),
    ("GET", "/identity/v3", None, None, "public"),
    ("GET", "/image", None, None, "public"),
    ("GET", "/image/versions", None, None, "public"),
    ("POST", "/identity/v3/auth/tokens", None, {"auth": {}}, "public"),
    ("GET", "/identity/v3/auth/tokens", None, None, "token"),
    ("HEAD", "/identity/v3/auth/tokens", None, None, "token"),
    ("DELETE", "/identity/v3/auth/tokens", None, None, "token"),
    ("GET", "/identity/v3/auth/catalog", None, None, "token"),
    ("GET", "/identity/v3/auth/projects", None, None, "token"),
    ("GET", C + "/servers", None, None, "collection"),
    ("GET", C + "/servers/detail", None, None, "collection"),
    ("POST", C + "/servers", None, SERVER_BODY, "collection-write"),
    ("GET", C + "/servers/{server_id}", _server, None, "own"),
    ("PUT", C + "/servers/{server_id}", _server, {"server": {"name": "y"}}, "own-write"),
    ("DELETE", C + "/servers/{server_id}", _server, None, "own-write"),
    ("POST", C + "/servers/{server_id}/action", _server, {"os-stop": None}, "own-write"),
    ("GET", C + "/servers/{server_id}/os-instance-actions", _server, None, "own"),
    ("GET", C + "/servers/{server_id}/os-volume_attachments", _server, None, "own"),
    ("POST", C + "/servers/{server_id}/os-volume_attachments", _server_volume, None,
     "own-write"),
    ("GET", C + "/servers/{server_id}/os-volume_attachments/{volume_id}", _server_attached,
     None, "own"),
    ("DELETE", C + "/servers/{server_id}/os-volume_attachments/{volume_id}",
     _server_attached, None, "own-write"),
    ("PUT", C + "/servers/{server_id}/os-volume_attachments/{volume_id}",
     _server_attached_update, None, "own-write"),
    ("GET", C + "/servers/{server_id}/os-instance-actions/{request_id}", _server, None,
     "own"),
    ("GET", C + "/flavors", None, None, "collection"),
    ("GET", C + "/flavors/detail", None, None, "collection"),
    ("GET", C + "/flavors/{flavor_id}", lambda c: {"flavor_id": "1"}, None, "collection"),
    ("GET", C + "/flavors/{flavor_id}/os-extra_specs", lambda c: {"flavor_id": "1"}, None,
     "collection"),
    ("POST", C + "/flavors", None,
     {"flavor": {"name": "f", "ram": 64, "vcpus": 1, "disk": 1}}, "admin"),
    ("DELETE", C + "/flavors/{flavor_id}", lambda c: {"flavor_id": "1"}, None, "admin"),
    ("GET", C + "/flavors/{flavor_id}/os-flavor-access", _private_flavor, None, "admin"),
    ("POST", C + "/flavors/{flavor_id}/action", _private_flavor,
     {"addTenantAccess": {"tenant": "p2"}}, "admin"),
    ("GET", C + "/os-server-groups", None, None, "collection"),
    ("POST", C + "/os-server-groups", None,
     {"server_group": {"name": "g", "policies": ["affinity"]}}, "collection-write"),
    ("GET", C + "/os-server-groups/{group_id}", _group, None, "own"),
    ("DELETE", C + "/os-server-groups/{group_id}", _group, None, "own-write"),
    ("GET", C + "/os-availability-zone", None, None, "collection"),
    ("GET", C + "/os-availability-zone/detail", None, None, "admin"),
    ("GET", C + "/limits", None, None, "collection"),
    ("GET", C + "/os-keypairs", None, None, "user"),
    ("POST", C + "/os-keypairs", None,
     {"keypair": {"name": "k2", "public_key": PUBLIC_KEY}}, "user"),
    ("GET", C + "/os-keypairs/{keypair_name}", _keypair, None, "user-own"),
    ("DELETE", C + "/os-keypairs/{keypair_name}", _keypair, None, "user-own"),
    ("GET", C + "/os-quota-sets/{project_id}", lambda c: {"project_id": "p1"}, None,
     "project"),
    ("GET", C + "/os-quota-sets/{project_id}/detail", lambda c: {"project_id": "p1"},
     None, "project"),
    ("GET", C + "/os-quota-sets/{project_id}/defaults", lambda c: {"project_id": "p1"},
     None, "collection"),
    ("PUT", C + "/os-quota-sets/{project_id}", lambda c: {"project_id": "p1"},
     {"quota_set": {"instances": 20}}, "admin"),
    ("DELETE", C + "/os-quota-sets/{project_id}", lambda c: {"project_id": "p1"}, None,
     "admin"),
    ("GET", C + "/os-quota-class-sets/{class_name}", lambda c: {"class_name": "default"},
     None, "admin"),
    ("PUT", C + "/os-quota-class-sets/{class_name}", lambda c: {"class_name": "default"},
     {"quota_class_set": {"instances": 20}}, "admin"),
    ("GET", C + "/servers/{server_id}/migrations", _server_259, None, "admin"),
    ("GET", C + "/servers/{server_id}/migrations/{migration_id}", _migrating_server, None,
     "admin"),
    ("DELETE", C + "/servers/{server_id}/migrations/{migration_id}", _migrating_server,
     None, "admin"),
    ("POST", C + "/servers/{server_id}/migrations/{migration_id}/action", _migrating_server,
     {"force_complete": None}, "admin"),
    ("GET", C + "/os-migrations", None, None, "admin"),
    ("GET", C + "/os-hypervisors", None, None, "admin"),
    ("GET", C + "/os-hypervisors/detail", None, None, "admin"),
    ("GET", C + "/os-hypervisors/statistics", None, None, "admin"),
    ("GET", C + "/os-hypervisors/{hypervisor_id}", _node, None, "admin"),
    ("GET", C + "/os-services", None, None, "admin"),
    ("PUT", C + "/os-services/{action}", lambda c: {"action": "disable"},
     {"host": "host1", "binary": "flotilla-compute"}, "admin"),
    ("GET", "/compute/v2", None, None, "public"),
    # a server's sub-resources
    ("GET", C + "/servers/{server_id}/metadata", _server, None, "own"),
    ("POST", C + "/servers/{server_id}/metadata", _server, {"metadata": {"a": "b"}},
     "own-write"),
    ("PUT", C + "/servers/{server_id}/metadata", _server, {"metadata": {"a": "b"}},
     "own-write"),
    ("GET", C + "/servers/{server_id}/metadata/{key}", _server_meta, None, "own"),
    ("PUT", C + "/servers/{server_id}/metadata/{key}", _server_meta,
     {"meta": {"k": "w"}}, "own-write"),
    ("DELETE", C + "/servers/{server_id}/metadata/{key}", _server_meta, None,
     "own-write"),
    ("GET", C + "/servers/{server_id}/tags", _server_226, None, "own"),
    ("PUT", C + "/servers/{server_id}/tags", _server_226, {"tags": ["a"]}, "own-write"),
    ("DELETE", C + "/servers/{server_id}/tags", _server_226, None, "own-write"),
    ("GET", C + "/servers/{server_id}/tags/{tag}", _server_tag, None, "own"),
    ("PUT", C + "/servers/{server_id}/tags/{tag}", _server_tag, None, "own-write"),
    ("DELETE", C + "/servers/{server_id}/tags/{tag}", _server_tag, None, "own-write"),
    ("GET", C + "/servers/{server_id}/ips", _server, None, "own"),
    ("GET", C + "/servers/{server_id}/ips/{network}", _server_net, None, "own-404"),
    ("GET", C + "/servers/{server_id}/diagnostics", _server, None, "admin-reach"),
    ("GET", C + "/servers/{server_id}/os-server-password", _server, None, "own"),
    ("DELETE", C + "/servers/{server_id}/os-server-password", _server, None,
     "own-write"),
    # host aggregates
    ("GET", C + "/os-aggregates", None, None, "admin"),
    ("POST", C + "/os-aggregates", None, {"aggregate": {"name": "a2"}}, "admin"),
    ("GET", C + "/os-aggregates/{aggregate_id}", _aggregate, None, "admin"),
    ("PUT", C + "/os-aggregates/{aggregate_id}", _aggregate,
     {"aggregate": {"name": "a3"}}, "admin"),
    ("DELETE", C + "/os-aggregates/{aggregate_id}", _aggregate, None, "admin"),
    ("POST", C + "/os-aggregates/{aggregate_id}/action", _aggregate,
     {"add_host": {"host": "host1"}}, "admin"),
    ("GET", C + "/os-hypervisors/{hypervisor_id}/uptime", _node, None, "admin-reach"),
    ("GET", C + "/os-hypervisors/{hypervisor_id}/search", lambda c: {"hypervisor_id": "host"}, None,
     "admin"),
    ("GET", C + "/os-hypervisors/{hypervisor_id}/servers", lambda c: {"hypervisor_id": "host"}, None,
     "admin"),
    ("GET", C + "/os-hosts", None, None, "admin"),
    ("GET", C + "/os-hosts/{host}", _host, None, "admin"),
    ("PUT", C + "/os-hosts/{host}", _host, {"status": "enable"}, "admin"),
    ("GET", C + "/os-hosts/{host}/startup", _host, None, "admin-reach"),
    ("GET", C + "/os-hosts/{host}/shutdown", _host, None, "admin-reach"),
    ("GET", C + "/os-hosts/{host}/reboot", _host, None, "admin-reach"),
    ("GET", C + "/os-simple-tenant-usage", None, None, "admin"),
    ("GET", C + "/os-simple-tenant-usage/{tenant_id}", lambda c: {"tenant_id": "p1"},
     None, "project"),
    ("GET", C + "/os-instance_usage_audit_log", None, None, "admin"),
    ("GET", C + "/os-instance_usage_audit_log/{before_timestamp}",
     lambda c: {"before_timestamp": "2026-01-01 00:00:00"}, None, "admin"),
    ("GET", C + "/extensions", None, None, "collection"),
    ("GET", C + "/extensions/{alias}", lambda c: {"alias": "os-hosts"}, None,
     "collection"),
    ("GET", C + "/images", None, None, "collection"),
    ("GET", C + "/images/detail", None, None, "collection"),
    ("GET", C + "/images/{image_id}", _image, None, "collection"),
    ("DELETE", C + "/images/{image_id}", _image, None, "image-write"),
    ("GET", C + "/images/{image_id}/metadata", _image, None, "collection"),
    ("POST", C + "/images/{image_id}/metadata", _image, {"metadata": {"a": "b"}},
     "image-write"),
    ("PUT", C + "/images/{image_id}/metadata", _image, {"metadata": {"a": "b"}},
     "image-write"),
    ("GET", C + "/images/{image_id}/metadata/{key}", _image_meta, None, "collection"),
    ("PUT", C + "/images/{image_id}/metadata/{key}", _image_meta, {"meta": {"k": "w"}},
     "image-write"),
    ("DELETE", C + "/images/{image_id}/metadata/{key}", _image_meta, None,
     "image-write"),
    ("GET", C + "/os-networks", None, None, "collection"),
    ("GET", C + "/os-networks/{network_id}", lambda c: {"network_id": "n"}, None,
     "own-404"),
    ("POST", C + "/os-server-external-events", _server_event, None, "admin"),
    ("PUT", C + "/flavors/{flavor_id}", lambda c: {"flavor_id": "1", "_version": "2.55"},
     {"flavor": {"description": "d"}}, "admin"),
    ("POST", C + "/flavors/{flavor_id}/os-extra_specs", lambda c: {"flavor_id": "1"},
     {"extra_specs": {"k": "v"}}, "admin"),
    ("GET", C + "/flavors/{flavor_id}/os-extra_specs/{key}", _flavor_spec, None,
     "collection"),
    ("PUT", C + "/flavors/{flavor_id}/os-extra_specs/{key}", _flavor_spec,
     {"k": "w"}, "admin"),
    ("DELETE", C + "/flavors/{flavor_id}/os-extra_specs/{key}", _flavor_spec, None,
     "admin"),
] + IDENTITY_ROUTES


def expected(kind: str, caller: str, method: str, template: str) -> int | str:
    if kind == "public":
        return "not401"
    if caller in ("none", "bad", "expired"):
        return 401
    if kind == "token":
        return "2xx"
    if kind.startswith("identity-admin"):
        if caller != "admin":
            return "2xx" if kind.endswith("-or-own") and caller != "other" else 403
        return {"identity-admin-403": 403, "identity-admin-409": 409}.get(kind, "2xx")
    if kind == "admin-reach":
        return "reached" if caller == "admin" else 403
    if kind == "own-404":
        return 404
    if kind == "image-write":
        return "2xx" if caller == "admin" else 403
    if kind == "admin":
        return "2xx" if caller == "admin" else 403
    if kind == "user-own":
        return "2xx" if caller == "member" else 404
    if kind == "project" and caller == "other":
        return 403
    if caller == "reader" and kind.endswith("-write"):
        return 403
    if caller == "other" and kind.startswith("own"):
        return 404
    return "2xx"


def test_every_route_is_in_the_matrix():
    assert {(m, t) for m, t, *_ in ROUTES} == set(policy.RULES)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("method,template,setup,body,kind", ROUTES,
                         ids=["%s %s" % (r[0], r[1]) for r in ROUTES])
def test_auth_matrix(api_cloud, method, template, setup, body, kind, caller):
    values = setup(api_cloud) if setup else {}
    microversion = values.pop("_version", None)
    body = values.pop("_body", body)
    path = template.format(**values)
    headers = {}
    if microversion:
        headers["OpenStack-API-Version"] = "compute " + microversion
    if kind == "token" and api_cloud.tokens.get(caller):
        headers["X-Subject-Token"] = api_cloud.tokens[caller]
    kwargs = {"json": body} if body is not None else {}
    r = api_cloud.request(method, path, who=caller, headers=headers, **kwargs)
    want = expected(kind, caller, method, template)
    if want == "not401":
        assert r.status_code != 401 and r.status_code < 500, r.text
    elif want == "reached":
        assert r.status_code not in (401, 403, 404), (r.status_code, r.text)
    elif want == "2xx":
        assert 200 <= r.status_code < 300, (r.status_code, r.text)
    else:
        assert r.status_code == want, (r.status_code, r.text)
    if r.status_code >= 400 and method != "HEAD" and path.startswith("/compute"):
        fault = next(iter(r.json.values()))
        assert fault["code"] == r.status_code and fault["message"]

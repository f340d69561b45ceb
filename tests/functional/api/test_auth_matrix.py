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


def _group(cloud):
    group = db.server_group_create({"name": "g", "policy": "affinity",
                                    "project_id": "p1", "user_id": "member"})
    return {"group_id": group.uuid}


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
    ("GET", C + "/os-hypervisors", None, None, "admin"),
    ("GET", C + "/os-hypervisors/detail", None, None, "admin"),
    ("GET", C + "/os-hypervisors/statistics", None, None, "admin"),
    ("GET", C + "/os-hypervisors/{hypervisor_id}", _node, None, "admin"),
    ("GET", C + "/os-services", None, None, "admin"),
    ("PUT", C + "/os-services/{action}", lambda c: {"action": "disable"},
     {"host": "host1", "binary": "flotilla-compute"}, "admin"),
]


def expected(kind: str, caller: str, method: str, template: str) -> int | str:
    if kind == "public":
        return "not401"
    if caller in ("none", "bad", "expired"):
        return 401
    if kind == "token":
        return "2xx"
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
    path = template.format(**values)
    headers = {}
    if kind == "token" and api_cloud.tokens.get(caller):
        headers["X-Subject-Token"] = api_cloud.tokens[caller]
    kwargs = {"json": body} if body is not None else {}
    r = api_cloud.request(method, path, who=caller, headers=headers, **kwargs)
    want = expected(kind, caller, method, template)
    if want == "not401":
        assert r.status_code != 401 and r.status_code < 500, r.text
    elif want == "2xx":
        assert 200 <= r.status_code < 300, (r.status_code, r.text)
    else:
        assert r.status_code == want, (r.status_code, r.text)
    if r.status_code >= 400 and method != "HEAD" and path.startswith("/compute"):
        fault = next(iter(r.json.values()))
        assert fault["code"] == r.status_code and fault["message"]

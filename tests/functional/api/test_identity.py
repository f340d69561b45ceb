"""Keystone v3 subset: discovery, token issue/validate/revoke, catalog."""

from __future__ import annotations

from flotilla.db import identity as identity_db


def _auth(user="member", password="secret-member", project="p1", by_id=False,
          domain=None):
    scope = {"project": {"id": project}} if by_id else \
        {"project": {"name": project, "domain": domain or {"name": "Default"}}}
    return {"auth": {"identity": {"methods": ["password"], "password": {
        "user": {"name": user, "domain": {"name": "Default"}, "password": password}}},
        "scope": scope}}


def test_discovery_is_public(api_cloud):
    r = api_cloud.request("GET", "/identity", who="none")
    assert r.status_code == 300       # Multiple Choices, as Keystone
    assert r.json["versions"]["values"][0]["id"] == "v3.14"
    assert r.json["versions"]["values"][0]["links"][0]["href"].endswith("/identity/v3/")
    r = api_cloud.request("GET", "/identity/v3", who="none")
    assert r.json["version"]["status"] == "stable"


def test_issue_validate_revoke(api_cloud):
    r = api_cloud.request("POST", "/identity/v3/auth/tokens", who="none", json=_auth())
    assert r.status_code == 201, r.text
    token = r.headers["X-Subject-Token"]
    body = r.json["token"]
    assert body["expires_at"].endswith("Z") and body["issued_at"]
    assert body["project"]["name"] == "p1"
    assert {x["name"] for x in body["roles"]} == {"member", "reader"}
    types = {e["type"]: e for e in body["catalog"]}
    assert set(types) == {"compute", "image", "identity", "block-storage"}
    endpoint = types["compute"]["endpoints"][0]
    assert endpoint["interface"] == "public" and endpoint["region_id"] == "RegionOne"
    assert endpoint["url"].endswith("/compute/v2.1")
    assert token not in r.text
    # the token works on the compute API
    r = api_cloud.client.simulate_get("/compute/v2.1/servers",
                                      headers={"X-Auth-Token": token})
    assert r.status_code == 200
    # validate
    r = api_cloud.client.simulate_get("/identity/v3/auth/tokens", headers={
        "X-Auth-Token": token, "X-Subject-Token": token})
    assert r.status_code == 200 and r.json["token"]["user"]["name"] == "member"
    # another user cannot validate it; an admin can
    r = api_cloud.request("GET", "/identity/v3/auth/tokens", who="other",
                          headers={"X-Subject-Token": token})
    assert r.status_code == 403
    r = api_cloud.request("GET", "/identity/v3/auth/tokens", who="admin",
                          headers={"X-Subject-Token": token})
    assert r.status_code == 200
    # revoke
    r = api_cloud.client.simulate_delete("/identity/v3/auth/tokens", headers={
        "X-Auth-Token": token, "X-Subject-Token": token})
    assert r.status_code == 204
    r = api_cloud.client.simulate_get("/compute/v2.1/servers",
                                      headers={"X-Auth-Token": token})
    assert r.status_code == 401
    assert r.json == {"unauthorized": {"code": 401, "message": r.json["unauthorized"]["message"]}}


def test_scope_by_project_id(api_cloud):
    r = api_cloud.request("POST", "/identity/v3/auth/tokens", who="none",
                          json=_auth(project="p1", by_id=True))
    assert r.status_code == 201


def test_auth_failures_are_all_the_same_401(api_cloud):
    for body in (_auth(password="wrong"), _auth(user="nobody"), _auth(project="p2"),
                 _auth(project="nope"), _auth(domain={"name": "Other"})):
        r = api_cloud.request("POST", "/identity/v3/auth/tokens", who="none", json=body)
        assert r.status_code == 401, body
        assert r.json["error"]["code"] == 401
        assert "X-Subject-Token" not in r.headers


def test_auth_body_validated(api_cloud):
    r = api_cloud.request("POST", "/identity/v3/auth/tokens", who="none",
                          json={"auth": {}})
    assert r.status_code == 400
    assert "identity" in r.json["error"]["message"]
    r = api_cloud.request("POST", "/identity/v3/auth/tokens", who="none", body="{not json")
    assert r.status_code == 400


def test_password_change_revokes_tokens(api_cloud):
    identity_db.user_set_password("member", "new-pass", scrypt_n=1024)
    r = api_cloud.request("GET", "/compute/v2.1/servers", who="member")
    assert r.status_code == 401
    r = api_cloud.request("POST", "/identity/v3/auth/tokens", who="none",
                          json=_auth(password="new-pass"))
    assert r.status_code == 201


def test_password_hash_is_scrypt_and_salted():
    a = identity_db.hash_password("pw", n=1024)
    b = identity_db.hash_password("pw", n=1024)
    assert a.startswith("scrypt$1024$") and a != b
    assert identity_db.verify_password("pw", a)
    assert not identity_db.verify_password("pW", a)
    assert not identity_db.verify_password("pw", "garbage")


def test_catalog_and_projects(api_cloud):
    r = api_cloud.request("GET", "/identity/v3/auth/catalog")
    assert {e["type"] for e in r.json["catalog"]} == {"compute", "image", "identity",
                                                      "block-storage"}
    r = api_cloud.request("GET", "/identity/v3/auth/projects")
    assert [p["name"] for p in r.json["projects"]] == ["p1"]


def test_public_endpoint_used_in_catalog(api_cloud):
    api_cloud.conf.set_override("public_endpoint", "https://cloud.example:8774/",
                                group="api")
    r = api_cloud.request("POST", "/identity/v3/auth/tokens", who="none", json=_auth())
    urls = {e["type"]: e["endpoints"][0]["url"] for e in r.json["token"]["catalog"]}
    assert urls["image"] == "https://cloud.example:8774/image"


def test_rights_removed_take_effect_at_once(api_cloud):
    """Issue 13 defect 3: after a role was removed, or the user or project
    disabled, the old token kept working until it expired."""
    servers = "/compute/v2.1/servers"

    def status(who):
        return api_cloud.request("GET", servers, who=who).status_code

    assert status("member") == 200 and status("reader") == 200
    # A role removed: the token's roles shrink; none left: refused.
    identity_db.role_remove("member", "p1", "member")
    assert api_cloud.request("POST", servers, who="member", json={"server": {
        "name": "x", "flavorRef": "1", "networks": "none"}}).status_code == 401
    identity_db.role_add("member", "p1", "reader")
    assert status("member") == 200          # reader still granted: reads only
    assert api_cloud.request("POST", servers, who="member", json={"server": {
        "name": "x", "flavorRef": "1", "networks": "none"}}).status_code == 403
    identity_db.role_add("member", "p1", "member")
    # A role added later is not in an old token (it was not issued with it).
    identity_db.role_add("reader", "p1", "member")
    assert api_cloud.request("POST", servers, who="reader", json={"server": {
        "name": "x", "flavorRef": "1", "networks": "none"}}).status_code == 403
    # A disabled user, then a disabled project.
    identity_db.user_set_enabled("reader", False)
    assert status("reader") == 401
    identity_db.user_set_enabled("reader", True)
    assert status("reader") == 200
    identity_db.project_set_enabled("p1", False)
    assert status("member") == 401 and status("reader") == 401
    assert status("other") == 200           # another project is unaffected
    identity_db.project_set_enabled("p1", True)
    assert status("member") == 200

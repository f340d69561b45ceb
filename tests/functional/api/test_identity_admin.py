"""Identity administration (the Keystone v3 subset Tempest's dynamic
credentials need): projects, users, roles on projects and on the system,
role assignments, a user's projects, password change, system-scoped tokens,
and who may do what."""

from __future__ import annotations

from flotilla.db import identity as identity_db

I3 = "/identity/v3"


def _token(cloud, user: str, password: str, scope: dict) -> str:
    r = cloud.request("POST", I3 + "/auth/tokens", who="none", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": scope}})
    assert r.status_code == 201, r.text
    return r.headers["X-Subject-Token"]


def test_dynamic_credentials_flow(api_cloud):
    """What Tempest does for each test class: find the domain, make a
    project and a user, grant member, authenticate, clean up."""
    r = api_cloud.request("GET", I3 + "/domains?name=Default", who="admin")
    assert [d["id"] for d in r.json["domains"]] == ["default"]
    r = api_cloud.request("POST", I3 + "/projects", who="admin", json={
        "project": {"name": "t1", "description": "d", "domain_id": "default"}})
    assert r.status_code == 201, r.text
    project = r.json["project"]
    assert project["domain_id"] == "default" and project["enabled"] is True
    r = api_cloud.request("POST", I3 + "/users", who="admin", json={"user": {
        "name": "u1", "password": "pw-1", "domain_id": "default",
        "email": "u1@example.org", "project_id": project["id"]}})
    assert r.status_code == 201, r.text
    user = r.json["user"]
    assert user["email"] == "u1@example.org" and "password" not in user
    roles = {r["name"]: r["id"] for r in
             api_cloud.request("GET", I3 + "/roles", who="admin").json["roles"]}
    assert set(roles) == {"admin", "manager", "member", "reader", "service"}
    path = I3 + "/projects/%s/users/%s/roles/%s" % (project["id"], user["id"],
                                                    roles["member"])
    assert api_cloud.request("PUT", path, who="admin").status_code == 204
    assert api_cloud.request("HEAD", path, who="admin").status_code == 204
    token = _token(api_cloud, "u1", "pw-1", {"project": {"id": project["id"]}})
    r = api_cloud.request("GET", "/compute/v2.1/servers", who="none",
                          headers={"X-Auth-Token": token})
    assert r.status_code == 200
    r = api_cloud.request("GET", I3 + "/users/%s/projects" % user["id"], who="none",
                          headers={"X-Auth-Token": token})
    assert [p["id"] for p in r.json["projects"]] == [project["id"]]
    r = api_cloud.request("GET", I3 + "/role_assignments?user.id=%s" % user["id"],
                          who="admin")
    assert r.json["role_assignments"] == [{
        "role": {"id": "member"}, "user": {"id": user["id"]},
        "scope": {"project": {"id": project["id"]}},
        "links": {"assignment": r.json["role_assignments"][0]["links"]["assignment"]}}]
    assert api_cloud.request("DELETE", path, who="admin").status_code == 204
    assert api_cloud.request("HEAD", path, who="admin").status_code == 404
    assert api_cloud.request("DELETE", I3 + "/users/" + user["id"],
                             who="admin").status_code == 204
    assert api_cloud.request("DELETE", I3 + "/projects/" + project["id"],
                             who="admin").status_code == 204
    assert api_cloud.request("GET", I3 + "/projects/" + project["id"],
                             who="admin").status_code == 404


def test_names_domains_and_roles_are_checked(api_cloud):
    r = api_cloud.request("POST", I3 + "/projects", who="admin",
                          json={"project": {"name": "x" * 65}})
    assert r.status_code == 400 and "name" in r.json["error"]["message"]
    r = api_cloud.request("POST", I3 + "/projects", who="admin",
                          json={"project": {"name": "p1"}})
    assert r.status_code == 409
    r = api_cloud.request("POST", I3 + "/users", who="admin",
                          json={"user": {"name": "z", "domain_id": "elsewhere"}})
    assert r.status_code == 404
    r = api_cloud.request("POST", I3 + "/roles", who="admin",
                          json={"role": {"name": "auditor"}})
    assert r.status_code == 403 and "fixed" in r.json["error"]["message"]
    r = api_cloud.request("POST", I3 + "/projects", who="admin",
                          json={"project": {"name": "child", "parent_id": "p1"}})
    assert r.status_code == 400


def test_only_admins_and_system_readers_administer(api_cloud):
    for who in ("member", "reader", "other"):
        assert api_cloud.request("GET", I3 + "/users", who=who).status_code == 403
        assert api_cloud.request("POST", I3 + "/projects", who=who, json={
            "project": {"name": "nope"}}).status_code == 403
    me = identity_db.user_get("member").id
    assert api_cloud.request("GET", I3 + "/users/" + me, who="member").status_code == 200
    # A system reader reads everything and changes nothing.
    identity_db.system_role_add("reader", "reader")
    token = _token(api_cloud, "reader", "secret-reader", {"system": {"all": True}})
    headers = {"X-Auth-Token": token}
    r = api_cloud.request("GET", I3 + "/auth/tokens", who="none",
                          headers=dict(headers, **{"X-Subject-Token": token}))
    assert r.json["token"]["system"] == {"all": True}
    assert api_cloud.request("GET", I3 + "/users", who="none",
                             headers=headers).status_code == 200
    assert api_cloud.request("POST", I3 + "/projects", who="none", headers=headers,
                             json={"project": {"name": "nope"}}).status_code == 403
    # A system token is not a project's: the compute API refuses it.
    assert api_cloud.request("GET", "/compute/v2.1/servers", who="none",
                             headers=headers).status_code == 403
    # No system role: no system token.
    r = api_cloud.request("POST", I3 + "/auth/tokens", who="none", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "member", "domain": {"id": "default"},
            "password": "secret-member"}}},
        "scope": {"system": {"all": True}}}})
    assert r.status_code == 401


def test_password_change_by_the_original_password(api_cloud):
    me = identity_db.user_get("member").id
    r = api_cloud.request("POST", I3 + "/users/%s/password" % me, who="none", json={
        "user": {"password": "new-pw", "original_password": "wrong"}})
    assert r.status_code == 401
    old = api_cloud.tokens["member"]
    r = api_cloud.request("POST", I3 + "/users/%s/password" % me, who="none", json={
        "user": {"password": "new-pw", "original_password": "secret-member"}})
    assert r.status_code == 204
    # Every token the user held is revoked; the new password works.
    assert api_cloud.request("GET", "/compute/v2.1/servers", who="none",
                             headers={"X-Auth-Token": old}).status_code == 401
    _token(api_cloud, "member", "new-pw", {"project": {"name": "p1",
                                                      "domain": {"id": "default"}}})


def test_disabling_a_user_and_a_project(api_cloud):
    me = identity_db.user_get("member").id
    r = api_cloud.request("PATCH", I3 + "/users/" + me, who="admin",
                          json={"user": {"enabled": False}})
    assert r.status_code == 200 and r.json["user"]["enabled"] is False
    r = api_cloud.request("POST", I3 + "/auth/tokens", who="none", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "member", "domain": {"id": "default"},
            "password": "secret-member"}}}}})
    assert r.status_code == 401
    r = api_cloud.request("PATCH", I3 + "/projects/p2", who="admin",
                          json={"project": {"enabled": False, "description": "off"}})
    assert r.status_code == 200 and r.json["project"]["enabled"] is False
    assert identity_db.project_get("p2").enabled is False


def test_version_discovery_answers_300(api_cloud):
    r = api_cloud.request("GET", "/identity", who="none")
    assert r.status_code == 300
    assert r.json["versions"]["values"][0]["media-types"]

"""os-quota-sets (show, detail, defaults, admin update and revert, per user)
and os-quota-class-sets, per microversion."""

from __future__ import annotations

import pytest

from flotilla.db import identity as identity_db
from tests.functional.api.fixtures import IMAGE_ID, C

Q = C + "/os-quota-sets"
CLASS = C + "/os-quota-class-sets"
CORE = {"instances", "cores", "ram", "metadata_items", "key_pairs", "server_groups",
        "server_group_members"}
NETWORK = {"fixed_ips", "floating_ips", "security_groups", "security_group_rules"}
PERSONALITY = {"injected_files", "injected_file_content_bytes", "injected_file_path_bytes"}
DEFAULTS = {"instances": 10, "cores": 20, "ram": 51200, "metadata_items": 128,
            "key_pairs": 100, "server_groups": 10, "server_group_members": 10,
            "fixed_ips": -1, "floating_ips": -1, "security_groups": -1,
            "security_group_rules": -1, "injected_files": 5,
            "injected_file_content_bytes": 10240, "injected_file_path_bytes": 255}


def _put(cloud, values: dict, project: str = "p1", query: str = "",
         version: str | None = None, who: str = "admin"):
    return cloud.request("PUT", Q + "/" + project + query, who, version,
                         json={"quota_set": values})


@pytest.mark.parametrize("version,keys", [
    ("2.1", CORE | NETWORK | PERSONALITY),
    ("2.35", CORE | NETWORK | PERSONALITY),
    ("2.36", CORE | PERSONALITY),
    ("2.57", CORE),
    ("2.100", CORE),
])
def test_show_and_defaults_per_version(api_cloud, version, keys):
    for path in ("/p1", "/p1/defaults"):
        r = api_cloud.request("GET", Q + path, "member", version)
        assert r.status_code == 200, r.text
        body = r.json["quota_set"]
        assert body.pop("id") == "p1"
        assert set(body) == keys
        assert body == {k: DEFAULTS[k] for k in keys}


def test_a_project_reads_its_own_quotas_only(api_cloud):
    assert api_cloud.request("GET", Q + "/p1", "reader").status_code == 200
    r = api_cloud.request("GET", Q + "/p1", "other")
    assert r.status_code == 403 and r.json["forbidden"]["message"]
    assert api_cloud.request("GET", Q + "/p1/detail", "other").status_code == 403
    # Defaults are no secret (Nova: any caller).
    assert api_cloud.request("GET", Q + "/p1/defaults", "other").status_code == 200
    assert api_cloud.request("GET", Q + "/p1", "admin").status_code == 200


def test_detail_counts_what_is_in_use(api_cloud):
    api_cloud.create_server()
    detail = api_cloud.request("GET", Q + "/p1/detail", "member", "2.57").json["quota_set"]
    assert detail.pop("id") == "p1"
    assert set(detail) == CORE
    assert detail["instances"] == {"in_use": 1, "limit": 10, "reserved": 0}
    assert detail["cores"]["in_use"] == 1 and detail["ram"]["in_use"] == 64
    assert detail["key_pairs"]["in_use"] == 0     # counted per user


def test_admin_update_is_enforced_and_reverted(api_cloud):
    r = _put(api_cloud, {"instances": 1, "ram": "5120"})
    assert r.status_code == 200, r.text
    body = r.json["quota_set"]
    assert "id" not in body and body["instances"] == 1 and body["ram"] == 5120
    assert api_cloud.request("GET", Q + "/p1").json["quota_set"]["instances"] == 1
    api_cloud.create_server()
    r = api_cloud.request("POST", C + "/servers", json={"server": {
        "name": "x", "flavorRef": "1", "imageRef": IMAGE_ID}})
    assert r.status_code == 403 and "instances" in r.json["overLimit"]["message"]
    r = api_cloud.request("DELETE", Q + "/p1", "admin")
    assert r.status_code == 202 and not r.text
    assert api_cloud.request("GET", Q + "/p1").json["quota_set"]["instances"] == 10


def test_update_below_usage_needs_force(api_cloud):
    api_cloud.create_server()
    api_cloud.create_server()
    r = _put(api_cloud, {"instances": 1})
    assert r.status_code == 400
    assert r.json["badRequest"]["message"] == (
        "Quota limit 1 for instances must be greater than or equal to already used "
        "and reserved 2.")
    assert api_cloud.request("GET", Q + "/p1").json["quota_set"]["instances"] == 10
    r = _put(api_cloud, {"instances": 1, "force": "True"})
    assert r.status_code == 200 and r.json["quota_set"]["instances"] == 1
    assert _put(api_cloud, {"instances": -1}).json["quota_set"]["instances"] == -1


def test_legacy_resources_are_stored_below_the_versions_that_drop_them(api_cloud):
    r = _put(api_cloud, {"floating_ips": 20, "injected_files": 10}, version="2.1")
    assert r.status_code == 200, r.text
    shown = api_cloud.request("GET", Q + "/p1", "member", "2.1").json["quota_set"]
    assert (shown["floating_ips"], shown["injected_files"]) == (20, 10)
    r = _put(api_cloud, {"floating_ips": 20}, version="2.36")
    assert r.status_code == 400 and "floating_ips" in r.json["badRequest"]["message"]
    r = _put(api_cloud, {"injected_files": 20}, version="2.57")
    assert r.status_code == 400 and "injected_files" in r.json["badRequest"]["message"]


@pytest.mark.parametrize("values,field", [
    ({"instances": "many"}, "quota_set.instances"),
    ({"instances": -2}, "quota_set.instances"),
    ({"instances": "-5"}, "quota_set.instances"),
    ({"instances": 2 ** 31}, "quota_set.instances"),
    ({"bogus": 1}, "bogus"),
    ({"force": "perhaps"}, "quota_set.force"),
])
def test_update_validation_names_the_field(api_cloud, values, field):
    r = _put(api_cloud, values)
    assert r.status_code == 400, r.text
    assert field in r.json["badRequest"]["message"]
    assert api_cloud.request("GET", Q + "/p1").json["quota_set"]["instances"] == 10


def test_only_admins_change_quotas(api_cloud):
    for who in ("member", "reader", "other"):
        assert _put(api_cloud, {"instances": 50}, who=who).status_code == 403
        assert api_cloud.request("DELETE", Q + "/p1", who).status_code == 403
    assert api_cloud.request("GET", Q + "/p1").json["quota_set"]["instances"] == 10


def test_per_user_quotas(api_cloud):
    member = identity_db.user_get("member").id
    reader = identity_db.user_get("reader").id
    identity_db.role_add("reader", "p1", "member")     # so it may boot
    reader_token = identity_db.token_issue(
        reader, "p1", identity_db.roles_for(reader, "p1"), 3600)[0]
    r = _put(api_cloud, {"ram": "2048", "instances": 1}, query="?user_id=" + member)
    assert r.status_code == 200, r.text
    assert r.json["quota_set"]["ram"] == 2048
    shown = api_cloud.request("GET", Q + "/p1?user_id=" + member).json["quota_set"]
    assert (shown["ram"], shown["instances"]) == (2048, 1)
    assert api_cloud.request("GET", Q + "/p1").json["quota_set"]["ram"] == 51200
    # The member is held to its own limit; the project's other users are not.
    api_cloud.create_server()
    r = api_cloud.request("POST", C + "/servers", json={"server": {
        "name": "x", "flavorRef": "1", "imageRef": IMAGE_ID}})
    assert r.status_code == 403 and "instances" in r.json["overLimit"]["message"]
    r = api_cloud.client.simulate_post(C + "/servers", headers={
        "X-Auth-Token": reader_token}, json={"server": {
            "name": "y", "flavorRef": "1", "imageRef": IMAGE_ID}})
    assert r.status_code == 202, r.text
    detail = api_cloud.request("GET", Q + "/p1/detail?user_id=" + member).json["quota_set"]
    assert detail["instances"] == {"in_use": 1, "limit": 1, "reserved": 0}
    # A user's limit stays within what the project has left.
    _put(api_cloud, {"instances": 5})
    r = _put(api_cloud, {"instances": 5}, query="?user_id=" + reader)
    assert r.status_code == 400
    assert r.json["badRequest"]["message"] == (
        "Quota limit 5 for instances must be less than or equal to 4.")
    # Reverting the project reverts its users too.
    assert api_cloud.request("DELETE", Q + "/p1", "admin").status_code == 202
    assert api_cloud.request("GET", Q + "/p1?user_id=" + member).json[
        "quota_set"]["instances"] == 10


def test_per_user_server_groups(api_cloud):
    member = identity_db.user_get("member").id
    _put(api_cloud, {"server_groups": 0}, query="?user_id=" + member)
    body = {"server_group": {"name": "g", "policies": ["affinity"]}}
    r = api_cloud.request("POST", C + "/os-server-groups", json=body)
    assert r.status_code == 403 and "server_groups" in r.json["overLimit"]["message"]
    other = api_cloud.request("POST", C + "/os-server-groups", "admin", json=body)
    assert other.status_code == 200, other.text


def test_query_parameters_are_checked_from_2_75(api_cloud):
    assert api_cloud.request("GET", Q + "/p1?bogus=1", "member", "2.74").status_code == 200
    r = api_cloud.request("GET", Q + "/p1?bogus=1", "member", "2.75")
    assert r.status_code == 400 and "bogus" in r.json["badRequest"]["message"]


@pytest.mark.parametrize("version,keys", [
    ("2.1", (CORE | NETWORK | PERSONALITY) - {"server_groups", "server_group_members"}),
    ("2.50", CORE | PERSONALITY),
    ("2.57", CORE),
])
def test_quota_class_default(api_cloud, version, keys):
    r = api_cloud.request("GET", CLASS + "/default", "admin", version)
    assert r.status_code == 200, r.text
    body = r.json["quota_class_set"]
    assert body.pop("id") == "default" and set(body) == keys
    update = {k: v + 100 for k, v in body.items()}
    r = api_cloud.request("PUT", CLASS + "/default", "admin", version,
                          json={"quota_class_set": update})
    assert r.status_code == 200, r.text
    assert r.json["quota_class_set"] == update
    # The default class is every project's default, unless overridden.
    _put(api_cloud, {"cores": 7}, project="p2")
    for project in ("p1", "p2"):
        shown = api_cloud.request("GET", Q + "/" + project, "admin", version).json[
            "quota_set"]
        assert shown["instances"] == update["instances"]
        assert shown["cores"] == (7 if project == "p2" else update["cores"])
    defaults = api_cloud.request("GET", Q + "/p1/defaults", "member", version).json
    assert defaults["quota_set"]["ram"] == update["ram"]


def test_quota_class_refusals(api_cloud):
    assert api_cloud.request("GET", CLASS + "/default", "member").status_code == 403
    r = api_cloud.request("PUT", CLASS + "/default", "admin",
                          json={"quota_class_set": {"instances": "x"}})
    assert r.status_code == 400 and "quota_class_set.instances" in r.text
    r = api_cloud.request("PUT", CLASS + "/" + "c" * 256, "admin",
                          json={"quota_class_set": {"instances": 3}})
    assert r.status_code == 400 and "quota class" in r.json["badRequest"]["message"]
    # Another class is stored and shown, and changes no project.
    r = api_cloud.request("PUT", CLASS + "/gold", "admin",
                          json={"quota_class_set": {"instances": 99}})
    assert r.json["quota_class_set"]["instances"] == 99
    assert api_cloud.request("GET", Q + "/p1").json["quota_set"]["instances"] == 10

"""Issue 13 defect 9: malformed input is a 4xx naming the field, never a 500."""

from __future__ import annotations

import json

import pytest

from tests.functional.api.fixtures import IMAGE_ID

C = "/compute/v2.1"
UUID = "5d2b6b0e-5f0b-4a54-9d59-1e2b5e0a3c11"


def _server(**over):
    spec = {"name": "vm", "flavorRef": "1", "imageRef": IMAGE_ID, "networks": "none"}
    spec.update(over)
    return {"server": spec}


def _post_raw(api_cloud, path, raw: str, who="member"):
    return api_cloud.request("POST", path, who, body=raw.encode("utf-8", "surrogatepass"),
                             headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("name", ["\\ud800", "\\udfff tail", "a\\u0000b"])
def test_lone_surrogates_and_nul_in_a_body(api_cloud, name):
    raw = json.dumps(_server()).replace('"vm"', '"%s"' % name)
    r = _post_raw(api_cloud, C + "/servers", raw)
    assert r.status_code == 400, r.text
    assert "server.name" in r.text
    assert api_cloud.conductor.calls == []


def test_nul_in_query_and_path(api_cloud):
    r = api_cloud.request("GET", C + "/servers", query_string="name=a%00b")
    assert r.status_code == 400 and "query parameter name" in r.text, r.text
    r = api_cloud.request("GET", C + "/flavors/a%00b")
    assert r.status_code == 400 and "flavor_id" in r.text, r.text
    r = api_cloud.request("GET", "/image/v2/images", query_string="name=%00")
    assert r.status_code == 400, r.text


def test_giant_microversion_before_authentication(api_cloud):
    r = api_cloud.request("GET", C + "/servers", who="none",
                          headers={"OpenStack-API-Version": "compute 2." + "9" * 5000})
    assert r.status_code == 400, r.text
    r = api_cloud.request("GET", C + "/servers", who="none",
                          headers={"X-OpenStack-Nova-API-Version": "1" * 5000 + ".1"})
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("signature", ["\u00e9" * 64, "zz", "0" * 63 + "\u00e9"])
def test_non_ascii_download_signature(api_cloud, signature):
    r = api_cloud.request("GET", "/image/v2/images/%s/file" % IMAGE_ID, who="none",
                          params={"expires": "9999999999", "signature": signature})
    assert r.status_code == 403, r.text


@pytest.mark.parametrize("path, who", [(C + "/servers", "member"),
                                       (C + "/flavors", "admin"),
                                       ("/identity/v3/auth/tokens", "none"),
                                       ("/image/v2/images", "member")])
def test_json_nested_5000_deep(api_cloud, path, who):
    r = _post_raw(api_cloud, path, '{"a": ' + "[" * 5000 + "]" * 5000 + "}", who)
    assert r.status_code == 400, r.text
    r = _post_raw(api_cloud, path, '{"a": ' + "[" * 100 + "]" * 100 + "}", who)
    assert r.status_code == 400 and "nested" in r.text, r.text


def test_numbers_as_strings_above_the_maximum(api_cloud):
    flavor = {"name": "huge", "ram": "9" * 30, "vcpus": 1, "disk": 1}
    r = api_cloud.request("POST", C + "/flavors", "admin", json={"flavor": flavor})
    assert r.status_code == 400 and "flavor.ram" in r.text, r.text
    flavor.update(ram="4194305")
    r = api_cloud.request("POST", C + "/flavors", "admin", json={"flavor": flavor})
    assert r.status_code == 400 and "flavor.ram" in r.text, r.text
    r = api_cloud.request("POST", C + "/servers", json=_server(min_count="999"))
    assert r.status_code == 400 and "min_count" in r.text, r.text


def test_uuid_with_a_trailing_newline(api_cloud):
    r = api_cloud.request("POST", C + "/servers", json=_server(imageRef=IMAGE_ID + "\n"))
    assert r.status_code == 400 and "imageRef" in r.text, r.text
    r = api_cloud.request("POST", "/image/v2/images", json={"id": UUID + "\n", "name": "x"})
    assert r.status_code == 400 and "id" in r.text, r.text
    r = api_cloud.request("POST", C + "/servers", json=_server(name="vm\n"))
    assert r.status_code == 400 and "server.name" in r.text, r.text
    assert api_cloud.conductor.calls == []


@pytest.mark.parametrize("method, path, status", [
    ("DELETE", C + "/images/", 404),          # Tempest: a blank image id
    ("DELETE", C + "/servers", 404),
    ("PUT", C + "/flavors", 404),
    ("POST", C + "/servers/detail", 404),
    ("PUT", "/volume/v3/volumes", 404),
    ("DELETE", "/image/v2/images", 405),
])
def test_a_method_the_path_lacks_is_what_the_real_service_answers(api_cloud, method, path,
                                                                  status):
    """Not a policy refusal (403): Nova's and Cinder's routers find no route
    (404), Glance answers 405 with the methods it has."""
    r = api_cloud.request(method, path, "member")
    assert r.status_code == status, r.text
    if status == 405:
        assert set(r.headers["allow"].split(", ")) >= {"GET", "POST"}
    assert api_cloud.conductor.calls == []

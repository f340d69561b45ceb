"""Issue 13 defects 4 and 5: private flavors and zero-disk flavors."""

from __future__ import annotations

from flotilla.db import api as db
from flotilla.db import images as images_db
from tests.functional.api.fixtures import IMAGE_ID

C = "/compute/v2.1"
GiB = 1024 ** 3


def _boot(cloud, who="member", flavor="1", image=IMAGE_ID):
    return cloud.request("POST", C + "/servers", who, json={"server": {
        "name": "vm", "flavorRef": flavor, "imageRef": image, "networks": "none"}})


def test_private_flavor_needs_access_for_boot_show_and_list(api_cloud):
    """A member booted a private flavor it could not even see."""
    db.flavor_create({"flavorid": "priv", "name": "private", "memory_mb": 64,
                      "vcpus": 1, "root_gb": 1, "is_public": False})
    assert api_cloud.request("GET", C + "/flavors/priv").status_code == 404
    assert "priv" not in [f["id"] for f in api_cloud.request("GET", C + "/flavors").json["flavors"]]
    r = _boot(api_cloud, flavor="priv")
    assert r.status_code == 400 and "could not be found" in r.text, r.text
    assert api_cloud.conductor.calls == []
    # Access for p1 (admin): p1 sees and boots it, p2 still does not.
    r = api_cloud.request("POST", C + "/flavors/priv/action", "admin",
                          json={"addTenantAccess": {"tenant": "p1"}})
    assert r.status_code == 200 and r.json["flavor_access"] == [
        {"flavor_id": "priv", "tenant_id": "p1"}], r.text
    assert api_cloud.request("POST", C + "/flavors/priv/action", "admin", json={
        "addTenantAccess": {"tenant": "p1"}}).status_code == 409
    assert api_cloud.request("GET", C + "/flavors/priv").status_code == 200
    assert "priv" in [f["id"] for f in api_cloud.request(
        "GET", C + "/flavors/detail").json["flavors"]]
    assert _boot(api_cloud, flavor="priv").status_code == 202
    assert _boot(api_cloud, "other", flavor="priv").status_code == 400
    assert api_cloud.request("GET", C + "/flavors/priv", "other").status_code == 404
    listing = api_cloud.request("GET", C + "/flavors/priv/os-flavor-access", "admin")
    assert listing.json["flavor_access"] == [{"flavor_id": "priv", "tenant_id": "p1"}]
    assert api_cloud.request("GET", C + "/flavors/priv/os-flavor-access").status_code == 403
    # Removal takes effect at once.
    r = api_cloud.request("POST", C + "/flavors/priv/action", "admin",
                          json={"removeTenantAccess": {"tenant": "p1"}})
    assert r.status_code == 200 and r.json["flavor_access"] == []
    assert _boot(api_cloud, flavor="priv").status_code == 400
    assert api_cloud.request("POST", C + "/flavors/1/action", "admin", json={
        "addTenantAccess": {"tenant": "p1"}}).status_code == 409  # public


def _huge_image(size=2 ** 50):
    image_id = "22222222-2222-4333-8444-555555555555"
    images_db.image_create({"id": image_id, "name": "huge", "status": "active",
                            "disk_format": "qcow2", "container_format": "bare",
                            "visibility": "public", "checksum": "0" * 64,
                            "size": 200 * 1024, "virtual_size": size, "owner": "p1"})
    return image_id


def test_zero_disk_flavor_is_admin_only_and_claims_the_image_size(api_cloud):
    """A member booted a qcow2 declaring 1 PiB on a zero-disk flavor: the
    scheduler claimed 0 GB and the agent built a 1 PiB overlay."""
    db.flavor_create({"flavorid": "zero", "name": "zero", "memory_mb": 64,
                      "vcpus": 1, "root_gb": 0})
    huge = _huge_image()
    r = _boot(api_cloud, flavor="zero", image=huge)
    assert r.status_code == 403 and "zero disk" in r.text, r.text
    assert api_cloud.conductor.calls == []
    # An admin may, and the claim is what the disk can grow to.
    r = _boot(api_cloud, "admin", flavor="zero", image=huge)
    assert r.status_code == 202, r.text
    [call] = api_cloud.conductor.wait_for("build_instances")
    assert call["request_spec"].flavor.root_gb == 2 ** 50 // GiB
    assert db.instance_get(call["instance_uuids"][0]).root_gb == 2 ** 50 // GiB


def test_image_larger_than_the_flavor_disk_is_refused(api_cloud):
    huge = _huge_image(5 * GiB + 1)
    r = _boot(api_cloud, flavor="1", image=huge)
    assert r.status_code == 400 and "too small" in r.text, r.text

"""os-hosts lists the compute API's own services, as os-services does: the
volume service is Block Storage's (``volume service list``)."""

from __future__ import annotations

from flotilla import binaries
from flotilla.db import api as db
from tests.functional.api.fixtures import C


def test_os_hosts_lists_the_compute_services_only(api_cloud):
    db.service_heartbeat("host1", binaries.VOLUME, "volume")
    db.service_heartbeat("ctl", binaries.CONDUCTOR, "conductor")
    r = api_cloud.request("GET", C + "/os-hosts", "admin")
    assert r.status_code == 200, r.text
    assert sorted((h["host_name"], h["service"], h["zone"]) for h in r.json["hosts"]) == [
        ("ctl", "conductor", "internal"), ("host1", "compute", "nova")]
    r = api_cloud.request("GET", C + "/os-hosts?zone=internal", "admin")
    assert [h["service"] for h in r.json["hosts"]] == ["conductor"]

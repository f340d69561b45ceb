"""The unmodified openstack CLI against the API (fake hosts on memory://):
``compute service set --disable/--enable/--down/--up`` and ``server
evacuate`` of a server whose host is forced down (it ends ACTIVE on the
other host). ``server evacuate --wait`` is not used: OSC compares the
lower-cased status with "ACTIVE" and never ends on success."""

from __future__ import annotations

import time

from flotilla.db import api as db
from flotilla.db import identity as identity_db
from tests.functional.api.test_openstack_cli import cli  # noqa: F401
from tests.functional.api.test_openstacksdk import _connect, sdk_cloud  # noqa: F401


def test_service_set_and_server_evacuate_with_the_openstack_cli(sdk_cloud, cli):  # noqa: F811
    identity_db.role_add("alice", "demo", "admin")
    conn = _connect(sdk_cloud)
    image = conn.image.create_image(name="tiny", data=b"\0" * 4096, disk_format="raw",
                                    container_format="bare")
    server = conn.compute.create_server(name="evacuee", image_id=image.id, flavor_id="1",
                                        networks="none")
    server = conn.compute.wait_for_server(server, status="ACTIVE", wait=60, interval=0.2)
    source = server.compute_host
    other = "host2" if source == "host1" else "host1"

    cli.ok("compute", "service", "set", "--disable", "--disable-reason", "maintenance",
           other, "nova-compute")
    service = db.service_get(other, "flotilla-compute")
    assert (service.disabled, service.disabled_reason) == (True, "maintenance")
    cli.ok("compute", "service", "set", "--enable", other, "nova-compute")
    assert not db.service_get(other, "flotilla-compute").disabled

    # The host is up: refused, nothing changed.
    code, out, err = cli("server", "evacuate", server.id)
    assert code != 0 and ("409" in err or "still in use" in err), (code, out, err)
    assert cli.ok("server", "show", server.id, "-f", "json")["OS-EXT-SRV-ATTR:host"] \
        == source
    cli.ok("--os-compute-api-version", "2.11", "compute", "service", "set", "--down",
           source, "nova-compute")
    listed = cli.ok("--os-compute-api-version", "2.11", "compute", "service", "list",
                    "--long", "--host", source, "-f", "json")
    assert [(s["State"], s["Forced Down"]) for s in listed
            if s["Binary"] == "nova-compute"] == [("down", True)]
    cli.ok("server", "evacuate", server.id)
    deadline = time.monotonic() + 60
    while True:
        shown = cli.ok("server", "show", server.id, "-f", "json")
        if shown["status"] == "ACTIVE" and not shown.get("OS-EXT-STS:task_state"):
            break
        assert time.monotonic() < deadline, shown["status"]
        time.sleep(0.2)
    assert shown["OS-EXT-SRV-ATTR:host"] == other
    migrations = cli.ok("server", "migration", "list", "--server", server.id, "-f", "json",
                        "--os-compute-api-version", "2.59")
    assert [(m["Status"], m.get("Type", m.get("Migration Type"))) for m in migrations] \
        == [("done", "evacuation")], migrations
    cli.ok("--os-compute-api-version", "2.11", "compute", "service", "set", "--up",
           source, "nova-compute")

"""End to end on the demo's bring-up: the public API, real daemons, QEMU."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.fixtures.rig import domstate, empty_image, virsh
from tests.fixtures.waiting import wait_until
from tests.integration.e2e.test_live_migration import _admin_cli


def _wait(predicate, timeout: float = 30, what: str = "condition"):
    return wait_until(predicate, timeout, what, interval=0.5)

@pytest.fixture(scope="module")
def nano(cloud, walkthrough, tmp_path_factory):
    """A 64 MiB flavor and an empty (no OS) image: enough for placement tests."""
    cloud.manage("flavor", "create", "m1.nano", "--ram", "64", "--vcpus", "1", "--disk", "1")
    meta = empty_image(tmp_path_factory.mktemp("img"))
    image = walkthrough.tenant.image.create_image(
        name="empty", filename=meta["source"], disk_format="qcow2",
        container_format="bare", wait=True)
    flavor = walkthrough.tenant.compute.find_flavor("m1.nano")
    return image, flavor


def _boot(walkthrough, nano, names):
    image, flavor = nano
    servers = [walkthrough.tenant.compute.create_server(
        name=name, image_id=image.id, flavor_id=flavor.id, networks="none")
        for name in names]
    return walkthrough.wait_all(servers, "ACTIVE", timeout=180)


def _delete(walkthrough, servers):
    for server in servers:
        walkthrough.tenant.compute.delete_server(server)
    for server in servers:
        walkthrough.tenant.compute.wait_for_delete(server, interval=0.5, wait=120)


def _host_of(walkthrough, server) -> str:
    return walkthrough.admin.compute.get_server(server.id).compute_host


def test_the_demo_flow(cloud, walkthrough):
    summary = walkthrough.run()
    assert set(summary["hosts"].values()) == {"host1", "host2"}
    assert summary["stop_reason"] == "shut off (shutdown)"   # ACPI, not destroyed
    assert summary["console"].count(summary["boot_marker"]) >= 2  # booted, rebooted
    # A copy from a snapshot of a server that booted once, on the other host.
    snapshot = summary["snapshot"]
    assert snapshot["boot_count"] == 2
    assert snapshot["copy_host"] != snapshot["source_host"]
    # A volume written on one host was read on the other (the guest's marker).
    volume = summary["volume"]
    assert volume["from_host"] != volume["to_host"] and volume["from"] != volume["to"]
    assert volume["online_extend_s"] > 0      # the guest saw 3 GiB while attached
    # Booted from a volume made from the image: an NBD root, no disk file;
    # deleted with the server.
    bfv = summary["boot_from_volume"]
    assert bfv["boot_count"] == 1 and bfv["volume_deleted"]
    vda = next(line.split() for line in bfv["disks"].splitlines() if " vda " in line)
    assert vda[0] == "network" and bfv["volume"] in vda[3], bfv["disks"]
    # ... with a blank scratch volume made at boot as vdb, deleted with it too.
    vdb = next(line.split() for line in bfv["disks"].splitlines() if " vdb " in line)
    assert vdb[0] == "network" and bfv["scratch"] in vdb[3], bfv["disks"]
    # ... and live-migrated with it: the same export on the other host.
    assert bfv["moved_to"] != bfv["host"]
    assert bfv["disks_after"].split() == bfv["disks"].split(), bfv["disks_after"]
    copy = bfv["image_copy"]
    assert (copy["snapshots"], copy["boot_count"]) == (2, 2), copy
    assert len(copy["volumes"]) == 2 and copy["volumes_deleted"], copy
    # Rebuilt (2.93): the same root volume written afresh from the image, so
    # the guest counts 1 again.
    rebuilt = bfv["rebuilt"]
    assert rebuilt["root_kept"] and rebuilt["boot_count"] == 1, rebuilt
    # Its root volume uploaded to a qcow2 image while in use; a server booted
    # from that image counts on from demo-bfv's boots.
    uploaded = bfv["uploaded"]
    assert uploaded["volume_status"] == "in-use" and uploaded["disk_format"] == "qcow2"
    assert uploaded["boot_count"] == uploaded["source_boot_count"] + 1, uploaded
    # A running server live-migrated to the other host, still counting.
    migration = summary["migration"]
    assert migration["status"] == "completed" and migration["dest"] != migration["source"]
    assert migration["dest_state"].startswith("running") and not migration["on_source"]
    assert migration["ticks"][1] > migration["ticks"][0]
    # Resized to the bigger flavor on the other host, then confirmed.
    resize = summary["resize"]
    assert resize["dest"] != resize["source"] and resize["flavor"] == "m1.small"
    assert resize["dest_state"] == "running" and resize["memory_mib"] == 160
    assert resize["source_state"] == "shut off" and resize["source_after"] == "no such domain"
    # host1 drained: every guest moved to host2, nothing left on host1.
    drain = summary["drain"]
    assert drain["moved"] >= 1 and drain["left"] == 0 and drain["hosts_after"] == ["host2"]
    # demo-1 evacuated off host2 (agent stopped, forced down), rebuilt on
    # host1; the stale copy stays until host2's agent is back, then goes.
    evacuate = summary["evacuate"]
    assert (evacuate["source"], evacuate["dest"]) == ("host2", "host1")
    assert evacuate["dest_state"] == "running"
    assert evacuate["host_status"] == "DOWN"
    assert evacuate["stale_before"] and not evacuate["stale_after"]


def _allocations(cloud) -> int:
    engine = sa.create_engine(cloud.state["database_url"])
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("select count(*) from allocations")).scalar()
    finally:
        engine.dispose()


def test_eight_servers_spread_and_run_where_the_api_says(cloud, walkthrough, nano):
    # Two equal, empty hosts (the claims of earlier tests' deletes are freed a
    # moment after the API reports the servers gone: wait for them).
    _wait(lambda: _allocations(cloud) == 0, 60, "no allocation left")
    servers = _boot(walkthrough, nano, ["spread-%d" % i for i in range(8)])
    try:
        uris = {h["name"]: h["uri"] for h in cloud.state["rig_hosts"]}
        hosts = {s.id: _host_of(walkthrough, s) for s in servers}
        counts = [list(hosts.values()).count(h) for h in ("host1", "host2")]
        assert counts == [4, 4], counts    # the RAM weigher spreads evenly
        for server_id, host in hosts.items():
            assert domstate(uris[host], server_id).startswith("running")
            other = ({"host1", "host2"} - {host}).pop()
            assert domstate(uris[other], server_id) == ""     # not on the other host
    finally:
        _delete(walkthrough, servers)


def test_down_and_disabled_hosts_get_no_servers(cloud, walkthrough, nano):
    admin = walkthrough.admin
    created: list = []
    try:
        _down_and_disabled(cloud, walkthrough, nano, admin, created)
    finally:
        if cloud.state["pids"].get("flotilla-compute@host2") is None:
            cloud.start_compute("host2")
        _delete(walkthrough, created)


def _down_and_disabled(cloud, walkthrough, nano, admin, created: list) -> None:
    first = _boot(walkthrough, nano, ["base-1", "base-2"])
    created += first
    on_host2 = [s for s in first if _host_of(walkthrough, s) == "host2"]
    assert on_host2, "the spread weigher should use both hosts"

    cloud.stop_daemon("flotilla-compute@host2")

    def service(host):
        # The compute API names the agents as Nova does.
        return next(s for s in admin.compute.services()
                    if s.binary == "nova-compute" and s.host == host)
    _wait(lambda: service("host2").state == "down", 60, "host2 reported down")
    while_down = _boot(walkthrough, nano, ["while-down-1", "while-down-2"])
    created += while_down
    assert {_host_of(walkthrough, s) for s in while_down} == {"host1"}

    # While its agent is away, host2's guest stops behind its back.
    uri2 = next(h["uri"] for h in cloud.state["rig_hosts"] if h["name"] == "host2")
    assert virsh(uri2, "destroy", on_host2[0].id).returncode == 0
    cloud.start_compute("host2")
    _wait(lambda: service("host2").state == "up", 60, "host2 back up")
    reconciled = _wait(lambda: (s := walkthrough.tenant.compute.get_server(on_host2[0].id))
                       .status == "SHUTOFF" and s, 60, "host2's guest reconciled")
    assert reconciled.power_state == 4

    # Disabled and enabled again with the unmodified openstack CLI.
    _admin_cli(cloud, "compute", "service", "set", "--disable", "--disable-reason",
               "e2e maintenance", "host1", "nova-compute")
    try:
        _wait(lambda: service("host1").status == "disabled", 10, "host1 disabled")
        assert _service_row(cloud, "host1") == ("disabled", "e2e maintenance")
        while_disabled = _boot(walkthrough, nano, ["while-disabled"])
        created += while_disabled
        assert _host_of(walkthrough, while_disabled[0]) == "host2"
    finally:
        _admin_cli(cloud, "compute", "service", "set", "--enable", "host1", "nova-compute")
    assert _service_row(cloud, "host1")[0] == "enabled"
    assert service("host1").status == "enabled"


def _service_row(cloud, host: str) -> tuple[str, str | None]:
    """(Status, Disabled Reason) of ``host``'s agent, as
    ``openstack compute service list --long`` shows it."""
    import json
    rows = json.loads(_admin_cli(cloud, "compute", "service", "list", "--long", "--host",
                                 host, "--service", "nova-compute", "-f", "json"))
    return tuple((r["Status"], r["Disabled Reason"]) for r in rows)[0]

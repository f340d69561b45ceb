"""Host drain and evacuate on the demo's two-host cloud with the real tiny
guest (real daemons, RabbitMQ, PostgreSQL, QEMU under two rig libvirtds).

* drain: four guests on host1, one with a volume attached,
  ``flotilla-manage host drain host1`` (two at once): all four run on host2
  afterwards (virsh on both hosts), the volume with its guest, host1 is
  disabled with the reason (``openstack compute service set --enable``
  takes it back, with the unmodified CLI);
* evacuate: host1's agent stopped and its service forced down with
  ``openstack compute service set --down``, ``openstack server evacuate``
  (without ``--wait``, which never ends on success: see below): the server
  is ACTIVE on host2 and its new guest boots there; host1's agent started
  again destroys its stale domain and files and leaves the database alone.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import pytest

from tests.fixtures.rig import domstate, virsh
from tests.integration.e2e.test_live_migration import (
    _admin_cli,
    _db_host,
    _rig,
    _wait_ticks,
)
from tests.integration.e2e.test_snapshots import _delete, only_host
from tests.integration.e2e.test_volumes import (
    attach_marked_volume,
    check_volume_followed,
    delete_released_volume,
)


@pytest.fixture(scope="module")
def tiny(cloud, walkthrough):
    from tools.demo.bringup import GUEST_BUILDER, _run
    meta = json.loads(_run([sys.executable, GUEST_BUILDER, "--json"]).stdout)
    image = walkthrough.tenant.image.create_image(
        name="tiny-drain", filename=meta["image"], disk_format="qcow2",
        container_format="bare", wait=True, allow_duplicates=True)
    yield image
    walkthrough.tenant.image.delete_image(image, ignore_missing=True)


def _boot_on_host1(walkthrough, tiny, count: int, prefix: str) -> list:
    tenant = walkthrough.tenant
    flavor = tenant.compute.find_flavor("m1.tiny")
    with only_host(walkthrough, "host1"):
        servers = [tenant.compute.create_server(name="%s%d" % (prefix, i),
                                                image_id=tiny.id, flavor_id=flavor.id,
                                                networks="none")
                   for i in range(count)]
        return [tenant.compute.wait_for_server(s, status="ACTIVE", wait=300)
                for s in servers]


def _cli(cloud, *args: str, timeout: float = 300) -> str:
    """``openstack ARGS`` as the cloud's admin; on failure the daemons' log
    tails say why."""
    import os
    import subprocess

    from tests.fixtures.daemons import BIN
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update({"OS_AUTH_URL": cloud.auth_url, "OS_USERNAME": "admin",
                "OS_PASSWORD": cloud.state["credentials"]["admin"],
                "OS_PROJECT_NAME": "admin", "OS_USER_DOMAIN_NAME": "Default",
                "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3",
                "OS_REGION_NAME": "RegionOne"})
    try:
        proc = subprocess.run([str(BIN / "openstack"), *args], env=env,
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout
    except BaseException:
        for log in sorted(pathlib.Path(cloud.logs).glob("*.log")):
            print("==== %s\n%s" % (log.name, log.read_text(errors="replace")[-3000:]))
        raise


def _uuids(uri: str) -> set[str]:
    return set(virsh(uri, "list", "--all", "--uuid").stdout.split())


def test_drain_moves_four_guests_to_the_other_host(cloud, walkthrough, tiny):
    """One of the four has a volume attached: it moves with it. One is
    stopped: it is cold-migrated, confirmed, and stays stopped."""
    servers = _boot_on_host1(walkthrough, tiny, 4, "drained")
    ids = [s.id for s in servers]
    stopped = ids[3]
    volume = None
    try:
        host1, host2 = _rig(cloud, "host1")["uri"], _rig(cloud, "host2")["uri"]
        walkthrough.tenant.compute.stop_server(stopped)
        walkthrough.tenant.compute.wait_for_server(
            walkthrough.tenant.compute.get_server(stopped), status="SHUTOFF", wait=120)
        _wait_ticks(cloud, "host1", ids[0], 1, 180)
        volume = attach_marked_volume(cloud, walkthrough, ids[0], "host1", "drained-volume")
        assert set(ids) <= _uuids(host1)
        started = time.monotonic()
        out = cloud.manage("host", "drain", "host1", "--reason", "e2e drain",
                           "--max-concurrent", "2")
        print("drain of 4 guests took %.1fs:\n%s" % (time.monotonic() - started, out))
        assert "host host1: 4 moved, 0 not moved" in out
        for server_id in ids:
            assert "(%s): moved" % server_id in out
            assert _db_host(cloud, server_id) == "host2"
            assert domstate(host2, server_id).startswith(
                "shut off" if server_id == stopped else "running")
        assert "(%s): confirming its cold migration" % stopped in out
        assert walkthrough.tenant.compute.get_server(stopped).status == "SHUTOFF"
        assert not set(ids) & _uuids(host1)
        check_volume_followed(cloud, walkthrough, ids[0], volume.id, "host2", "host1")
        assert "%" in out or "running" in out      # progress lines were printed
        services = json.loads(_admin_cli(cloud, "compute", "service", "list", "--long",
                                         "--host", "host1", "--service", "nova-compute",
                                         "-f", "json"))
        assert [(s["Status"], s["Disabled Reason"]) for s in services] == [
            ("disabled", "e2e drain")]
    finally:
        _admin_cli(cloud, "compute", "service", "set", "--enable", "host1", "nova-compute")
        _delete(walkthrough, ids)
        if volume is not None:
            delete_released_volume(walkthrough, volume.id)


def _wait_console(cloud, host: str, server_id: str, text: str, timeout: float = 180) -> bool:
    from tests.integration.e2e.test_volumes import _console
    deadline = time.monotonic() + timeout
    while text not in _console(cloud, host, server_id):
        assert time.monotonic() < deadline, "%s never printed %r on %s" % (
            server_id, text, host)
        time.sleep(0.5)
    return True


def _boot_from_volume_on_host1(walkthrough, tiny):
    """A server whose root is a new volume made from the image (its boot
    counter lives on that volume), deleted with it."""
    tenant = walkthrough.tenant
    flavor = tenant.compute.find_flavor("m1.tiny")
    with only_host(walkthrough, "host1"):
        server = tenant.compute.create_server(
            name="evacuee-bfv", flavor_id=flavor.id, networks="none", block_device_mapping=[
                {"uuid": tiny.id, "source_type": "image", "destination_type": "volume",
                 "boot_index": 0, "volume_size": 1, "delete_on_termination": True}])
        return tenant.compute.wait_for_server(server, status="ACTIVE", wait=300)


def test_evacuate_of_a_host_whose_agent_is_stopped(cloud, walkthrough, tiny):
    """An image-backed server is rebuilt from its image on host2; one booted
    from a volume is defined there around the same volume and boots from
    it: its boot counter, kept on the volume, says 2."""
    [server] = _boot_on_host1(walkthrough, tiny, 1, "evacuee")
    bfv = _boot_from_volume_on_host1(walkthrough, tiny)
    host1, host2 = _rig(cloud, "host1")["uri"], _rig(cloud, "host2")["uri"]
    restarted = False
    try:
        _wait_ticks(cloud, "host1", server.id, 1, 180)
        assert _wait_console(cloud, "host1", bfv.id, "FLOTILLA-BOOT-COUNT 1")
        # While host1's agent runs, evacuate is refused (409) and nothing changes.
        refused = walkthrough.admin.compute.post(
            "/servers/%s/action" % server.id, json={"evacuate": {}}, microversion="2.14",
            raise_exc=False)
        assert refused.status_code == 409, refused.text
        assert cloud.stop_daemon("flotilla-compute@host1") == 0
        _admin_cli(cloud, "--os-compute-api-version", "2.11", "compute", "service", "set",
                   "--down", "host1", "nova-compute")
        # Without --wait: OSC's evacuate --wait compares the lower-cased
        # status with "ACTIVE" (osc_lib wait_for_status), so it never ends on
        # success against any cloud.
        _cli(cloud, "server", "evacuate", server.id)
        _cli(cloud, "server", "evacuate", bfv.id)
        for evacuee in (bfv, server):
            deadline = time.monotonic() + 300
            while True:
                now = walkthrough.admin.compute.get_server(evacuee.id)
                if now.status != "REBUILD" and not now.task_state:
                    break
                assert time.monotonic() < deadline, "evacuation still running"
                time.sleep(1)
            assert (now.status, now.compute_host) == ("ACTIVE", "host2"), evacuee.name
        # The volume-backed one booted its own disk again: the data came along.
        assert _wait_console(cloud, "host2", bfv.id, "FLOTILLA-BOOT-COUNT 2")
        assert not (pathlib.Path(_rig(cloud, "host2")["instances_path"]) / bfv.id
                    / "disk").exists()
        [root] = walkthrough.tenant.compute.get_server(bfv.id).attached_volumes
        assert walkthrough.tenant.block_storage.get_volume(root["id"]).status == "in-use"
        assert _db_host(cloud, server.id) == "host2"
        assert domstate(host2, server.id).startswith("running")
        _wait_ticks(cloud, "host2", server.id, 1, 180)     # the new guest booted
        migrations = walkthrough.admin.compute.get(
            "/os-migrations?instance_uuid=%s" % server.id,
            microversion="2.59").json()["migrations"]
        assert [(m["status"], m["source_compute"], m["dest_compute"],
                 m["migration_type"]) for m in migrations] == [
            ("done", "host1", "host2", "evacuation")]
        # The dead host's stale copy is still there until its agent returns.
        assert server.id in _uuids(host1)
        cloud.start_compute("host1")
        restarted = True
        deadline = time.monotonic() + 120
        # Both stale copies go, one after the other, in either order.
        while {server.id, bfv.id} & _uuids(host1):
            assert time.monotonic() < deadline, "host1 kept a stale domain"
            time.sleep(0.5)
        assert not (pathlib.Path(_rig(cloud, "host1")["instances_path"]) / server.id).exists()
        now = walkthrough.admin.compute.get_server(server.id)
        assert (now.status, now.compute_host, now.task_state) == ("ACTIVE", "host2", None)
        assert domstate(host2, server.id).startswith("running")
        # host1's cleanup destroyed its stale copy of the volume-backed guest
        # and left the volume to the guest on host2.
        assert domstate(host2, bfv.id).startswith("running")
        assert walkthrough.tenant.block_storage.get_volume(root["id"]).status == "in-use"
    finally:
        _admin_cli(cloud, "--os-compute-api-version", "2.11", "compute", "service", "set",
                   "--up", "host1", "nova-compute")
        if not restarted:
            cloud.start_compute("host1")
        _delete(walkthrough, [server.id, bfv.id])

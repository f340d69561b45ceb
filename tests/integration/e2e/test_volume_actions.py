"""The volume actions of api/volume/volume_flags.py with the unmodified
``openstack`` CLI on the demo's two-host cloud: ``volume create
--bootable``, ``volume set --non-bootable``, ``--image-property`` and
``volume unset --image-property``, ``volume set --read-only`` (and the
read-only volume attached to the real tiny guest: its disk has
``<readonly/>``, the guest's write of its marker never reaches the pool
file), ``volume set --state`` as admin (refused to the tenant)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

from tests.fixtures.daemons import BIN
from tests.fixtures.rig import virsh
from tests.fixtures.waiting import wait_for_fresh_status
from tests.integration.e2e.test_snapshots import (  # noqa: F401 - fixtures
    _delete,
    _host_of,
    _rig_host,
    _wait,
    cli,
    guest,
)
from tests.integration.e2e.test_volumes import _console


def _openstack(cloud, user: str, *args: str) -> subprocess.CompletedProcess:
    """``openstack ARGS`` as ``user`` (demo, or admin in project admin)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update({"OS_AUTH_URL": cloud.auth_url, "OS_USERNAME": user,
                "OS_PASSWORD": cloud.state["credentials"][user],
                "OS_PROJECT_NAME": user, "OS_USER_DOMAIN_NAME": "Default",
                "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3",
                "OS_REGION_NAME": "RegionOne"})
    return subprocess.run([str(BIN / "openstack"), *args], env=env, capture_output=True,
                          text=True, timeout=300)


def _ok(cloud, *args: str, user: str = "demo") -> str:
    proc = _openstack(cloud, user, *args)
    # The CLI logs a failed action ("Failed to set ...") and may still exit 0.
    assert proc.returncode == 0 and "Failed" not in proc.stderr, (args, proc.stderr)
    return proc.stdout


def _show(cloud, volume_id: str) -> dict:
    return json.loads(_ok(cloud, "volume", "show", volume_id, "-f", "json"))


def test_volume_flags_with_the_cli(cloud, walkthrough, guest, cli):  # noqa: F811
    tenant = walkthrough.tenant
    created = json.loads(_ok(cloud, "volume", "create", "--size", "1", "--bootable",
                             "flags", "-f", "json"))
    volume_id = created["id"]
    pool_file = pathlib.Path(cloud.root) / "state" / "volumes" / ("volume-%s" % volume_id)
    server = None
    try:
        # --bootable: the CLI waited for available and sent os-set_bootable.
        shown = _show(cloud, volume_id)
        assert (shown["status"], shown["bootable"]) == ("available", True), shown
        _ok(cloud, "volume", "set", "--non-bootable", volume_id)
        assert _show(cloud, volume_id)["bootable"] is False

        _ok(cloud, "volume", "set", "--image-property", "hw_disk_bus=virtio",
            "--image-property", "os_distro=cirros", volume_id)
        assert _show(cloud, volume_id)["volume_image_metadata"] == {
            "hw_disk_bus": "virtio", "os_distro": "cirros"}
        _ok(cloud, "volume", "unset", "--image-property", "os_distro", volume_id)
        assert _show(cloud, volume_id)["volume_image_metadata"] == {"hw_disk_bus": "virtio"}

        # --state: admin only; the tenant's attempt changes nothing.
        proc = _openstack(cloud, "demo", "volume", "set", "--state", "error", volume_id)
        assert proc.returncode != 0 and "Failed to set volume state" in proc.stderr, \
            proc.stderr
        assert _show(cloud, volume_id)["status"] == "available"
        _ok(cloud, "volume", "set", "--state", "error", volume_id, user="admin")
        assert _show(cloud, volume_id)["status"] == "error"
        _ok(cloud, "volume", "set", "--state", "available", volume_id, user="admin")
        assert _show(cloud, volume_id)["status"] == "available"

        # --read-only: shown as Cinder shows it, and attached read-only.
        _ok(cloud, "volume", "set", "--read-only", volume_id)
        assert _show(cloud, volume_id)["properties"] == {"readonly": "True"}
        server = cli("server", "create", "--image", guest.id, "--flavor", "m1.tiny",
                     "--nic", "none", "--wait", "ro")
        host = _host_of(walkthrough, server["id"])
        _wait(lambda: "FLOTILLA-PARTITIONS" in _console(cloud, host, server["id"]), 120,
              "guest boot")
        start = len(_console(cloud, host, server["id"]))
        _ok(cloud, "server", "add", "volume", server["id"], volume_id)
        volume = tenant.block_storage.get_volume(volume_id)
        wait_for_fresh_status(tenant.block_storage, volume, "in-use", wait=60)
        uri = _rig_host(cloud, host)["uri"]
        for flags in ((), ("--inactive",)):
            xml = virsh(uri, "dumpxml", *flags, server["id"]).stdout
            disk = xml[xml.index("<disk type='network'"):]
            disk = disk[:disk.index("</disk>")]
            assert volume_id in disk and "<readonly/>" in disk, disk
        # The guest finds the disk blank and tries to write its marker: the
        # write fails (read-only), the pool file stays blank.
        _wait(lambda: "FLOTILLA-DISK-MARKER vdb written" in
              _console(cloud, host, server["id"])[start:], 120, "the guest's write")
        with pool_file.open("rb") as f:
            assert f.read(512) == b"\0" * 512
        listed = json.loads(_ok(cloud, "--os-volume-api-version", "3.27", "volume",
                                "attachment", "list", "-f", "json"))
        [attachment_id] = [a["ID"] for a in listed if a["Volume ID"] == volume_id]
        attachment = json.loads(_ok(cloud, "--os-volume-api-version", "3.27", "volume",
                                    "attachment", "show", attachment_id, "-f", "json"))
        assert attachment["Attach Mode"] == "ro", attachment
        shown = _show(cloud, volume_id)
        assert shown["properties"] == {"readonly": "True", "attached_mode": "ro"}, shown
        _ok(cloud, "server", "remove", "volume", server["id"], volume_id)
        wait_for_fresh_status(tenant.block_storage, volume, "available", wait=60)
        _ok(cloud, "volume", "set", "--read-write", volume_id)
        assert _show(cloud, volume_id)["properties"] == {"readonly": "False"}
    finally:
        if server is not None:
            _delete(walkthrough, [server["id"]])
        tenant.block_storage.delete_volume(volume_id, ignore_missing=True)
        _wait(lambda: tenant.block_storage.find_volume(volume_id, ignore_missing=True)
              is None, 60, "the volume deleted")

"""Volume placement by free space on the demo's cloud (issue 11): the real
flotilla-volume reports its libvirt pool's space, admins list it with the
unmodified CLI (``openstack volume backend pool list --long``), and a
volume larger than the pool's free space is refused at once with the
reason."""

from __future__ import annotations

import json
import os
import subprocess
import time

from tests.fixtures.daemons import BIN

GIB = 1024 ** 3


def _openstack(cloud, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update({"OS_AUTH_URL": cloud.auth_url, "OS_USERNAME": "admin",
                "OS_PASSWORD": cloud.state["credentials"]["admin"],
                "OS_PROJECT_NAME": "admin", "OS_USER_DOMAIN_NAME": "Default",
                "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3",
                "OS_REGION_NAME": "RegionOne"})
    return subprocess.run([str(BIN / "openstack"), *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_pool_is_listed_and_a_volume_beyond_its_free_space_is_413(cloud):
    proc = _openstack(cloud, "volume", "backend", "pool", "list", "--long", "-f", "json")
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    pools = json.loads(proc.stdout)
    [pool] = pools
    assert pool["Name"].startswith(cloud.state["volume_host"] + "@libvirt_pool#")
    # The pool is a directory: its free space is what its filesystem leaves
    # the service's user (not the root-reserved blocks libvirt counts).
    fs = os.statvfs(os.path.join(str(cloud.root), "state", "volumes"))
    free_gb = fs.f_bavail * fs.f_frsize / GIB
    assert abs(pool["Capabilities"]["free_capacity_gb"] - free_gb) < 1, (pool, free_gb)
    too_big = int(free_gb) + 2
    proc = _openstack(cloud, "volume", "create", "--size", str(too_big), "big")
    assert proc.returncode != 0, proc.stdout
    assert "Insufficient free space" in proc.stderr and "413" in proc.stderr, \
        proc.stderr
    listed = _openstack(cloud, "volume", "list", "-f", "json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stdout


def test_the_volume_service_is_listed_and_a_disabled_one_gets_no_volume(cloud):
    """``openstack volume service list`` shows flotilla-volume as Cinder's
    cinder-volume, up; ``volume service set --disable`` keeps new volumes
    off it (the only volume host: a create is refused) until ``--enable``."""
    proc = _openstack(cloud, "volume", "service", "list", "--long", "-f", "json")
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    host = cloud.state["volume_host"] + "@libvirt_pool"
    assert [(s["Binary"], s["Host"], s["Status"], s["State"]) for s in
            json.loads(proc.stdout)] == [("cinder-volume", host, "enabled", "up")]
    proc = _openstack(cloud, "volume", "service", "set", "--disable",
                      "--disable-reason", "maintenance", host, "cinder-volume")
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    try:
        shown = json.loads(_openstack(cloud, "volume", "service", "list", "--long",
                                      "-f", "json").stdout)
        assert [(s["Status"], s["Disabled Reason"]) for s in shown] == \
            [("disabled", "maintenance")]
        # As Cinder with no backend to take it: accepted, then in error.
        nowhere = json.loads(_openstack(cloud, "volume", "create", "--size", "1",
                                        "nowhere", "-f", "json").stdout)
        shown = json.loads(_openstack(cloud, "volume", "show", nowhere["id"],
                                      "-f", "json").stdout)
        assert shown["status"] == "error", shown
        assert _openstack(cloud, "volume", "delete", nowhere["id"]).returncode == 0
    finally:
        proc = _openstack(cloud, "volume", "service", "set", "--enable", host,
                          "cinder-volume")
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
    created = json.loads(_openstack(cloud, "volume", "create", "--size", "1", "back",
                                    "-f", "json").stdout)
    assert created["name"] == "back"
    assert _openstack(cloud, "volume", "delete", created["id"]).returncode == 0


def test_properties_and_the_summary_with_the_cli(cloud):
    """``volume set/unset --property``, ``volume snapshot set --property``
    and ``volume summary`` through the unmodified CLI."""
    def ok(*args: str):
        proc = _openstack(cloud, *args)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return json.loads(proc.stdout) if "json" in args else None

    vol = ok("volume", "create", "--size", "1", "--property", "tier=gold", "props",
             "-f", "json")
    ok("volume", "set", "--property", "owner=ops", "--property", "tier=silver", vol["id"])
    ok("volume", "unset", "--property", "owner", vol["id"])
    shown = ok("volume", "show", vol["id"], "-f", "json")
    assert shown["properties"] == {"tier": "silver"}, shown
    deadline = time.monotonic() + 60
    while shown["status"] != "available":
        assert time.monotonic() < deadline, shown
        shown = ok("volume", "show", vol["id"], "-f", "json")
    snap = ok("volume", "snapshot", "create", "--volume", vol["id"], "snap", "-f", "json")
    ok("volume", "snapshot", "set", "--property", "kept=yes", snap["id"])
    assert ok("volume", "snapshot", "show", snap["id"], "-f", "json")["properties"] == \
        {"kept": "yes"}
    summary = ok("volume", "summary", "-f", "json")
    assert (summary["Total Count"], summary["Total Size"]) == (1, 1), summary
    ok("volume", "snapshot", "delete", snap["id"])
    deadline = time.monotonic() + 60
    while _openstack(cloud, "volume", "delete", vol["id"]).returncode != 0:
        assert time.monotonic() < deadline, "the volume was not deleted"
        time.sleep(1)

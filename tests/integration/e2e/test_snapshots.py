"""Snapshots, backups and rebuilds on the demo's two-host cloud with the real
tiny guest: the unmodified ``openstack`` CLI and openstacksdk, real daemons,
QEMU; and a compute agent SIGKILLed during a snapshot's copy and upload.

The guest keeps a boot counter on its root disk and prints
``FLOTILLA-BOOT-COUNT n`` at each boot, so what a snapshot carries is seen
from inside: a server that booted once is snapshotted; a copy of it prints
2 on either host, a rebuild onto the snapshot prints 2, a rebuild onto the
original image prints 1. The console is read from the log file libvirt
writes on the rig host (the API returns its tail; several boots of one
rebuilt server may not fit in it).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import signal
import subprocess
import time

import pytest

from tests.fixtures.daemons import BIN
from tests.fixtures.libvirt_events import LifecycleCounter
from tests.fixtures.rig import domstate, virsh
from tools.demo.demo import COMPUTE_BINARIES

BOOT_COUNT = re.compile(r"FLOTILLA-BOOT-COUNT (\d+)")
OVERLAY_DATA_MIB = 40


def _wait(predicate, timeout: float = 180, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("%s not reached within %ss" % (what, timeout))
        time.sleep(0.3)


# --- the cloud's parts, as the tests need them ----------------------------------------

def _rig_host(cloud, name: str) -> dict:
    return next(h for h in cloud.state["rig_hosts"] if h["name"] == name)


def _host_of(walkthrough, server_id: str) -> str:
    return walkthrough.admin.compute.get_server(server_id).compute_host


def _instance_dir(cloud, host: str, server_id: str) -> pathlib.Path:
    return pathlib.Path(_rig_host(cloud, host)["instances_path"]) / server_id


def _boot_counts(cloud, host: str, server_id: str) -> list[int]:
    log = _instance_dir(cloud, host, server_id) / "console.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return [int(n) for n in BOOT_COUNT.findall(text)]


def _next_boot_count(cloud, walkthrough, server_id: str, seen: int) -> int:
    """The boot counter of the server's next boot after ``seen`` boots."""
    host = _host_of(walkthrough, server_id)
    counts = _wait(lambda: (c := _boot_counts(cloud, host, server_id)) and len(c) > seen
                   and c, what="boot %d of %s" % (seen + 1, server_id))
    shown = walkthrough.tenant.compute.get_server_console_output(server_id)["output"]
    assert "FLOTILLA-BOOT-COUNT %d" % counts[-1] in shown    # the API shows it too
    return counts[-1]


def _block_job(cloud, host: str, server_id: str) -> str:
    result = virsh(_rig_host(cloud, host)["uri"], "blockjob", server_id, "vda", "--raw")
    assert result.returncode == 0, result.stderr
    return next((line.strip()[5:] for line in result.stdout.splitlines()
                 if line.strip().startswith("type=")), "")


def _snapshot_leftovers(cloud, host: str, server_id: str) -> list[str]:
    temps = [p.name for p in _instance_dir(cloud, host, server_id).iterdir()
             if p.name.startswith("snapshot-")]
    agent_dir = pathlib.Path(cloud.root) / "state" / "snapshots" / host
    staged = [p.name for p in agent_dir.iterdir()] if agent_dir.exists() else []
    store = pathlib.Path(cloud.root) / "state" / "images"
    partial = [p.name for p in store.iterdir() if ".part-" in p.name] \
        if store.exists() else []
    return temps + staged + partial


@contextlib.contextmanager
def only_host(walkthrough, host: str):
    """Disable every other compute host meanwhile, so a new server can only
    land on ``host`` (what an operator would do to place one)."""
    admin = walkthrough.admin
    others = [s for s in admin.compute.services()
              if s.binary in COMPUTE_BINARIES and s.host != host]
    for service in others:
        admin.compute.disable_service(service, disabled_reason="e2e placement")
    try:
        yield
    finally:
        for service in others:
            admin.compute.enable_service(service)


def _image_status(walkthrough, image_id: str) -> str | None:
    """The image's status, None once it is deleted."""
    import openstack
    try:
        response = walkthrough.admin.image.get("/images/%s" % image_id)
    except openstack.exceptions.NotFoundException:
        return None
    if response.status_code == 404:
        return None
    return response.json()["status"]


# --- the unmodified openstack CLI -----------------------------------------------------

@pytest.fixture(scope="module")
def cli(cloud):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update({"OS_AUTH_URL": cloud.auth_url, "OS_USERNAME": "demo",
                "OS_PASSWORD": cloud.state["credentials"]["demo"],
                "OS_PROJECT_NAME": "demo", "OS_USER_DOMAIN_NAME": "Default",
                "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3",
                "OS_REGION_NAME": "RegionOne"})

    def run(*args: str):
        """``openstack ARGS -f json``: the JSON it printed (after any
        progress text --wait writes first)."""
        proc = subprocess.run([str(BIN / "openstack"), *args, "-f", "json"], env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        start = min(i for i in (proc.stdout.find("{"), proc.stdout.find("["))
                    if i >= 0)
        return json.loads(proc.stdout[start:])
    return run


@pytest.fixture(scope="module")
def guest(cloud, walkthrough):
    import sys

    from tools.demo.bringup import GUEST_BUILDER, _run
    meta = json.loads(_run([sys.executable, GUEST_BUILDER, "--json"]).stdout)
    image = walkthrough.tenant.image.create_image(
        name="tiny-guest", filename=meta["image"], disk_format="qcow2",
        container_format="bare", wait=True)
    yield image
    walkthrough.tenant.image.delete_image(image, ignore_missing=True)


@pytest.fixture(scope="module")
def origin(cloud, walkthrough, guest, cli):
    """A server on host1 that booted once (its counter says 1)."""
    with only_host(walkthrough, "host1"):
        server = cli("server", "create", "--image", guest.id, "--flavor", "m1.tiny",
                     "--nic", "none", "--wait", "origin")
    assert server["status"] == "ACTIVE"
    assert _next_boot_count(cloud, walkthrough, server["id"], 0) == 1
    yield server
    _delete(walkthrough, [server["id"]])


def _delete(walkthrough, server_ids: list[str]) -> None:
    compute = walkthrough.tenant.compute
    for server_id in server_ids:
        compute.delete_server(server_id, ignore_missing=True)
    for server_id in server_ids:
        _wait(lambda: compute.find_server(server_id, ignore_missing=True) is None, 120,
              "server %s deleted" % server_id)


# --- tests ---------------------------------------------------------------------------

def test_a_snapshot_carries_the_disk_to_copies_and_rebuilds(cloud, walkthrough, guest,
                                                             origin, cli):
    tenant = walkthrough.tenant
    copies: list[str] = []
    with LifecycleCounter(_rig_host(cloud, "host1")["uri"]) as events:
        snap = cli("server", "image", "create", "--name", "origin-snap", "--wait",
                   origin["id"])
        assert snap["status"] == "active" and snap["size"] > 0
        server = tenant.compute.get_server(origin["id"])
        assert (server.status, server.task_state) == ("ACTIVE", None)
        shown = tenant.image.get("/images/%s" % snap["id"]).json()
        assert (shown["image_type"], shown["instance_uuid"]) == ("snapshot", origin["id"])
        assert shown["base_image_ref"] == guest.id and shown["owner"] == server.project_id
        assert _snapshot_leftovers(cloud, "host1", origin["id"]) == []
        assert _block_job(cloud, "host1", origin["id"]) == ""
        assert domstate(_rig_host(cloud, "host1")["uri"], origin["id"]) == \
            "running (booted)"
        try:
            # A copy on the other host, with the CLI; one on the same host, with the SDK.
            with only_host(walkthrough, "host2"):
                other = cli("server", "create", "--image", "origin-snap", "--flavor",
                            "m1.tiny", "--nic", "none", "--wait", "copy-host2")
            copies.append(other["id"])
            with only_host(walkthrough, "host1"):
                same = tenant.compute.create_server(
                    name="copy-host1", image_id=snap["id"],
                    flavor_id=tenant.compute.find_flavor("m1.tiny").id, networks="none")
                copies.append(same.id)
                walkthrough.wait(same, "ACTIVE", timeout=180)
            assert _host_of(walkthrough, other["id"]) == "host2"
            assert _host_of(walkthrough, same.id) == "host1"
            assert _next_boot_count(cloud, walkthrough, other["id"], 0) == 2
            assert _next_boot_count(cloud, walkthrough, same.id, 0) == 2
        finally:
            _delete(walkthrough, copies)
        # The tenant reverts the server onto its snapshot, then onto the image.
        seen = len(_boot_counts(cloud, "host1", origin["id"]))
        rebuilt = cli("server", "rebuild", "--image", "origin-snap", "--wait",
                      origin["id"])
        assert rebuilt["id"] == origin["id"]
        server = tenant.compute.get_server(origin["id"])
        assert (server.status, server.image.id) == ("ACTIVE", snap["id"])
        assert _host_of(walkthrough, origin["id"]) == "host1"
        assert _next_boot_count(cloud, walkthrough, origin["id"], seen) == 2
        cli("server", "rebuild", "--image", guest.id, "--wait", origin["id"])
        assert _next_boot_count(cloud, walkthrough, origin["id"], seen + 1) == 1
        assert events.paused(origin["id"]) == 0
    actions = [a["Action"] for a in cli("server", "event", "list", origin["id"])]
    assert actions.count("rebuild") == 2 and "createImage" in actions
    tenant.image.delete_image(snap["id"])


def test_three_daily_backups_with_rotation_two_leave_two(cloud, walkthrough, origin, cli):
    # ``server backup create`` of python-openstackclient 10.5 spells the
    # rotation ``--rotate`` (it sends createBackup's ``rotation``).
    made = []
    for n in range(1, 4):
        backup = cli("server", "backup", "create", "--name", "origin-daily-%d" % n,
                     "--type", "daily", "--rotate", "2", "--wait", origin["id"])
        made.append(backup["id"])
        _wait(lambda: walkthrough.tenant.compute.get_server(origin["id"]).task_state
              is None, 60, "the backup's rotation")
    images = {i["Name"] for i in cli("image", "list")}
    assert {"origin-daily-2", "origin-daily-3"} <= images
    assert "origin-daily-1" not in images
    assert _image_status(walkthrough, made[0]) is None
    actions = cli("server", "event", "list", origin["id"])
    assert [a["Action"] for a in actions].count("createBackup") == 3
    for image_id in made[1:]:
        walkthrough.tenant.image.delete_image(image_id)


# --- crashes ---------------------------------------------------------------------------

def _serving(cloud, host: str) -> int:
    """How many times ``host``'s agent started serving RPC (its log says)."""
    log = pathlib.Path(cloud.logs) / ("flotilla-compute-%s.log" % host)
    return log.read_text(errors="replace").count("RPC server compute.%s consuming" % host)


def _restart_compute(cloud, host: str, extra: dict[str, dict[str, object]],
                     killed: bool = False) -> None:
    """(Re)start ``host``'s agent with ``extra`` options in its config and
    wait until it serves (a request sent before would meet its start-up
    repair, which ends any snapshot it finds in progress)."""
    name = "flotilla-compute@%s" % host
    started = _serving(cloud, host)
    if not killed:
        cloud.stop_daemon(name)
    rig = _rig_host(cloud, host)
    sections = {"DEFAULT": {"host": host},
                "libvirt": {"connection_uri": rig["uri"],
                            "instances_path": rig["instances_path"]}}
    for section, options in extra.items():
        sections.setdefault(section, {}).update(options)
    text = "".join("[%s]\n%s\n" % (s, "".join("%s = %s\n" % kv for kv in o.items()))
                   for s, o in sections.items())
    (pathlib.Path(cloud.root) / "etc" / ("%s.conf" % host)).write_text(text)
    cloud.start_compute(host)
    _wait(lambda: _serving(cloud, host) > started, 120, "%s's agent serving" % host)


def _kill_compute(cloud, host: str) -> None:
    name = "flotilla-compute@%s" % host
    pid = cloud.state["pids"].pop(name)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


@pytest.fixture(scope="module")
def crash_server(cloud, walkthrough, guest):
    """A server on host2 whose overlay holds OVERLAY_DATA_MIB MiB of data,
    so copying and uploading it takes a while under a bandwidth limit."""
    tenant = walkthrough.tenant
    with only_host(walkthrough, "host2"):
        server = tenant.compute.create_server(
            name="crash", image_id=guest.id,
            flavor_id=tenant.compute.find_flavor("m1.tiny").id, networks="none")
        walkthrough.wait(server, "ACTIVE", timeout=180)
    tenant.compute.stop_server(server)
    walkthrough.wait(server, "SHUTOFF")
    disk = _instance_dir(cloud, "host2", server.id) / "disk"
    written = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 300M %dM"
                              % OVERLAY_DATA_MIB, str(disk)], capture_output=True,
                             text=True, timeout=120)
    assert written.returncode == 0, written.stderr
    tenant.compute.start_server(server)
    walkthrough.wait(server, "ACTIVE")
    _next_boot_count(cloud, walkthrough, server.id, 1)
    yield server
    _restart_compute(cloud, "host2", {})
    _delete(walkthrough, [server.id])


def _assert_back_and_clean(cloud, walkthrough, server, image_id: str, boots: int) -> None:
    back = _wait(lambda: (s := walkthrough.tenant.compute.get_server(server.id))
                 .task_state is None and s, 180, "the server back from its snapshot")
    assert (back.status, back.vm_state) == ("ACTIVE", "active")
    assert _image_status(walkthrough, image_id) in (None, "killed")
    assert _block_job(cloud, "host2", server.id) == ""
    assert _snapshot_leftovers(cloud, "host2", server.id) == []
    assert domstate(_rig_host(cloud, "host2")["uri"], server.id).startswith("running")
    assert len(_boot_counts(cloud, "host2", server.id)) == boots    # never rebooted
    action = next(a for a in walkthrough.tenant.compute.server_actions(server)
                  if a.action == "createImage")
    action = walkthrough.tenant.compute.get_server_action(action.request_id, server)
    assert action.message == "Error"
    details = [e.get("details") for e in action.events]
    assert "The snapshot was interrupted by a restart of the server's host service." \
        in details


def test_an_agent_killed_during_the_copy(cloud, walkthrough, crash_server):
    _restart_compute(cloud, "host2", {"libvirt": {"snapshot_copy_bandwidth": 1}})
    boots = len(_boot_counts(cloud, "host2", crash_server.id))
    image = walkthrough.tenant.compute.create_server_image(crash_server, "crash-copy")
    _wait(lambda: _block_job(cloud, "host2", crash_server.id) == "Block Copy", 60,
          "the snapshot's block copy")
    _kill_compute(cloud, "host2")
    # What the dead agent left: the job goes on, its temporary file is there.
    assert _block_job(cloud, "host2", crash_server.id) == "Block Copy"
    assert _snapshot_leftovers(cloud, "host2", crash_server.id)
    assert walkthrough.tenant.compute.get_server(crash_server.id).task_state == \
        "image_snapshot"
    _restart_compute(cloud, "host2", {}, killed=True)
    _assert_back_and_clean(cloud, walkthrough, crash_server, image.id, boots)


def test_an_agent_killed_during_the_upload(cloud, walkthrough, crash_server):
    _restart_compute(cloud, "host2", {"compute": {"image_upload_bandwidth": 1}})
    boots = len(_boot_counts(cloud, "host2", crash_server.id))
    image = walkthrough.tenant.compute.create_server_image(crash_server, "crash-upload")
    _wait(lambda: walkthrough.tenant.compute.get_server(crash_server.id).task_state
          == "image_uploading", 120, "the snapshot's upload")
    _wait(lambda: _image_status(walkthrough, image.id) == "saving", 30,
          "the image receiving data")
    _kill_compute(cloud, "host2")
    _restart_compute(cloud, "host2", {}, killed=True)
    _assert_back_and_clean(cloud, walkthrough, crash_server, image.id, boots)

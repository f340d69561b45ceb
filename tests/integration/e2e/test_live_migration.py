"""Live migration on the demo's two-host cloud with the real tiny guest,
through the public API with openstacksdk there and with the unmodified
``openstack server migrate --live-migration --wait`` CLI back (real daemons,
RabbitMQ, PostgreSQL, QEMU under two rig libvirtds).

The guest prints ``FLOTILLA-TICK n`` every 5 s on its serial console; the
destination writes the console to its own log file, so a guest that kept
running across the move keeps counting there, where the source left off.

Crash recovery: a SIGKILL of the source agent, the destination agent or the
conductor, and a restart of the destination's libvirtd, each in the middle
of a migration held back by a bandwidth limit; those, abort and
force-complete with a 1 GiB volume attached (hot-plugged), which must end
with the server, its data readable there.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import sys
import time

import pytest
import sqlalchemy as sa

from tests.fixtures.rig import domstate, rig_module, virsh
from tests.fixtures.waiting import wait_until
from tests.integration.e2e.test_snapshots import _delete, only_host
from tests.integration.e2e.test_volumes import (
    attach_marked_volume,
    check_volume_followed,
    delete_released_volume,
)

TICK = re.compile(r"FLOTILLA-TICK (\d+)")


def _rig(cloud, name: str) -> dict:
    return next(h for h in cloud.state["rig_hosts"] if h["name"] == name)


def _ticks(cloud, host: str, server_id: str) -> list[int]:
    log = pathlib.Path(_rig(cloud, host)["instances_path"]) / server_id / "console.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return [int(n) for n in TICK.findall(text)]


def _wait_ticks(cloud, host: str, server_id: str, count: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        ticks = _ticks(cloud, host, server_id)
        if len(ticks) >= count:
            return ticks
        if time.monotonic() > deadline:
            log = pathlib.Path(_rig(cloud, host)["instances_path"]) / server_id \
                / "console.log"
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else "(no log)"
            raise AssertionError("%d ticks on %s not seen within %ss; console:\n%s"
                                 % (count, host, timeout, tail))
        time.sleep(0.3)


def _admin_cli(cloud, *args: str) -> str:
    """``openstack ARGS`` as the cloud's admin; its standard output."""
    import os
    import subprocess

    from tests.fixtures.daemons import BIN
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update({"OS_AUTH_URL": cloud.auth_url, "OS_USERNAME": "admin",
                "OS_PASSWORD": cloud.state["credentials"]["admin"],
                "OS_PROJECT_NAME": "admin", "OS_USER_DOMAIN_NAME": "Default",
                "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3",
                "OS_REGION_NAME": "RegionOne"})
    proc = subprocess.run([str(BIN / "openstack"), *args], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


def _db_host(cloud, server_id: str) -> str:
    engine = sa.create_engine(cloud.state["database_url"])
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("select host from instances where uuid = :u"),
                                {"u": server_id}).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def tiny(cloud, walkthrough):
    from tools.demo.bringup import GUEST_BUILDER, _run
    meta = json.loads(_run([sys.executable, GUEST_BUILDER, "--json"]).stdout)
    image = walkthrough.tenant.image.create_image(
        name="tiny-migrating", filename=meta["image"], disk_format="qcow2",
        container_format="bare", wait=True, allow_duplicates=True)
    yield image
    walkthrough.tenant.image.delete_image(image, ignore_missing=True)


def test_live_migration_moves_a_running_guest_that_keeps_ticking(cloud, walkthrough,
                                                                   tiny):
    tenant, admin = walkthrough.tenant, walkthrough.admin
    flavor = tenant.compute.find_flavor("m1.tiny")
    with only_host(walkthrough, "host1"):
        server = tenant.compute.create_server(name="mover", image_id=tiny.id,
                                              flavor_id=flavor.id, networks="none")
        server = tenant.compute.wait_for_server(server, status="ACTIVE", wait=300)
    try:
        host1, host2 = _rig(cloud, "host1")["uri"], _rig(cloud, "host2")["uri"]
        before = _wait_ticks(cloud, "host1", server.id, 2, 180)
        started = time.monotonic()
        admin.compute.live_migrate_server(server, host=None, block_migration="auto")
        seen: list[dict] = []
        while True:
            now = admin.compute.get_server(server.id)
            migrations = admin.compute.get(
                "/servers/%s/migrations" % server.id,
                microversion="2.59").json()["migrations"]
            seen += migrations
            if now.status == "ACTIVE" and not now.task_state:
                break
            assert now.status in ("MIGRATING", "ACTIVE"), (now.status, now.fault)
            assert time.monotonic() - started < 300, "migration still running"
            time.sleep(0.3)
        elapsed = time.monotonic() - started
        print("live migration took %.1fs; progress seen: %s" % (
            elapsed, [(m["status"], m["memory_processed_bytes"], m["memory_total_bytes"])
                      for m in seen]))
        assert now.compute_host == "host2"
        assert _db_host(cloud, server.id) == "host2"
        # Only host2 runs it; host1 holds neither its definition nor its files.
        assert domstate(host2, server.id).startswith("running")
        assert server.id not in virsh(host1, "list", "--all", "--uuid").stdout
        assert not (pathlib.Path(_rig(cloud, "host1")["instances_path"]) / server.id).exists()
        assert "yes" in [line.split()[-1] for line in
                         virsh(host2, "dominfo", server.id).stdout.splitlines()
                         if line.startswith("Persistent")]
        # host2's definition (what starts it once stopped, what a cold
        # migration reads) names host2's files, not host1's.
        inactive = virsh(host2, "dumpxml", "--inactive", server.id).stdout
        assert str(_rig(cloud, "host1")["instances_path"]) not in inactive, inactive
        assert str(_rig(cloud, "host2")["instances_path"]) in inactive, inactive
        # The console kept going: host2's log counts on from where host1's stopped.
        after = _wait_ticks(cloud, "host2", server.id, 2, 90)
        assert after[0] > before[-1], (before, after)
        assert after[1] == after[0] + 5
        shown = tenant.compute.get_server_console_output(server.id)["output"]
        assert "FLOTILLA-TICK %d" % after[-1] in shown or TICK.search(shown)
        # The hypervisors' view (2.53 with_servers): it runs on host2 only.
        hypervisors = admin.compute.get("/os-hypervisors/detail?with_servers=true",
                                        microversion="2.53").json()["hypervisors"]
        assert [h["service"]["host"] for h in hypervisors
                if server.id in [s["uuid"] for s in h.get("servers", [])]] == ["host2"]
        # The migration record: completed, visible to admins.
        migrations = admin.compute.get("/os-migrations?instance_uuid=%s" % server.id,
                                       microversion="2.59").json()["migrations"]
        assert [(m["status"], m["source_compute"], m["dest_compute"],
                 m["migration_type"]) for m in migrations] == [
            ("completed", "host1", "host2", "live-migration")]
        # Only the instance's claim, on host2.
        engine = sa.create_engine(cloud.state["database_url"])
        try:
            with engine.connect() as conn:
                claims = conn.execute(sa.text(
                    "select consumer_id, host from allocations where consumer_id in "
                    "(:i, :m)"), {"i": server.id, "m": migrations[0]["uuid"]}).all()
        finally:
            engine.dispose()
        assert [tuple(c) for c in claims] == [(server.id, "host2")]
        # And back with the unmodified openstack CLI, to a named host.
        _admin_cli(cloud, "--os-compute-api-version", "2.30", "server", "migrate",
                   "--live-migration", "--host", "host1", "--wait", server.id)
        assert _db_host(cloud, server.id) == "host1"
        assert domstate(host1, server.id).startswith("running")
        assert server.id not in virsh(host2, "list", "--all", "--uuid").stdout
        shown = _admin_cli(cloud, "server", "migration", "list", "--server", server.id,
                           "-f", "json", "--os-compute-api-version", "2.59")
        assert sorted(m["Status"] for m in json.loads(shown)) == ["completed", "completed"]
    finally:
        _delete(walkthrough, [server.id])


# --- crash recovery ------------------------------------------------------------------
#
# One server moves back and forth: each test migrates it off the host it is on
# with the source's bandwidth held at 1 MiB/s (virsh migrate-setspeed, which
# the job takes when it starts), crashes one part of the cloud mid-job,
# restarts it, lifts the limit so what goes on ends soon, and checks what
# the cloud settled on: one host runs the guest and the database says which,
# the migration ended with a reason, nothing is left behind. The server has
# a volume attached (VOLUMES), which must end with it, its data readable.

HOSTS = ("host1", "host2")
VOLUMES: dict[str, str] = {}     # server id -> the id of the volume attached to it
_UNLIMITED_MIB = "8192"


def _serving(cloud, daemon: str, topic: str) -> int:
    """How many times ``daemon`` started consuming ``topic`` (its log says)."""
    log = pathlib.Path(cloud.logs) / ("%s.log" % daemon.replace("@", "-"))
    return log.read_text(errors="replace").count("RPC server %s consuming" % topic)


def _kill(cloud, daemon: str) -> None:
    pid = cloud.state["pids"].pop(daemon)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _restart(cloud, daemon: str) -> None:
    """SIGKILL ``daemon`` and start it again; returns once it serves."""
    topic = "compute.%s" % daemon.split("@")[1] if "@" in daemon else "conductor"
    before = _serving(cloud, daemon, topic)
    _kill(cloud, daemon)
    if "@" in daemon:
        cloud.start_compute(daemon.split("@")[1])
    else:
        cloud.start_controller(daemon)
    wait_until(lambda: _serving(cloud, daemon, topic) > before, 120,
               "%s serving again" % daemon)


def _restart_libvirtd(cloud, host: str) -> None:
    rig_module.restart_libvirtd(cloud.state["rig_root"], host)


def _migration(cloud, server_id: str) -> dict:
    engine = sa.create_engine(cloud.state["database_url"])
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text(
                "select uuid, status, error_reason, source_host, dest_host, "
                "memory_processed, updated_at from migrations "
                "where instance_uuid = :u order by id desc limit 1"), {"u": server_id})
            return dict(row.mappings().one())
    finally:
        engine.dispose()


def _claims(cloud, *consumers: str) -> list[tuple[str, str]]:
    engine = sa.create_engine(cloud.state["database_url"])
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(
                "select consumer_id, host from allocations where consumer_id in :c")
                .bindparams(sa.bindparam("c", expanding=True)), {"c": list(consumers)})]
    finally:
        engine.dispose()


def _outgoing(uri: str, server_id: str) -> bool:
    """Whether the server's domain on ``uri`` has a migration job running."""
    info = virsh(uri, "domjobinfo", server_id).stdout
    return "Unbounded" in info


def _start_held_migration(cloud, walkthrough, server) -> tuple[str, str, dict, list]:
    """Live-migrate ``server`` off its host with the source's bandwidth held
    at 1 MiB/s (virsh migrate-setspeed, which the job takes when it starts);
    returns once the job runs: (source, dest, rig URIs, ticks before)."""
    source = _db_host(cloud, server.id)
    dest = next(h for h in HOSTS if h != source)
    uris = {h: _rig(cloud, h)["uri"] for h in HOSTS}
    before = _wait_ticks(cloud, source, server.id, 1, 60)
    limited = virsh(uris[source], "migrate-setspeed", server.id, "1")
    assert limited.returncode == 0, limited.stderr
    walkthrough.admin.compute.live_migrate_server(server, host=None, block_migration="auto")

    def job_running() -> bool:
        migration = _migration(cloud, server.id)
        # Ended before its job ran: say why at once, not after the wait.
        assert migration["status"] not in ("error", "cancelled", "completed"), migration
        return migration["status"] == "running" and _outgoing(uris[source], server.id)
    wait_until(job_running, 60, "the migration's job")
    return source, dest, uris, before


@pytest.fixture(scope="module")
def crash_server(cloud, walkthrough, tiny):
    tenant = walkthrough.tenant
    with only_host(walkthrough, "host1"):
        server = tenant.compute.create_server(
            name="crash-mover", image_id=tiny.id,
            flavor_id=tenant.compute.find_flavor("m1.tiny").id, networks="none")
        server = tenant.compute.wait_for_server(server, status="ACTIVE", wait=300)
    _wait_ticks(cloud, "host1", server.id, 1, 180)
    volume = attach_marked_volume(cloud, walkthrough, server.id, "host1", "crash-volume")
    VOLUMES[server.id] = volume.id
    yield server
    _delete(walkthrough, [server.id])
    VOLUMES.pop(server.id)
    delete_released_volume(walkthrough, volume.id)


def _volume_followed(cloud, walkthrough, server_id: str, host: str) -> None:
    if server_id in VOLUMES:
        check_volume_followed(cloud, walkthrough, server_id, VOLUMES[server_id], host,
                              next(h for h in HOSTS if h != host))


def _crash_mid_migration(cloud, walkthrough, server, crash,
                         job_survives: bool = True) -> tuple[str, dict]:
    """Migrate ``server`` off its host, ``crash(source, dest)`` once the job
    runs (which it survives, unless not ``job_survives``), lift the limit,
    wait until the cloud settles and check it; returns the host the server
    ends on and its migration."""
    admin = walkthrough.admin
    started = time.monotonic()
    source, dest, uris, before = _start_held_migration(cloud, walkthrough, server)
    crash(source, dest)
    if job_survives:
        # The crash came mid-job: libvirtd still runs it, held back by the limit.
        assert _outgoing(uris[source], server.id)
    # Whatever still runs may now finish quickly.
    virsh(uris[source], "migrate-setspeed", server.id, _UNLIMITED_MIB)
    now = wait_until(lambda: (s := admin.compute.get_server(server.id)).task_state is None
                     and s, 240, "the server idle again")
    migration = wait_until(lambda: (m := _migration(cloud, server.id))["status"] in (
        "completed", "error") and m, 60, "the migration ended")
    host = _db_host(cloud, server.id)
    other = next(h for h in HOSTS if h != host)
    print("%s: %s (%s) after %.1fs" % (crash.__name__, migration["status"],
                                       migration["error_reason"],
                                       time.monotonic() - started))
    assert (now.status, now.compute_host) == ("ACTIVE", host), (now.status, now.fault)
    if migration["status"] == "error":
        assert migration["error_reason"]
        assert host == source
    else:
        assert host == dest
    # One host runs the guest, the one the database names; nothing of it on
    # the other.
    assert domstate(uris[host], server.id).startswith("running")
    assert server.id not in virsh(uris[other], "list", "--all", "--uuid").stdout
    assert not (pathlib.Path(_rig(cloud, other)["instances_path"]) / server.id).exists()
    # Only the instance's claim, on its host.
    assert _claims(cloud, server.id, migration["uuid"]) == [(server.id, host)]
    # The guest kept going: its console counts on where it runs.
    after = _wait_ticks(cloud, host, server.id,
                        len(_ticks(cloud, host, server.id)) + 1, 60)
    assert after[-1] > before[-1], (before, after)
    _volume_followed(cloud, walkthrough, server.id, host)
    return host, migration


def test_a_source_agent_killed_mid_migration(cloud, walkthrough, crash_server):
    def kill_source(source, dest):
        _restart(cloud, "flotilla-compute@%s" % source)
        # The restarted agent watches the job it had started: its progress
        # goes on being written.
        seen = _migration(cloud, crash_server.id)["updated_at"]
        wait_until(lambda: (m := _migration(cloud, crash_server.id))["updated_at"] > seen
                   and m["status"] == "running", 30, "progress after the restart")
    _crash_mid_migration(cloud, walkthrough, crash_server, kill_source)


def test_a_destination_agent_killed_mid_migration(cloud, walkthrough, crash_server):
    def kill_destination(source, dest):
        _restart(cloud, "flotilla-compute@%s" % dest)
    _crash_mid_migration(cloud, walkthrough, crash_server, kill_destination)


def test_the_conductor_killed_mid_migration(cloud, walkthrough, crash_server):
    def kill_conductor(source, dest):
        _restart(cloud, "flotilla-conductor")
    _crash_mid_migration(cloud, walkthrough, crash_server, kill_conductor)


def test_the_destination_libvirtd_restarted_mid_migration(cloud, walkthrough,
                                                         crash_server):
    def restart_destination_libvirtd(source, dest):
        _restart_libvirtd(cloud, dest)
    host, migration = _crash_mid_migration(cloud, walkthrough, crash_server,
                                           restart_destination_libvirtd,
                                           job_survives=False)
    # The incoming guest dies with its libvirtd: the guest stays where it ran.
    assert migration["status"] == "error"


# --- abort and force-complete with the unmodified CLI ---------------------------------

def _held_migration(cloud, walkthrough, server) -> tuple[str, str, dict, int, list]:
    """A live migration of ``server`` held at 1 MiB/s, its job running, as
    ``openstack server migration show`` sees it: (source, dest, rig URIs,
    the migration's API id, ticks before)."""
    source, dest, uris, before = _start_held_migration(cloud, walkthrough, server)

    def listed_with_progress():
        [one] = walkthrough.admin.compute.get(
            "/servers/%s/migrations" % server.id, microversion="2.59").json()["migrations"]
        return one if one["memory_processed_bytes"] else None
    # Progress from libvirt's job statistics, on the record, through the API.
    listed = wait_until(listed_with_progress, 60, "the migration's progress")
    assert listed["memory_total_bytes"] >= listed["memory_processed_bytes"] > 0, listed
    # By UUID: given an integer, OSC 10.5 swaps the SDK's arguments (see
    # ../shared/OPENSTACK-CLIENTS.md) and fails against Nova too.
    shown = json.loads(_admin_cli(cloud, "--os-compute-api-version", "2.59", "server",
                                  "migration", "show", server.id, listed["uuid"],
                                  "-f", "json"))
    assert (shown["Status"], shown["Source Compute"], shown["Dest Compute"]) == \
        ("running", source, dest), shown
    return source, dest, uris, listed["id"], before


def _settled(cloud, walkthrough, server, status: str, host: str, uris: dict,
             before: list) -> None:
    """The server is idle on ``host`` only, the migration ``status``, the
    guest still counting there."""
    now = wait_until(lambda: (s := walkthrough.admin.compute.get_server(server.id))
                     .task_state is None and s, 120, "the server idle again")
    migration = wait_until(lambda: (m := _migration(cloud, server.id))["status"] == status
                           and m, 60, "the migration " + status)
    other = next(h for h in HOSTS if h != host)
    assert (now.status, now.compute_host, _db_host(cloud, server.id)) == \
        ("ACTIVE", host, host)
    assert domstate(uris[host], server.id).startswith("running")
    assert server.id not in virsh(uris[other], "list", "--all", "--uuid").stdout
    assert _claims(cloud, server.id, migration["uuid"]) == [(server.id, host)]
    after = _wait_ticks(cloud, host, server.id, len(_ticks(cloud, host, server.id)) + 1, 60)
    assert after[-1] > before[-1], (before, after)
    _volume_followed(cloud, walkthrough, server.id, host)


def test_abort_with_the_cli_leaves_the_guest_on_its_source(cloud, walkthrough,
                                                           crash_server):
    source, _dest, uris, migration_id, before = _held_migration(cloud, walkthrough,
                                                                crash_server)
    _admin_cli(cloud, "--os-compute-api-version", "2.24", "server", "migration", "abort",
               crash_server.id, str(migration_id))
    _settled(cloud, walkthrough, crash_server, "cancelled", source, uris, before)


def test_force_complete_with_the_cli_finishes_a_held_migration(cloud, walkthrough,
                                                               crash_server):
    """At 1 MiB/s the job would take minutes; forced, the guest is paused,
    the limit lifted, and it arrives (running, not paused) on the other host."""
    _source, dest, uris, migration_id, before = _held_migration(cloud, walkthrough,
                                                                crash_server)
    _admin_cli(cloud, "--os-compute-api-version", "2.22", "server", "migration", "force",
               "complete", crash_server.id, str(migration_id))
    _settled(cloud, walkthrough, crash_server, "completed", dest, uris, before)


def test_force_complete_by_post_copy_where_permitted(cloud, walkthrough, crash_server):
    """With [libvirt] live_migration_permit_post_copy on the source, a forced
    migration switches to post-copy instead of pausing the guest: it runs on
    the destination at once and pulls the rest of its memory."""
    from tests.integration.e2e.test_snapshots import _restart_compute
    source = _db_host(cloud, crash_server.id)
    log = pathlib.Path(cloud.logs) / ("flotilla-compute-%s.log" % source)
    _restart_compute(cloud, source, {"libvirt": {"live_migration_permit_post_copy": "true"}})
    try:
        _source, dest, uris, migration_id, before = _held_migration(cloud, walkthrough,
                                                                    crash_server)
        _admin_cli(cloud, "--os-compute-api-version", "2.22", "server", "migration",
                   "force", "complete", crash_server.id, str(migration_id))
        _settled(cloud, walkthrough, crash_server, "completed", dest, uris, before)
        assert "live migration of %s switched to post-copy" % crash_server.id \
            in log.read_text(errors="replace")
    finally:
        _restart_compute(cloud, source, {})

"""`make demo`: a two-host Flotilla cloud on this machine, walked through as a tenant.

    python tools/demo/demo.py [--keep] [--root DIR]   # bring up, walk through
    python tools/demo/demo.py stop [--root DIR]       # stop a kept cloud

The walk-through uses only the public API, through the unmodified
openstacksdk, as the user ``demo`` of project ``demo``: upload the tiny real
Linux guest image, boot 4 servers and show them spread over both hosts, stop
one (an ACPI shutdown the guest obeys), start it, reboot it, print its
console; snapshot another one while it runs, boot a copy of it from the
snapshot on the other host and show the boot counter the copy found on its
disk; live-migrate a running one to the other host, printing the
migration's progress, and show with virsh that it runs there only and with
its console that it kept counting; resize another to a bigger flavor (it
moves to the other host cold, waits in VERIFY_RESIZE, is confirmed); drain
host1 as an operator would (disabled, one of its guests stopped first, every
guest migrated off it two at a time: live, or cold and confirmed for the
stopped one); delete them all. Every step prints its progress. Without --keep it
ends by stopping everything it started.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from tools.demo import boot_volume, moves  # noqa: E402
from tools.demo.bringup import GUEST_BUILDER, Bringup, _run  # noqa: E402

DEFAULT_ROOT = "/var/tmp/flotilla-demo"
SERVERS = 4
# os-services shows Nova's name since the API conformance work; older
# clouds showed Flotilla's.
COMPUTE_BINARIES = ("nova-compute", "flotilla-compute")
POWER = {0: "NOSTATE", 1: "Running", 3: "Paused", 4: "Shutdown", 6: "Crashed", 7: "Suspended"}

# Printed by --keep: a first session with the kept cloud (the openstack
# CLI in the venv; the guest image is kept).
TRY_IT = (
    ".venv/bin/openstack server create --image flotilla-guest --flavor m1.tiny "
    "--no-network --wait vm1",
    ".venv/bin/openstack volume create --size 1 vol1",
    ".venv/bin/openstack server add volume vm1 vol1",
    ".venv/bin/openstack console log show vm1 | tail   # the guest lists vdb",
)


def say(text: str) -> None:
    print(text, flush=True)


def step(text: str) -> None:
    say("\n==> " + text)


class Walkthrough:
    def __init__(self, cloud: Bringup) -> None:
        import openstack
        self.cloud = cloud
        creds = cloud.state["credentials"]
        common = {"auth_url": cloud.auth_url, "user_domain_name": "Default",
                  "project_domain_name": "Default", "region_name": "RegionOne",
                  "compute_api_version": "2", "identity_interface": "public"}
        self.tenant = openstack.connect(username="demo", password=creds["demo"],
                                        project_name="demo", **common)
        self.admin = openstack.connect(username="admin", password=creds["admin"],
                                       project_name="admin", **common)

    def wait(self, server, status: str, timeout: float = 300):
        return self.wait_all([server], status, timeout)[0]

    def wait_all(self, servers: list, status: str, timeout: float = 300) -> list:
        """Poll until every server is ``status``, printing each change as it
        happens."""
        last: dict = {}
        done: dict = {}
        deadline = time.monotonic() + timeout
        while len(done) < len(servers):
            for server in servers:
                if server.id in done:
                    continue
                server = self.tenant.compute.get_server(server.id)
                seen = (server.status, server.task_state, server.power_state)
                if seen != last.get(server.id):
                    say("    %-8s %-8s task=%-14s power=%s" % (
                        server.name, server.status, server.task_state or "-",
                        POWER.get(server.power_state, server.power_state)))
                    last[server.id] = seen
                if server.status == status and not server.task_state:
                    done[server.id] = server
                elif server.status == "ERROR":
                    raise RuntimeError("%s went to ERROR: %s" % (server.name, server.fault))
            if time.monotonic() > deadline:
                raise RuntimeError("servers not %s after %ss" % (status, timeout))
            if len(done) < len(servers):
                time.sleep(0.3)
        return [done[s.id] for s in servers]

    def host_table(self, ids: list[str]) -> dict[str, str]:
        """Where each server runs (the host is an admin-only attribute)."""
        hosts = {}
        say("    %-10s %-8s %-8s %s" % ("name", "host", "status", "power"))
        for server in sorted((self.admin.compute.get_server(i) for i in ids),
                             key=lambda s: s.name):
            hosts[server.id] = server.compute_host
            say("    %-10s %-8s %-8s %s" % (server.name, server.compute_host, server.status,
                                            POWER.get(server.power_state, "?")))
        return hosts

    def run(self, keep_image: bool = False) -> dict:
        """The walk-through; returns what it saw (for the e2e test).
        ``keep_image`` leaves the guest image for whoever tries the cloud."""
        summary: dict = {}
        step("upload the tiny Linux guest image (tools/guest-image)")
        meta = json.loads(_run([sys.executable, GUEST_BUILDER, "--json"]).stdout)
        started = time.monotonic()
        image = self.tenant.image.create_image(
            name="flotilla-guest", filename=meta["image"], disk_format="qcow2",
            container_format="bare", wait=True, allow_duplicates=True)
        image = self.tenant.image.get_image(image.id)
        say("    image %s: %s, %d bytes, sha256 %s... (%.1fs)" % (
            image.id, image.status, image.size, (image.hash_value or "")[:16],
            time.monotonic() - started))
        flavor = self.tenant.compute.find_flavor("m1.tiny")

        step("boot %d servers from it" % SERVERS)
        servers = [self.tenant.compute.create_server(
            name="demo-%d" % (i + 1), image_id=image.id, flavor_id=flavor.id,
            networks="none") for i in range(SERVERS)]
        servers = self.wait_all(servers, "ACTIVE")
        ids = [s.id for s in servers]
        step("where they run")
        hosts = self.host_table(ids)
        say("    %d servers on %d hosts" % (len(ids), len(set(hosts.values()))))
        summary["hosts"] = dict(hosts)    # where they were booted (moves change hosts)

        first = servers[0]
        step("stop demo-1: an ACPI shutdown its OS obeys")
        self.wait_console(first, meta["boot_marker"])
        self.tenant.compute.stop_server(first)
        self.wait(first, "SHUTOFF")
        rig = {h["name"]: h["uri"] for h in self.cloud.state["rig_hosts"]}
        reason = subprocess.run(["virsh", "-q", "-c", rig[hosts[first.id]], "domstate",
                                 "--reason", first.id], capture_output=True,
                                text=True).stdout.strip()
        say("    libvirt on %s says: %s" % (hosts[first.id], reason))
        summary["stop_reason"] = reason
        step("start demo-1")
        self.tenant.compute.start_server(first)
        self.wait(first, "ACTIVE")
        step("reboot demo-1 (soft)")
        self.tenant.compute.reboot_server(first, "SOFT")
        self.wait(first, "ACTIVE")
        self.wait_console(first, meta["boot_marker"], count=3)
        step("console of demo-1 (the guest's own boot messages)")
        console = self.tenant.compute.get_server_console_output(first, length=25)
        summary["console"] = console.get("output", "")
        for line in summary["console"].splitlines():
            say("    | " + line)

        summary["snapshot"] = self.snapshot_and_copy(servers[1], hosts, flavor, meta)
        servers.append(self.tenant.compute.get_server(summary["snapshot"]["copy"]))
        hosts[summary["snapshot"]["copy"]] = summary["snapshot"]["copy_host"]
        summary["volume"] = self.volume_move(servers, hosts)
        summary["boot_from_volume"] = boot_volume.boot_from_volume(self, image, flavor, meta,
                                                                   say, step)

        summary["migration"] = self.live_migrate(servers[2], hosts, meta)
        hosts[servers[2].id] = summary["migration"]["dest"]
        summary["resize"] = moves.resize(self, servers[3], hosts, say, step)
        summary["drain"] = moves.drain(self, "host1", hosts, say, step,
                                       keep_running=frozenset({servers[0].id}))
        summary["evacuate"] = moves.evacuate(self, servers[0], hosts, say, step)

        step("delete every server")
        for server in servers:
            self.tenant.compute.delete_server(server)
        for server in servers:
            self.tenant.compute.wait_for_delete(server, interval=0.5, wait=120)
            say("    %s deleted" % server.name)
        self.tenant.image.delete_image(summary["snapshot"]["image"])
        if keep_image:
            say("    snapshot image deleted; %s kept to boot from" % image.name)
        else:
            self.tenant.image.delete_image(image)
            say("    images deleted")
        summary["servers"] = ids
        summary["boot_marker"] = meta["boot_marker"]
        return summary

    def snapshot_and_copy(self, source, hosts: dict[str, str], flavor, meta: dict) -> dict:
        """Snapshot ``source`` (running, booted once) and boot a copy of it
        on the other host; the copy's boot counter comes from the disk."""
        marker = meta["boot_count_marker"]
        self.wait_console(source, marker)
        step("snapshot %s while it runs (its disk says it booted %d time(s))"
             % (source.name, self.boot_count(source, marker)))
        started = time.monotonic()
        image_id = self.tenant.compute.create_server_image(source, source.name + "-snap").id
        last = None
        while True:
            server = self.tenant.compute.get_server(source.id)
            image = self.tenant.image.get_image(image_id)
            seen = (server.status, server.task_state, image.status)
            if seen != last:
                say("    %-8s %-8s task=%-20s image %s" % (server.name, server.status,
                                                        server.task_state or "-",
                                                        image.status))
                last = seen
            if image.status == "active" and not server.task_state:
                break
            if image.status in ("killed", "deleted") or server.status == "ERROR":
                raise RuntimeError("the snapshot of %s failed" % source.name)
            if time.monotonic() - started > 300:
                raise RuntimeError("the snapshot of %s took over 300s" % source.name)
            time.sleep(0.2)
        say("    image %s: %s, %d bytes, taken in %.1fs; %s kept running" % (
            image.id, image.status, image.size, time.monotonic() - started, source.name))
        here = hosts[source.id]
        there = next(h["name"] for h in self.cloud.state["rig_hosts"] if h["name"] != here)
        step("boot a copy of %s from its snapshot on %s" % (source.name, there))
        say("    (the admin disables %s's compute service meanwhile: the copy can only "
            "go to %s)" % (here, there))
        service = next(s for s in self.admin.compute.services()
                       if s.binary in COMPUTE_BINARIES and s.host == here)
        self.admin.compute.disable_service(service, disabled_reason="demo: place the copy")
        try:
            copy = self.tenant.compute.create_server(
                name=source.name + "-copy", image_id=image_id, flavor_id=flavor.id,
                networks="none")
            copy = self.wait(copy, "ACTIVE")
        finally:
            self.admin.compute.enable_service(service)
        copy_host = self.host_table([copy.id])[copy.id]
        self.wait_console(copy, marker)
        count = self.boot_count(copy, marker)
        say("    %s on %s printed: %s %d (its disk remembered %s's boot)"
            % (copy.name, copy_host, marker, count, source.name))
        return {"image": image_id, "copy": copy.id, "copy_host": copy_host,
                "source_host": here, "boot_count": count}

    def volume_move(self, servers: list, hosts: dict[str, str]) -> dict:
        """A volume written by a server on one host, then attached to a
        server on the other: the second guest finds the first one's marker."""
        storage = self.tenant.block_storage
        first = servers[0]
        second = next(s for s in servers if hosts[s.id] != hosts[first.id])
        step("create a 1 GiB volume and attach it to %s (on %s)"
             % (first.name, hosts[first.id]))
        started = time.monotonic()
        volume = storage.create_volume(size=1, name="demo-volume")
        volume = storage.wait_for_status(volume, "available", interval=0.5, wait=60)
        say("    volume %s available (%.1fs)" % (volume.id, time.monotonic() - started))
        started = time.monotonic()
        self.tenant.compute.create_volume_attachment(first, volume_id=volume.id)
        volume = storage.wait_for_status(volume, "in-use", interval=0.5, wait=60)
        say("    in-use as %s of %s (%.1fs)" % (volume.attachments[0]["device"],
                                                   first.name, time.monotonic() - started))
        self.wait_console(first, "FLOTILLA-DISK-MARKER vdb written %s" % first.id)
        step("detach it from %s, extend it to 2 GiB and attach it to %s (on %s)"
             % (first.name, second.name, hosts[second.id]))
        self.tenant.compute.delete_volume_attachment(first, volume.id)
        storage.wait_for_status(volume, "available", interval=0.5, wait=60)
        say("    detached: the guest let go of vdb, the export is gone")
        started = time.monotonic()
        storage.extend_volume(volume, 2)
        while (lambda v: (v.status, v.size) != ("available", 2))(storage.get_volume(volume.id)):
            if time.monotonic() - started > 60:
                raise RuntimeError("volume %s was not extended" % volume.id)
            time.sleep(0.5)
        say("    extended to 2 GiB while detached (%.1fs)" % (time.monotonic() - started))
        self.tenant.compute.create_volume_attachment(second, volume_id=volume.id)
        storage.wait_for_status(volume, "in-use", interval=0.5, wait=60)
        self.wait_console(second, "FLOTILLA-DISK-SIZE vdb %d" % (2 * 1024 ** 3))
        found = "FLOTILLA-DISK-MARKER vdb found %s" % first.id
        self.wait_console(second, found)
        say("    %s on %s read the marker %s wrote on %s: the data came along"
            % (second.name, hosts[second.id], first.name, hosts[first.id]))
        step("extend it to 3 GiB while %s runs with it attached (online)" % second.name)
        started = time.monotonic()
        storage.extend_volume(volume, 3)
        while (lambda v: (v.status, v.size) != ("in-use", 3))(storage.get_volume(volume.id)):
            now = storage.get_volume(volume.id)
            if now.status.startswith("error") or time.monotonic() - started > 60:
                raise RuntimeError("volume %s was not extended online: %s"
                                   % (volume.id, now.status))
            time.sleep(0.2)
        self.wait_console(second, "FLOTILLA-DISK-SIZE vdb %d" % (3 * 1024 ** 3))
        online = time.monotonic() - started
        say("    the guest of %s sees vdb at 3 GiB, still in-use (%.1fs)"
            % (second.name, online))
        snapshot_copy = self.volume_snapshot_copy(volume, first, hosts)
        self.tenant.compute.delete_volume_attachment(second, volume.id)
        storage.wait_for_status(volume, "available", interval=0.5, wait=60)
        storage.delete_volume(volume)
        storage.wait_for_delete(volume, interval=0.5, wait=60)
        say("    volume detached and deleted")
        return {"volume": volume.id, "from": first.id, "to": second.id,
                "from_host": hosts[first.id], "to_host": hosts[second.id],
                "snapshot_copy": snapshot_copy, "online_extend_s": online}

    def volume_snapshot_copy(self, volume, first, hosts: dict[str, str]) -> dict:
        """Snapshot the in-use volume and clone it (both crash-consistent,
        the guest keeps running), make a volume from the snapshot, and
        attach both to ``first``, whose guest finds its own marker on each."""
        storage = self.tenant.block_storage
        step("snapshot the in-use volume and clone it; attach the volume made from the "
             "snapshot and the clone to %s" % first.name)
        started = time.monotonic()
        snapshot = storage.create_snapshot(volume_id=volume.id, name="demo-snapshot")
        snapshot = storage.wait_for_status(snapshot, "available", interval=0.5, wait=120)
        copy = storage.create_volume(snapshot_id=snapshot.id, name="demo-volume-copy")
        clone = storage.create_volume(source_volume_id=volume.id, name="demo-volume-clone")
        copy = storage.wait_for_status(copy, "available", interval=0.5, wait=120)
        clone = storage.wait_for_status(clone, "available", interval=0.5, wait=120)
        say("    snapshot %s, volume %s from it and clone %s (%.1fs)"
            % (snapshot.id, copy.id, clone.id, time.monotonic() - started))
        # Both at once (vdb, vdc): the guest reports a disk when it appears.
        for made, what, device in [(copy, "copy", "vdb"), (clone, "clone", "vdc")]:
            self.tenant.compute.create_volume_attachment(first, volume_id=made.id)
            storage.wait_for_status(made, "in-use", interval=0.5, wait=60)
            self.wait_console(first, "FLOTILLA-DISK-MARKER %s found %s" % (device, first.id))
            say("    %s on %s found its own marker on the %s (%s)"
                % (first.name, hosts[first.id], what, device))
        for made in (copy, clone):
            self.tenant.compute.delete_volume_attachment(first, made.id)
            storage.wait_for_status(made, "available", interval=0.5, wait=60)
            storage.delete_volume(made)
        for made in (copy, clone):
            storage.wait_for_delete(made, interval=0.5, wait=60)
        storage.delete_snapshot(snapshot)
        storage.wait_for_delete(snapshot, interval=0.5, wait=60)
        say("    copy, clone and snapshot deleted")
        return {"snapshot": snapshot.id, "copy": copy.id, "clone": clone.id}

    def ticks(self, server, marker: str) -> list[int]:
        output = self.tenant.compute.get_server_console_output(server).get("output", "")
        return [int(n) for n in re.findall(r"%s (\d+)" % re.escape(marker), output)]

    def live_migrate(self, server, hosts: dict[str, str], meta: dict) -> dict:
        """Live-migrate ``server`` to the other host (the admin's call, the
        scheduler's choice) printing the progress libvirt reports, then show
        with virsh where it runs and that its console kept counting."""
        marker = meta["tick_marker"]
        here = hosts[server.id]
        step("live-migrate %s off %s while it runs" % (server.name, here))
        deadline = time.monotonic() + 120
        while not self.ticks(server, marker):
            if time.monotonic() > deadline:
                raise RuntimeError("%s never printed %s" % (server.name, marker))
            time.sleep(1)
        before = self.ticks(server, marker)[-1]
        say("    its console counts: %s %d" % (marker, before))
        started = time.monotonic()
        self.admin.compute.live_migrate_server(server, host=None, block_migration="auto")
        last = None
        while True:
            now = self.admin.compute.get_server(server.id)
            migrations = self.admin.compute.get(
                "/servers/%s/migrations" % server.id,
                microversion="2.59").json()["migrations"]
            for m in migrations:
                seen = (m["status"], m["memory_processed_bytes"], m["disk_processed_bytes"])
                if seen != last:
                    say("    migration %-10s memory %s/%s MiB  disk %s/%s MiB" % (
                        m["status"], _mib(m["memory_processed_bytes"]),
                        _mib(m["memory_total_bytes"]), _mib(m["disk_processed_bytes"]),
                        _mib(m["disk_total_bytes"])))
                    last = seen
            if now.status == "ACTIVE" and not now.task_state:
                break
            if now.status == "ERROR" or time.monotonic() - started > 300:
                raise RuntimeError("the live migration of %s failed: %s"
                                   % (server.name, now.fault))
            time.sleep(0.3)
        there = now.compute_host
        record = self.admin.compute.get("/os-migrations?instance_uuid=%s" % server.id,
                                        microversion="2.59").json()["migrations"][0]
        say("    migration %s: %s -> %s in %.1fs" % (record["status"], here, there,
                                                    time.monotonic() - started))
        rig = {h["name"]: h["uri"] for h in self.cloud.state["rig_hosts"]}
        there_state = subprocess.run(["virsh", "-q", "-c", rig[there], "domstate",
                                      "--reason", server.id], capture_output=True,
                                     text=True).stdout.strip()
        here_list = subprocess.run(["virsh", "-q", "-c", rig[here], "list", "--all",
                                    "--uuid"], capture_output=True, text=True).stdout
        say("    virsh on %s: %s" % (there, there_state))
        say("    virsh on %s: %s" % (here, "no such domain" if server.id not in here_list
                                      else "still defined!"))
        deadline = time.monotonic() + 60
        while not [t for t in self.ticks(server, marker) if t > before]:
            if time.monotonic() > deadline:
                raise RuntimeError("%s stopped counting after the migration" % server.name)
            time.sleep(1)
        after = self.ticks(server, marker)[-1]
        say("    its console on %s goes on: %s %d" % (there, marker, after))
        return {"source": here, "dest": there, "status": record["status"],
                "dest_state": there_state, "on_source": server.id in here_list,
                "ticks": (before, after)}

    def boot_count(self, server, marker: str) -> int:
        """The boot counter the guest printed at its latest boot."""
        output = self.tenant.compute.get_server_console_output(server).get("output", "")
        counts = re.findall(r"%s (\d+)" % re.escape(marker), output)
        return int(counts[-1]) if counts else 0

    def wait_console(self, server, marker: str, count: int = 1, timeout: float = 120) -> None:
        """Until the guest printed ``marker`` ``count`` times (booted)."""
        deadline = time.monotonic() + timeout
        while True:
            output = self.tenant.compute.get_server_console_output(server).get("output", "")
            if output.count(marker) >= count:
                say("    %s: the guest printed %s" % (server.name, marker))
                return
            if time.monotonic() > deadline:
                raise RuntimeError("%s never printed %s" % (server.name, marker))
            time.sleep(1)


def _mib(value) -> str:
    return "-" if value is None else "%d" % (value // (1024 * 1024))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo")
    parser.add_argument("action", nargs="?", default="run", choices=("run", "stop"))
    parser.add_argument("--keep", action="store_true",
                        help="leave the cloud running at the end")
    parser.add_argument("--root", default=DEFAULT_ROOT)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        say("the demo needs root (it starts libvirt hosts)")
        return 1
    if args.action == "stop":
        Bringup.load(args.root, say).down()
        say("Flotilla demo stopped; logs kept in %s/logs" % args.root)
        return 0
    cloud = Bringup(args.root, hosts=2, say=say)
    step("bring up a two-host cloud: rig hosts, RabbitMQ, PostgreSQL, daemons")
    cloud.up()
    failed = False
    try:
        Walkthrough(cloud).run(keep_image=args.keep)
    except Exception as exc:
        failed = True
        say("\nDEMO FAILED: %s" % exc)
    finally:
        say("\nLogs: %s/*.log (libvirt's and QEMU's in libvirt-host*/ once the cloud "
            "is stopped)" % cloud.logs)
        if args.keep and not failed:
            env = cloud.root / "demo-openrc"
            creds = cloud.state["credentials"]
            env.write_text(
                "export OS_AUTH_URL=%s OS_USERNAME=demo OS_PASSWORD=%s OS_PROJECT_NAME=demo\n"
                "export OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default\n"
                % (cloud.auth_url, creds["demo"]))
            os.chmod(env, 0o600)
            # The admin's, for what needs one (make tempest CLOUD=...).
            admin_env = cloud.root / "admin-openrc"
            admin_env.write_text(
                "export OS_AUTH_URL=%s OS_USERNAME=admin OS_PASSWORD=%s "
                "OS_PROJECT_NAME=admin\n"
                "export OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default\n"
                % (cloud.auth_url, creds["admin"]))
            os.chmod(admin_env, 0o600)
            say("The cloud is still running. To use it:\n"
                "    source %s\n%s\n"
                "As admin (live migration, host maintenance): source %s, then e.g.\n"
                "    .venv/bin/openstack server migrate --live-migration --wait <server id>\n"
                "OpenStack's API tests against it: make tempest CLOUD=%s\n"
                "Stop it with: make demo-stop"
                % (env, "\n".join("    " + c for c in TRY_IT), admin_env, admin_env))
        else:
            statuses = cloud.down()
            say("Everything stopped (%s); nothing is left running." % ", ".join(
                "%s=%s" % (k, v) for k, v in statuses.items()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

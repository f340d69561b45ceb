"""Live migration through the API vs the same migration by hand with virsh,
and a host drain vs the migrations it is made of.

    .venv/bin/python tools/bench/migrate.py [--rounds 3] [--drain 4]

Brings up a two-host cloud (tools/demo/bringup.py: two rig hosts with QEMU,
a RabbitMQ vhost, a PostgreSQL database, every daemon as a process),
uploads the tiny real guest image and boots a server from it on host1.
Then, taking turns, ``--rounds`` times each, back and forth between the
two hosts:

* **API**: ``POST /servers/{id}/action {"os-migrateLive": {"host": the
  other}}`` until its migration record is ``completed`` (polled every
  50 ms);
* **by hand**: an identical guest (the server's own domain XML under a new
  uuid, its own overlay on the same cached base, defined on the rig host
  outside the cloud, which leaves a domain it has no record of alone) moved
  with ``virsh migrate --live --p2p --copy-storage-inc --persistent
  --undefinesource --migrate-disks vda --xml <its XML for the other
  host>``, onto an empty overlay on the same base made there first (what
  Flotilla's prepare step does on the destination).

The guest's downtime for both comes from libvirt's statistics of the
completed job on the destination (``virsh domjobinfo --completed``).

Then the drain: ``--drain`` servers booted on host1 are live-migrated to
host2 one at a time through the API (the sum of their times), then host2
is drained back onto host1 (flotilla.drain through the API, two at once,
what ``flotilla host drain`` runs).

Prints the medians, the ratio API / by hand (goal <= 1.2x), the median
and worst downtime (goal <= 100 ms), and the drain against the sum of
single migrations. Asserts nothing; everything it started is stopped and
removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from flotilla.cli.host_drain import APIBackend  # noqa: E402
from flotilla.drain import Drainer  # noqa: E402
from tests.fixtures.ports import free_port, free_port_block  # noqa: E402
from tools.bench.rigcloud import say  # noqa: E402
from tools.demo.bringup import GUEST_BUILDER, Bringup, _run  # noqa: E402
from tools.demo.demo import Walkthrough  # noqa: E402

GOAL_RATIO = 1.2
GOAL_DOWNTIME_MS = 100
COMPUTE_BINARIES = ("nova-compute", "flotilla-compute")


def virsh(uri: str, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["virsh", "-q", "-c", uri, *args], capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise RuntimeError("virsh %s: %s" % (" ".join(args), proc.stderr.strip()))
    return proc.stdout


def downtime_ms(uri: str, domain: str) -> int | None:
    """The guest's downtime in the completed migration, from the
    destination's statistics of its completed incoming job."""
    out = virsh(uri, "domjobinfo", "--completed", domain, check=False)
    # virsh pads between the figure and its unit ("Total downtime: 23   ms").
    match = re.search(r"Total downtime:\s+(\d+)\s+ms", out)
    return int(match.group(1)) if match else None


class Bench:
    def __init__(self, cloud: Bringup, rounds: int, drain: int) -> None:
        self.cloud = cloud
        self.walk = Walkthrough(cloud)
        self.rounds = rounds
        self.drain_count = drain
        self.hosts = {h["name"]: h for h in cloud.state["rig_hosts"]}
        self.ref_uuid = str(uuid.uuid4())
        self.ref_at: str | None = None

    # --- placement ----------------------------------------------------------------

    def _service(self, host: str):
        return next(s for s in self.walk.admin.compute.services()
                    if s.binary in COMPUTE_BINARIES and s.host == host)

    @contextlib.contextmanager
    def only(self, host: str):
        """Every other compute host disabled meanwhile (to place servers)."""
        others = [self._service(h) for h in self.hosts if h != host]
        for service in others:
            self.walk.admin.compute.disable_service(service, disabled_reason="bench placement")
        try:
            yield
        finally:
            for service in others:
                self.walk.admin.compute.enable_service(service)

    def boot(self, names: list[str], host: str) -> list:
        tenant = self.walk.tenant
        with self.only(host):
            servers = [tenant.compute.create_server(
                name=n, image_id=self.image.id, flavor_id=self.flavor.id, networks="none")
                for n in names]
            return self.walk.wait_all(servers, "ACTIVE")

    def prepare(self) -> None:
        tenant = self.walk.tenant
        self.meta = json.loads(_run([sys.executable, GUEST_BUILDER, "--json"]).stdout)
        self.image = tenant.image.create_image(
            name="bench-guest", filename=self.meta["image"], disk_format="qcow2",
            container_format="bare", wait=True)
        self.flavor = tenant.compute.find_flavor("m1.tiny")
        # host2 gets the base image in its cache (the by-hand guest needs it).
        warm = self.boot(["bench-warm"], "host2")[0]
        tenant.compute.delete_server(warm)
        tenant.compute.wait_for_delete(warm, interval=0.5, wait=120)
        self.server = self.boot(["bench"], "host1")[0]
        self.walk.wait_console(self.server, self.meta["boot_marker"])
        self.define_reference("host1")

    # --- the API's migration --------------------------------------------------------

    def host_of(self, server_id: str) -> str:
        return self.walk.admin.compute.get_server(server_id).compute_host

    def api_round(self, server_id: str) -> tuple[float, str, str]:
        """One live migration through the API to the other host: seconds
        from the request to the record ``completed``; source, destination."""
        admin = self.walk.admin
        here = self.host_of(server_id)
        there = next(h for h in self.hosts if h != here)
        started = time.monotonic()
        response = admin.compute.post(
            "/servers/%s/action" % server_id, microversion="2.30",
            json={"os-migrateLive": {"host": there, "block_migration": "auto"}})
        if response.status_code != 202:
            raise RuntimeError("os-migrateLive: %s" % response.text)
        while True:
            records = admin.compute.get("/os-migrations?instance_uuid=%s" % server_id,
                                        microversion="2.59").json()["migrations"]
            newest = max(records, key=lambda m: m["created_at"]) if records else None
            if newest and newest["status"] in ("completed", "error", "failed",
                                               "cancelled"):
                break
            if time.monotonic() - started > 600:
                raise RuntimeError("the migration of %s did not end" % server_id)
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        if newest["status"] != "completed":
            raise RuntimeError("the migration of %s ended %s" % (server_id, newest["status"]))
        return elapsed, here, there

    # --- the same by hand -----------------------------------------------------------

    def _base(self, disk: pathlib.Path) -> str:
        info = json.loads(_run(["qemu-img", "info", "-U", "--output=json",
                                str(disk)]).stdout)
        return info["full-backing-filename"]

    def _base_on(self, host: str, here: str, base: str) -> str:
        """The same cached base in ``host``'s cache (<instances_path>/_base)."""
        path = base.replace(self.hosts[here]["instances_path"],
                            self.hosts[host]["instances_path"])
        if not pathlib.Path(path).is_file():
            raise RuntimeError("%s has no cached copy of %s" % (host, base))
        return path

    def _overlay(self, host: str, base: str) -> pathlib.Path:
        directory = pathlib.Path(self.hosts[host]["instances_path"]) / self.ref_uuid
        directory.mkdir(parents=True, exist_ok=True)
        disk = directory / "disk"
        _run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base,
              str(disk), str(self.size)])
        return disk

    def _xml_for(self, host: str, source_xml: str, source_host: str, source_base: str,
                 base: str) -> str:
        xml = source_xml.replace(self.hosts[source_host]["instances_path"],
                                 self.hosts[host]["instances_path"])
        return xml.replace(source_base, base)

    def define_reference(self, host: str) -> None:
        """The by-hand guest: the server's XML under a new uuid (name, paths
        and all), its own overlay on the same base, started on ``host``."""
        uri = self.hosts[host]["uri"]
        source_disk = pathlib.Path(self.hosts[host]["instances_path"]) / self.server.id / "disk"
        self.base = {host: self._base(source_disk)}
        self.size = json.loads(_run(["qemu-img", "info", "-U", "--output=json",
                                     str(source_disk)]).stdout)["virtual-size"]
        xml = virsh(uri, "dumpxml", "--inactive", self.server.id).replace(
            self.server.id, self.ref_uuid)
        self._overlay(host, self.base[host])
        path = pathlib.Path(tempfile.mkstemp(prefix="bench-ref-", suffix=".xml")[1])
        path.write_text(xml)
        virsh(uri, "define", str(path))
        virsh(uri, "start", self.ref_uuid)
        path.unlink()
        self.ref_xml = xml
        self.ref_at = host
        log = pathlib.Path(self.hosts[host]["instances_path"]) / self.ref_uuid / "console.log"
        deadline = time.monotonic() + 180
        while self.meta["boot_marker"] not in (log.read_text(errors="replace")
                                                 if log.exists() else ""):
            if time.monotonic() > deadline:
                say("    (the by-hand guest's console shows no boot yet; going on)")
                break
            time.sleep(1)

    def hand_round(self) -> float:
        here = self.ref_at
        there = next(h for h in self.hosts if h != here)
        if there not in self.base:
            self.base[there] = self._base_on(there, here, self.base[here])
        self._overlay(there, self.base[there])
        dest_xml = self._xml_for(there, self.ref_xml, here, self.base[here], self.base[there])
        path = pathlib.Path(tempfile.mkstemp(prefix="bench-ref-", suffix=".xml")[1])
        path.write_text(dest_xml)
        started = time.monotonic()
        virsh(self.hosts[here]["uri"], "migrate", "--live", "--p2p", "--copy-storage-inc",
              "--persistent", "--undefinesource", "--migrate-disks", "vda",
              "--xml", str(path), self.ref_uuid, self.hosts[there]["uri"])
        elapsed = time.monotonic() - started
        path.unlink()
        shutil.rmtree(pathlib.Path(self.hosts[here]["instances_path"]) / self.ref_uuid,
                      ignore_errors=True)
        self.ref_xml, self.ref_at = dest_xml, there
        return elapsed

    def remove_reference(self) -> None:
        if self.ref_at is None:
            return
        uri = self.hosts[self.ref_at]["uri"]
        virsh(uri, "destroy", self.ref_uuid, check=False)
        virsh(uri, "undefine", self.ref_uuid, check=False)
        for host in self.hosts.values():
            shutil.rmtree(pathlib.Path(host["instances_path"]) / self.ref_uuid,
                          ignore_errors=True)

    # --- the run --------------------------------------------------------------------

    def run(self) -> dict:
        self.prepare()
        api, hand, api_down, hand_down = [], [], [], []
        try:
            for n in range(self.rounds):
                elapsed, _, there = self.api_round(self.server.id)
                down = downtime_ms(self.hosts[there]["uri"], self.server.id)
                api.append(elapsed)
                api_down.append(down)
                say("round %d  API     %6.2f s  downtime %s ms" % (n + 1, elapsed, down))
                elapsed = self.hand_round()
                down = downtime_ms(self.hosts[self.ref_at]["uri"], self.ref_uuid)
                hand.append(elapsed)
                hand_down.append(down)
                say("round %d  by hand %6.2f s  downtime %s ms" % (n + 1, elapsed, down))
        finally:
            self.remove_reference()
        # Only the drain's own servers from here on.
        self.walk.tenant.compute.delete_server(self.server)
        self.walk.tenant.compute.wait_for_delete(self.server, interval=0.5, wait=120)
        drain = self.drain() if self.drain_count else None
        return {"api": api, "hand": hand, "api_down": api_down, "hand_down": hand_down,
                "drain": drain}

    def drain(self) -> dict:
        say("drain: %d servers on host1, moved one at a time, then host2 drained"
            % self.drain_count)
        servers = self.boot(["drain-%d" % i for i in range(self.drain_count)], "host1")
        singles = []
        for server in servers:
            elapsed, _, _ = self.api_round(server.id)
            singles.append(elapsed)
            say("    %s alone: %.2f s" % (server.name, elapsed))
        drainer = Drainer(APIBackend(self.walk.admin), max_concurrent=2, poll_interval=0.2)
        started = time.monotonic()
        result = drainer.drain("host2", "bench drain")
        elapsed = time.monotonic() - started
        self.walk.admin.compute.enable_service(self._service("host2"))
        moved = len(result.moved)
        say("    drain of host2: %.2f s, %d moved, %d not" % (elapsed, moved, len(result.failed)))
        for server in servers:
            self.walk.tenant.compute.delete_server(server)
        return {"singles": singles, "drain": elapsed, "moved": moved,
                "failed": len(result.failed)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-migrate")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--drain", type=int, default=4,
                        help="servers in the drain comparison (0: none)")
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="bench-migrate-")
    cloud = Bringup(root, hosts=2, api_port=free_port(),
                    rig_base_port=free_port_block(4, start=19100, end=20000), say=say)
    cloud.up()
    try:
        figures = Bench(cloud, args.rounds, args.drain).run()
    finally:
        cloud.down(keep_logs=False)
        shutil.rmtree(root, ignore_errors=True)
    api, hand = statistics.median(figures["api"]), statistics.median(figures["hand"])
    say("")
    say("%-58s %8.2f s" % ("API: os-migrateLive -> migration completed (median)", api))
    say("%-58s %8.2f s" % ("by hand: virsh migrate --live --p2p --copy-storage-inc", hand))
    say("%-58s %8.2fx (goal <= %.1fx)" % ("ratio API / by hand", api / hand, GOAL_RATIO))
    downs = [d for d in figures["api_down"] if d is not None]
    if downs:
        say("%-58s %5d ms median, %d ms worst (goal <= %d ms)" % (
            "guest downtime through the API", statistics.median(downs), max(downs),
            GOAL_DOWNTIME_MS))
    hand_downs = [d for d in figures["hand_down"] if d is not None]
    if hand_downs:
        say("%-58s %5d ms median, %d ms worst" % (
            "guest downtime by hand", statistics.median(hand_downs), max(hand_downs)))
    drain = figures["drain"]
    if drain:
        total = sum(drain["singles"])
        say("%-58s %8.2f s" % ("drain of %d guests (2 at once)" % len(drain["singles"]),
                               drain["drain"]))
        say("%-58s %8.2f s" % ("sum of the same %d single migrations"
                               % len(drain["singles"]), total))
        say("%-58s %8.2fx" % ("ratio drain / sum of singles", drain["drain"] / total))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How long an online extend of an attached NBD volume takes, and how long
it holds the guest.

    .venv/bin/python tools/bench/online_extend.py [--rounds 5]

(as root: it starts a rig host.) Runs the product's two halves on one rig
host with the tiny real guest and a qemu-storage-daemon of its own:
``StorageDaemon.grow_export`` (the volume host: export removed, node grown,
export added again) and ``LibvirtDriver.extend_volume`` (the compute host:
throwaway block jobs until the guest's NBD client connected again, then
``blockResize``; compute/virt/libvirt/volume_extend.py). Two cases, each
``--rounds`` times, on a fresh 1 GiB volume grown by 1 GiB:

* idle: the guest wrote its marker and does no I/O on the volume; what the
  extend costs, and whether the guest paused at all;
* busy: the extend starts right after the attach, so the guest's marker
  write (its first request to the new disk) meets the export while it is
  away: the disk's error policy pauses the guest (libvirt: paused, reason
  ioerror) and the extend resumes it; how long it was held (libvirt's
  SUSPENDED to RESUMED events).

Each round checks that the guest printed the new size, that its marker is
on its console and that it printed no I/O error. Prints the figures
(median and max); asserts nothing; stops all it started.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
import uuid as uuidlib

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import libvirt  # noqa: E402

from compute.virt.block_device import VolumeConnection  # noqa: E402
from flotilla.objects import Instance  # noqa: E402
from tests.fixtures.rig import guest_image, running_rig  # noqa: E402
from tools.bench.rigcloud import rig_driver_and_storage_daemon, say, until  # noqa: E402

GIB = 2 ** 30


class Bench:
    def __init__(self, host: dict, work: pathlib.Path) -> None:
        self.work = work
        self.driver, self.daemon = rig_driver_and_storage_daemon(host, work)
        self.conn = libvirt.open(host["uri"])
        self.image = guest_image()
        self.instance: Instance | None = None
        self.lifecycle: list[tuple[float, int, int]] = []
        self.volumes: list[str] = []

    def boot(self) -> None:
        image = self.image
        self.instance = Instance.from_record({
            "uuid": str(uuidlib.uuid4()), "name": "bench", "project_id": "p",
            "user_id": "u", "image_ref": "img",
            "flavor": dict(name="bench", memory_mb=image["min_ram_mb"] + 16, vcpus=1,
                           root_gb=1)})
        self.driver.spawn(self.instance, {
            "id": "flotilla-guest-%s" % image["sha256"][:12], "source": image["image"],
            "sha256": image["sha256"]})
        until(lambda: image["partitions_marker"] in self.console(), 120, "the boot")
        domain = self.conn.lookupByUUIDString(self.instance.uuid)
        self.conn.domainEventRegisterAny(
            domain, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
            lambda _c, _d, event, detail, _o: self.lifecycle.append(
                (time.monotonic(), event, detail)), None)

    def console(self) -> str:
        return self.driver.get_console_output(self.instance)

    def one(self, busy: bool) -> dict:
        """One extend of a fresh 1 GiB volume to 2 GiB; its figures."""
        volume_id = str(uuidlib.uuid4())
        path = str(self.work / ("%s.raw" % volume_id))
        with open(path, "wb") as f:
            f.truncate(GIB)
        self.volumes.append(volume_id)
        connection = VolumeConnection.from_dict(self.daemon.export(volume_id, path))
        start_console = len(self.console())
        device = self.driver.attach_volume(self.instance, connection)
        marker = "%s %s written %s" % (self.image["disk_marker"], device,
                                       self.instance.uuid)
        if not busy:
            until(lambda: marker in self.console()[start_console:], 60, "the marker")
        self.lifecycle.clear()
        start = time.monotonic()
        self.daemon.grow_export(volume_id, path, 2 * GIB)
        grown = time.monotonic()
        self.driver.extend_volume(self.instance, volume_id, 2 * GIB)
        done = time.monotonic()
        size_line = "%s %s %d" % (self.image["disk_size_marker"], device, 2 * GIB)
        until(lambda: size_line in self.console()[start_console:], 60, "the new size")
        until(lambda: marker in self.console()[start_console:], 60, "the marker")
        paused = [t for t, e, d in self.lifecycle if e == libvirt.VIR_DOMAIN_EVENT_SUSPENDED
                  and d == libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR]
        resumed = [t for t, e, _d in self.lifecycle if e == libvirt.VIR_DOMAIN_EVENT_RESUMED]
        held = (resumed[-1] - paused[0]) if paused and resumed else 0.0
        console = self.console()[start_console:]
        figures = {"grow": grown - start, "extend": done - grown, "total": done - start,
                   "paused": bool(paused), "held": held,
                   "io_error": "I/O error" in console or "error" in console.lower()}
        # Kept attached: the next round's volume is a new disk (vdc, ...)
        # the guest notices as new (a detached name taken again within its
        # one-second look might not be).
        return figures

    def close(self) -> None:
        if self.instance is not None:
            with contextlib.suppress(Exception):
                self.driver.destroy(self.instance)
        for volume_id in self.volumes:
            with contextlib.suppress(Exception):
                self.daemon.unexport(volume_id)
        self.daemon.stop_if_idle()
        with contextlib.suppress(Exception):
            self.driver.cleanup_host()


def report(name: str, rounds: list[dict]) -> None:
    def fig(key: str) -> str:
        values = [r[key] for r in rounds]
        return "median %.3f s, max %.3f s" % (statistics.median(values), max(values))
    say("%s (%d rounds): volume host re-export %s; compute host %s; extend in all %s"
        % (name, len(rounds), fig("grow"), fig("extend"), fig("total")))
    held = [r["held"] for r in rounds if r["paused"]]
    say("   guest paused by an I/O error in %d of %d rounds%s; I/O error on its "
        "console in %d rounds"
        % (len(held), len(rounds),
           " (held median %.3f s, max %.3f s)" % (statistics.median(held), max(held))
           if held else "", sum(r["io_error"] for r in rounds)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5,
                        help="per case (at most 12: each round attaches a new disk)")
    args = parser.parse_args(argv)
    work = pathlib.Path(tempfile.mkdtemp(prefix="online-extend-"))
    try:
        with running_rig(str(work / "rig"), hosts=1) as rig:
            bench = Bench(rig["hosts"][0], work)
            try:
                bench.boot()
                for busy in (False, True):
                    report("busy" if busy else "idle",
                           [bench.one(busy) for _ in range(args.rounds)])
            finally:
                bench.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Can an in-use NBD volume grow online with QEMU and libvirt as installed?

    .venv/bin/python tools/bench/online_extend_probe.py [--size-gib 1] [--rounds 3]

(as root: it starts a rig host.) Issue 11 wants ``os-extend`` of an attached
volume to reach the guest. QEMU's NBD client fixes a node's size when it
connects (``block_resize`` of it: "Cannot grow NBD nodes") and libvirt 9.0
cannot give an NBD disk a ``reconnect-delay``, so the plan probed here swaps
the guest onto a second, bigger export with public libvirt calls only (no QMP
passthrough to the guest, which would taint the domain):

1. volume host (QMP of the storage daemon, as volume/nbd.py drives it):
   grow the exported node; failing that, grow the file and add a second node
   and export of it under a new name;
2. compute host: ``blockResize`` of the disk as it is attached (the known
   refusal), then ``virDomainBlockCopy`` of the disk onto the new export
   (REUSE_EXT, and TRANSIENT_JOB: the domain is persistent), pivot
   (``blockJobAbort`` PIVOT), then ``blockResize`` to the new size; tried
   plainly and with a ``<slices>`` of the old size on the destination (which
   makes the sizes match for the mirror);
3. the cost of the copy itself: a full ``blockCopy`` of a volume filled with
   data into a new file of the same size, until the job is ready, and the
   pivot, ``--rounds`` times.

Runs on one rig host (tools/rig) with the tiny real guest (the volume
attached through the libvirt driver, so the disk XML is the product's) and a
qemu-storage-daemon of its own. QEMU's reason for a failed block job is not
in libvirt's API (the event says only "failed"): the probe turns on
libvirtd's monitor debug log through the rig host's admin socket
(virt-admin) and quotes QEMU's BLOCK_JOB_COMPLETED error from it. Prints
every step's outcome and the timings; asserts nothing; stops all it started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
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
from volume.nbd import node_name  # noqa: E402
from volume.qmp import QMP, QMPError  # noqa: E402

GIB = 2 ** 30
COPY = libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT | libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB
JOB_STATUS = {libvirt.VIR_DOMAIN_BLOCK_JOB_COMPLETED: "completed",
              libvirt.VIR_DOMAIN_BLOCK_JOB_FAILED: "failed",
              libvirt.VIR_DOMAIN_BLOCK_JOB_CANCELED: "cancelled",
              libvirt.VIR_DOMAIN_BLOCK_JOB_READY: "ready"}


class Probe:
    def __init__(self, host: dict, work: pathlib.Path, size: int) -> None:
        self.host = host
        self.work = work
        self.size = size
        self.driver, self.daemon = rig_driver_and_storage_daemon(host, work)
        self.port = self.daemon.port
        self.volume_id = str(uuidlib.uuid4())
        self.path = work / "volume.raw"
        self.extra_nodes: list[str] = []
        self.instance = None
        self.events: list[tuple[float, int]] = []
        self.conn = libvirt.open(host["uri"])
        self.admin = "libvirtd:///system?socket=%s/run/libvirt/libvirt-admin-sock" % host["dir"]
        self.log = pathlib.Path(host["dir"]) / "log" / "libvirtd.log"

    # --- set-up -----------------------------------------------------------------

    def boot(self) -> None:
        image = guest_image()
        with open(self.path, "wb") as f:
            f.truncate(self.size)
        connection = VolumeConnection.from_dict(self.daemon.export(self.volume_id,
                                                                   str(self.path)))
        self.instance = Instance.from_record({
            "uuid": str(uuidlib.uuid4()), "name": "probe", "project_id": "p",
            "user_id": "u", "image_ref": "img",
            "flavor": dict(name="probe", memory_mb=image["min_ram_mb"] + 16, vcpus=1,
                           root_gb=1)})
        self.driver.spawn(self.instance, {
            "id": "flotilla-guest-%s" % image["sha256"][:12], "source": image["image"],
            "sha256": image["sha256"]})
        until(lambda: image["partitions_marker"] in self.console(), 120, "the guest's boot")
        self.disk = self.driver.attach_volume(self.instance, connection)
        self.marker = "%s %s written %s" % (image["disk_marker"], self.disk,
                                            self.instance.uuid)
        self.size_marker = image["disk_size_marker"]
        until(lambda: self.marker in self.console(), 60, "the guest's marker")
        self.domain = self.conn.lookupByUUIDString(self.instance.uuid)
        self.conn.domainEventRegisterAny(
            self.domain, libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2,
            lambda _c, _d, _disk, _type, status, _o: self.events.append(
                (time.monotonic(), status)), None)
        subprocess.run(["virt-admin", "-c", self.admin, "daemon-log-filters",
                        "1:qemu.qemu_monitor 3:*"], check=True, capture_output=True)
        subprocess.run(["virt-admin", "-c", self.admin, "daemon-log-outputs",
                        "1:file:/var/log/libvirt/libvirtd.log"], check=True,
                       capture_output=True)
        say("guest %s runs with the %d GiB volume as %s; it wrote its marker"
            % (self.instance.uuid, self.size // GIB, self.disk))

    def console(self) -> str:
        return self.driver.get_console_output(self.instance)

    def sizes_seen(self) -> list[str]:
        return [line.strip() for line in self.console().splitlines()
                if line.startswith(self.size_marker)]

    # --- the volume host ------------------------------------------------------------

    def qmp(self, command: str, **arguments):
        qmp = QMP(self.daemon.socket_path)
        try:
            return qmp.execute(command, **arguments)
        finally:
            qmp.close()

    def second_export(self, suffix: str, path: pathlib.Path) -> str:
        """A second raw node over ``path`` exported writable as
        ``<volume id>-<suffix>``; its name."""
        node = ("x" + suffix + self.volume_id.replace("-", ""))[:31]
        self.qmp("blockdev-add", **{"driver": "raw", "node-name": node, "file": {
            "driver": "file", "filename": str(path), "cache": {"direct": False}}})
        name = "%s-%s" % (self.volume_id, suffix)
        self.qmp("block-export-add", type="nbd", id=node, **{"node-name": node},
                 name=name, writable=True)
        self.extra_nodes.append(node)
        return name

    def export_size(self, name: str) -> str:
        info = subprocess.run(["qemu-img", "info", "--output=json",
                               "nbd://127.0.0.1:%d/%s" % (self.port, name)],
                              capture_output=True, text=True, timeout=60)
        return (str(json.loads(info.stdout)["virtual-size"]) if info.returncode == 0
                else info.stderr.strip())

    # --- the compute host -----------------------------------------------------------

    def destination(self, export: str, slice_size: int | None = None) -> str:
        sliced = ("<slices><slice type='storage' offset='0' size='%d'/></slices>"
                  % slice_size if slice_size else "")
        return ("<disk type='network'><driver type='raw'/><source protocol='nbd' "
                "name='%s'><host name='127.0.0.1' port='%d'/>%s</source></disk>"
                % (export, self.port, sliced))

    def qemu_job_error(self) -> str:
        found = re.findall(r'"event": "BLOCK_JOB_COMPLETED".*?"error": "([^"]*)"',
                           self.log.read_text(errors="replace"))
        return found[-1] if found else "(no error in libvirtd's log)"

    def block_copy(self, destination: str, flags: int = COPY) -> tuple[str, float]:
        """(outcome, seconds until the job was ready or ended)."""
        self.events.clear()
        start = time.monotonic()
        try:
            self.domain.blockCopy(self.disk, destination, {}, flags)
        except libvirt.libvirtError as exc:
            return "blockCopy refused: %s" % exc.get_error_message(), 0.0
        until(lambda: self.events, 600, "the copy job's event")
        at, status = self.events[-1]
        outcome = JOB_STATUS.get(status, str(status))
        if status == libvirt.VIR_DOMAIN_BLOCK_JOB_FAILED:
            outcome += ": QEMU says %r" % self.qemu_job_error()
        return outcome, at - start

    def pivot(self) -> tuple[str, float]:
        start = time.monotonic()
        try:
            self.domain.blockJobAbort(self.disk, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
        except libvirt.libvirtError as exc:
            return "pivot refused: %s" % exc.get_error_message(), 0.0
        until(lambda: not self.domain.blockJobInfo(self.disk, 0), 60, "the pivot")
        return "pivoted", time.monotonic() - start

    def block_resize(self, size: int) -> str:
        try:
            self.domain.blockResize(self.disk, size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
        except libvirt.libvirtError as exc:
            return "blockResize refused: %s" % exc.get_error_message()
        return "blockResize done: the guest's disk is %d bytes" % self.domain.blockInfo(
            self.disk)[0]

    # --- the probe ------------------------------------------------------------------

    def run(self, rounds: int) -> None:
        new_size = 2 * self.size
        say("1. volume host: block_resize of the exported node to %d" % new_size)
        try:
            self.qmp("block_resize", **{"node-name": node_name(self.volume_id)},
                     size=new_size)
            say("   done")
        except QMPError as exc:
            say("   %s" % exc)
        os.truncate(self.path, new_size)
        grown = self.second_export("g1", self.path)
        say("   grown file, second node and export %s: %s bytes (the first export: %s)"
            % (grown, self.export_size(grown), self.export_size(self.volume_id)))

        say("2. compute host: blockResize of the disk as attached: %s"
            % self.block_resize(new_size))
        say("   blockCopy onto %s" % grown)
        outcome, _ = self.block_copy(self.destination(grown),
                                     libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT)
        say("   without TRANSIENT_JOB (persistent domain): %s" % outcome)
        outcome, _ = self.block_copy(self.destination(grown))
        say("   REUSE_EXT|TRANSIENT_JOB: %s" % outcome)
        outcome, seconds = self.block_copy(self.destination(grown, self.size))
        say("   with a <slices> of the old size: %s after %.2f s" % (outcome, seconds))
        if outcome == "ready":
            say("   %s; %s" % (self.pivot()[0], self.block_resize(new_size)))
        say("   the guest's sizes: %s" % "; ".join(self.sizes_seen()))

        say("3. a full copy of %d GiB of data into a new file, %d rounds"
            % (self.size // GIB, rounds))
        with open(self.path, "r+b") as f, open("/dev/urandom", "rb") as rand:
            f.seek(1 << 20)          # the guest's marker stays in the first MiB
            for _ in range(self.size // (1 << 20) - 1):
                f.write(rand.read(1 << 20))
        os.sync()
        copies, pivots = [], []
        for n in range(rounds):
            target = self.work / ("copy%d.raw" % n)
            with open(target, "wb") as f:
                f.truncate(self.size)
            outcome, seconds = self.block_copy(self.destination(
                self.second_export("c%d" % n, target)))
            if outcome != "ready":
                say("   round %d: %s" % (n + 1, outcome))
                return
            pivoted, pivot_seconds = self.pivot()
            copies.append(seconds)
            pivots.append(pivot_seconds)
            say("   round %d: ready after %.2f s, %s in %.3f s"
                % (n + 1, seconds, pivoted, pivot_seconds))
        same = subprocess.run(["cmp", "-n", str(self.size), str(self.path), str(target)],
                              capture_output=True).returncode == 0
        say("   median: copy %.2f s, pivot %.3f s; the last copy %s the volume's data"
            % (statistics.median(copies), statistics.median(pivots),
               "holds" if same else "DIFFERS FROM"))
        console = self.console()
        say("   the guest: marker %s, %s I/O error on its console, sizes %s"
            % ("intact" if self.marker in console else "MISSING",
               "an" if "I/O error" in console else "no", "; ".join(self.sizes_seen())))

    def close(self) -> None:
        if self.instance is not None:
            with contextlib.suppress(Exception):
                self.driver.destroy(self.instance)
        for node in self.extra_nodes:
            with contextlib.suppress(QMPError, OSError):
                self.qmp("block-export-del", id=node, mode="hard")
        time.sleep(0.5)
        for node in self.extra_nodes:
            with contextlib.suppress(QMPError, OSError):
                self.qmp("blockdev-del", **{"node-name": node})
        self.daemon.unexport(self.volume_id)
        self.daemon.stop_if_idle()
        with contextlib.suppress(Exception):
            self.driver.cleanup_host()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-gib", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    work = pathlib.Path(tempfile.mkdtemp(prefix="extend-probe-"))
    try:
        with running_rig(str(work / "rig"), hosts=1) as rig:
            say("QEMU %s, libvirt %s" % (
                subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                               text=True).stdout.split()[3],
                ".".join(str(libvirt.getVersion() // d % 1000) for d in (10**6, 10**3, 1))))
            probe = Probe(rig["hosts"][0], work, args.size_gib * GIB)
            try:
                probe.boot()
                probe.run(args.rounds)
            finally:
                probe.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

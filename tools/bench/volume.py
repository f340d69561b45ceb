"""Volume attach latency and NBD throughput against the same work by hand.

    .venv/bin/python tools/bench/volume.py [--rounds 3] [--size-mib 4096]

Brings up a one-host cloud (tools/demo/bringup.py: a rig host with QEMU,
flotilla-volume with its pool on that host's libvirtd and its
qemu-storage-daemon, every daemon as a process), boots the tiny real guest
and creates a 1 GiB volume. Then, taking turns, ``--rounds`` times each:

* **attach, API**: ``POST /servers/{id}/os-volume_attachments`` until the
  guest lists the disk (its console prints ``FLOTILLA-DISK-SIZE vdb``);
  detached through the API afterwards;
* **attach, by hand**: the volume exported on the same storage daemon (QMP,
  as the volume service does), ``virsh attach-device --live`` of the disk
  XML the driver rendered (taken from the domain while attached through the
  API), until the guest lists the disk; ``virsh detach-device`` afterwards.

The guest looks for disks once a second: both sides carry that polling.

Then sequential read and write throughput, ``qemu-img bench`` on both sides
with the same shape: 1 MiB requests, queue depth 16, ``--size-mib`` per
run (4 GiB by default: the volume, filled with data first, is gone over
several times; runs of tens of milliseconds, as 512 MiB from the page
cache takes, measured the timer and the first touch of qemu-img's buffers),
writes without a flush on either side. What each side measures:

* **over NBD**: qemu-img's NBD client (QEMU's, as a guest's QEMU uses it)
  over TCP loopback to the volume's export on the storage daemon, which
  reads and writes the file through the host page cache (``cache.direct``
  off, ``aio=threads``). The data is copied three times (pread from the
  page cache, send, receive). The CPU seconds per GiB of the client and of
  the daemon are printed alongside;
* **local file**: the same volume file opened by qemu-img the way the daemon
  opens it (page cache, ``aio=threads``): one copy from the page cache. A
  guest's local disks (the driver's file disks) read through the host page
  cache too, so this is what the same file would give as a local disk;
* **cold reads**, both sides again, each run one pass over the volume
  after ``posix_fadvise(DONTNEED)`` dropped the file from the page cache:
  data the host has not cached, read from the device (with the kernel's
  readahead on both sides);
* **the NBD path alone**: the same client and daemon, the same shape, on an
  export of a ``null-co`` node (reads leave the buffer untouched, writes
  are dropped): the protocol, the daemon's one main loop and TCP loopback,
  no storage. Its ratio to local is the most any volume file behind this
  daemon could reach.

The goal is NBD >= 0.8x local. Against a copy from the page cache a path
that copies three times and crosses TCP cannot reach it: the null export's
ratio says by how much; on cold reads the device sets the pace on both
sides. Prints
the medians and the ratios; asserts nothing; everything it started is
stopped at the end.
"""

from __future__ import annotations

import argparse
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
import types

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tools.bench.rigcloud import on_one_host_cloud, say  # noqa: E402
from tools.demo.bringup import GUEST_BUILDER, Bringup, _run  # noqa: E402
from tools.demo.demo import Walkthrough  # noqa: E402
from volume.nbd import StorageDaemon  # noqa: E402
from volume.qmp import QMP, QMPError  # noqa: E402

GOAL_THROUGHPUT = 0.8
MIB = 2 ** 20
CEILING_EXPORT = "bench-null"




class Bench:
    def __init__(self, cloud: Bringup, rounds: int, size_mib: int) -> None:
        self.cloud = cloud
        self.walk = Walkthrough(cloud)
        self.rounds = rounds
        self.size_mib = size_mib
        self.host = cloud.state["rig_hosts"][0]
        conf = {}
        for line in pathlib.Path(cloud.state["volume_config"]).read_text().splitlines():
            if "=" in line:
                key, value = (p.strip() for p in line.split("=", 1))
                conf[key] = value
        self.run_path = conf["run_path"]
        self.nbd_port = int(conf["nbd_port"])
        self.daemon = StorageDaemon(types.SimpleNamespace(volume=types.SimpleNamespace(
            run_path=self.run_path, nbd_host="127.0.0.1", nbd_port=self.nbd_port,
            storage_daemon="qemu-storage-daemon")))
        self.scratch = pathlib.Path(tempfile.mkdtemp(prefix="bench-volume-"))

    def console(self, server) -> str:
        log = pathlib.Path(self.host["instances_path"]) / server.id / "console.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def until(self, predicate, timeout: float = 120, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError("timed out waiting for " + what)
            time.sleep(0.01)

    def prepare(self):
        tenant = self.walk.tenant
        meta = json.loads(_run([sys.executable, GUEST_BUILDER, "--json"]).stdout)
        image = tenant.image.create_image(name="bench-guest", filename=meta["image"],
                                          disk_format="qcow2", container_format="bare",
                                          wait=True)
        flavor = tenant.compute.find_flavor("m1.tiny")
        server = tenant.compute.create_server(name="bench-volume", image_id=image.id,
                                              flavor_id=flavor.id, networks="none")
        server = self.walk.wait(server, "ACTIVE")
        self.until(lambda: "FLOTILLA-PARTITIONS" in self.console(server), 180, "guest boot")
        volume = tenant.block_storage.create_volume(size=1, name="bench")
        volume = tenant.block_storage.wait_for_status(volume, "available", wait=60)
        return image, server, volume

    def _seen(self, server, start: int) -> bool:
        return "FLOTILLA-DISK-SIZE vdb" in self.console(server)[start:]

    def _gone(self, server, volume) -> None:
        """Until libvirt removed the disk (the guest let go), then two of the
        guest's one-second polls, so that it notices the next attach."""
        self.until(lambda: volume.id not in _run(
            ["virsh", "-q", "-c", self.host["uri"], "dumpxml", server.id]).stdout,
            what="libvirt to remove the disk")
        time.sleep(2.5)

    def api_round(self, server, volume) -> tuple[float, str]:
        tenant = self.walk.tenant
        start = len(self.console(server))
        started = time.monotonic()
        tenant.compute.create_volume_attachment(server, volume_id=volume.id)
        self.until(lambda: self._seen(server, start), what="the disk in the guest")
        elapsed = time.monotonic() - started
        tenant.block_storage.wait_for_status(volume, "in-use", wait=60)
        xml = _run(["virsh", "-q", "-c", self.host["uri"], "dumpxml", server.id]).stdout
        disk = next(d for d in re.findall(r"<disk .*?</disk>", xml, re.S) if volume.id in d)
        # What the driver sends: no runtime alias or address libvirt added.
        disk = re.sub(r"\s*<address [^>]*/>", "", disk)
        tenant.compute.delete_volume_attachment(server, volume.id)
        self._gone(server, volume)
        self.until(lambda: tenant.block_storage.get_volume(volume.id).status == "available",
                   what="the volume available")
        return elapsed, disk

    def hand_round(self, server, volume, disk_xml: str) -> float:
        path = self.scratch / "disk.xml"
        path.write_text(disk_xml)
        self.daemon.export(volume.id, self._volume_file(volume))
        try:
            start = len(self.console(server))
            started = time.monotonic()
            _run(["virsh", "-q", "-c", self.host["uri"], "attach-device", server.id,
                  str(path), "--live"])
            self.until(lambda: self._seen(server, start), what="the disk in the guest")
            elapsed = time.monotonic() - started
            _run(["virsh", "-q", "-c", self.host["uri"], "detach-device", server.id,
                  str(path), "--live"])
            self._gone(server, volume)
        finally:
            self.daemon.unexport(volume.id)
        return elapsed

    def _volume_file(self, volume) -> str:
        return str(pathlib.Path(self.cloud.root) / "state" / "volumes"
                   / ("volume-%s" % volume.id))

    def _daemon_cpu(self) -> float:
        """CPU seconds the storage daemon used so far (user + system)."""
        pid = int(pathlib.Path(self.run_path, "qsd.pid").read_text())
        fields = pathlib.Path("/proc/%d/stat" % pid).read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _bench(self, target: str, write: bool, count: int,
               cold: str | None = None) -> tuple[float, float, float]:
        """One qemu-img bench run of ``count`` MiB: MiB/s, its own CPU
        seconds per GiB and the storage daemon's CPU seconds per GiB
        meanwhile. ``cold``: a file to drop from the page cache first."""
        args = ["qemu-img", "bench", "-f", "raw", "-c", str(count), "-s", "1M", "-d", "16"]
        if write:
            args += ["-w", "--pattern=90"]
        # Each run starts with no dirty page of the previous one to write back.
        os.sync()
        if cold is not None:
            fd = os.open(cold, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        daemon_before = self._daemon_cpu()
        proc = subprocess.Popen(args + [target], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        with proc.stdout:
            out = proc.stdout.read()
        _, status, rusage = os.wait4(proc.pid, 0)     # reaped here, for its rusage
        proc.returncode = os.waitstatus_to_exitcode(status)
        usage = rusage.ru_utime + rusage.ru_stime
        daemon = self._daemon_cpu() - daemon_before
        if proc.returncode != 0:
            raise RuntimeError("qemu-img bench failed: %s" % out.strip()[-2000:])
        seconds = float(re.search(r"Run completed in ([\d.]+) seconds", out).group(1))
        gib = count / 1024
        return count / seconds, usage / gib, daemon / gib

    def throughput(self, volume) -> dict[str, float]:
        """MiB/s of sequential reads and writes, over NBD and local, and
        CPU seconds per GiB."""
        path = self._volume_file(volume)
        # Fill the whole volume: qemu-img bench wraps around at its end,
        # and reading holes would measure nothing.
        _run(["qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 %dG" % volume.size, path])
        url = "nbd://127.0.0.1:%d/%s" % (self.nbd_port, volume.id)
        # (name, target, modes, MiB per run, file to drop from the cache);
        # cold reads last, not to read the next warm runs from the device.
        runs = [("nbd", url, ("read", "write"), self.size_mib, None),
                ("local", path, ("read", "write"), self.size_mib, None)] * self.rounds
        runs += [("nbd_cold", url, ("read",), volume.size * 1024, path),
                 ("local_cold", path, ("read",), volume.size * 1024, path)] * self.rounds
        # The same daemon's NBD path with no storage behind it: a null-co
        # node (reads leave the buffer as it is, writes are dropped). What
        # it gives is the most any volume file behind this daemon could.
        ceiling = "nbd://127.0.0.1:%d/%s" % (self.nbd_port, CEILING_EXPORT)
        runs += [("nbd_null", ceiling, ("read", "write"), self.size_mib, None)] * self.rounds
        results: dict[str, list[float]] = {}
        self.daemon.export(volume.id, path)
        self._export_null(volume.size * 1024 * MIB)
        try:
            for where, target, modes, count, cold in runs:
                for mode in modes:
                    mibs, cpu, daemon = self._bench(target, mode == "write", count, cold)
                    key = "%s_%s" % (where, mode)
                    results.setdefault(key, []).append(mibs)
                    results.setdefault(key + "_cpu", []).append(cpu)
                    results.setdefault(key + "_daemon_cpu", []).append(daemon)
        finally:
            self._unexport_null()
            self.daemon.unexport(volume.id)
        return {k: statistics.median(v) for k, v in results.items()}

    def _export_null(self, size: int) -> None:
        qmp = QMP(self.daemon.socket_path)
        try:
            qmp.execute("blockdev-add", **{"driver": "null-co", "node-name": CEILING_EXPORT,
                                           "size": size, "read-zeroes": False})
            qmp.execute("block-export-add", type="nbd", id=CEILING_EXPORT,
                        **{"node-name": CEILING_EXPORT}, name=CEILING_EXPORT, writable=True)
        finally:
            qmp.close()

    def _unexport_null(self) -> None:
        qmp = QMP(self.daemon.socket_path)
        try:
            qmp.execute("block-export-del", id=CEILING_EXPORT, mode="hard")
            deadline = time.monotonic() + 10
            while True:     # the export goes away asynchronously
                try:
                    qmp.execute("blockdev-del", **{"node-name": CEILING_EXPORT})
                    return
                except QMPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            qmp.close()

    def run(self) -> dict:
        image, server, volume = self.prepare()
        api_times: list[float] = []
        hand_times: list[float] = []
        for n in range(1, self.rounds + 1):
            elapsed, disk_xml = self.api_round(server, volume)
            api_times.append(elapsed)
            say("round %d: attach through the API %.2fs" % (n, elapsed))
            hand = self.hand_round(server, volume, disk_xml)
            hand_times.append(hand)
            say("round %d: virsh attach-device %.2fs" % (n, hand))
        figures = self.throughput(volume)
        tenant = self.walk.tenant
        tenant.compute.delete_server(server)
        tenant.compute.wait_for_delete(server, interval=0.5, wait=120)
        tenant.block_storage.delete_volume(volume)
        tenant.block_storage.wait_for_delete(volume, wait=60)
        tenant.image.delete_image(image)
        shutil.rmtree(self.scratch, ignore_errors=True)
        figures["api_s"] = statistics.median(api_times)
        figures["hand_s"] = statistics.median(hand_times)
        return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-volume")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=4096)
    args = parser.parse_args(argv)
    r = on_one_host_cloud("flotilla-bench-volume-",
                           lambda cloud: Bench(cloud, args.rounds, args.size_mib).run())
    say("")
    say("volume attach until the guest lists the disk (median of %d)" % args.rounds)
    say("%-52s %8.2f s" % ("API: POST os-volume_attachments", r["api_s"]))
    say("%-52s %8.2f s" % ("by hand: virsh attach-device (same XML, host)", r["hand_s"]))
    say("ratio API / by hand: %.2fx" % (r["api_s"] / r["hand_s"]))
    say("")
    say("sequential throughput, qemu-img bench: 1 MiB requests, depth 16, host page cache on")
    say("both sides, %d MiB per run; cold reads: one pass over the volume dropped from the"
        % args.size_mib)
    say("cache first (median of %d; CPU: seconds per GiB of qemu-img + the storage daemon)"
        % args.rounds)
    rows = [("read", "nbd_read", "local_read"), ("write", "nbd_write", "local_write"),
            ("cold read", "nbd_cold_read", "local_cold_read")]
    for label, nbd_key, local_key in rows:
        nbd, local = r[nbd_key], r[local_key]
        say("%-9s NBD %5.0f MiB/s (CPU %.2f + %.2f), local %5.0f MiB/s (CPU %.2f): "
            "ratio %.2f (goal >= %.1f: %s)"
            % (label, nbd, r[nbd_key + "_cpu"], r[nbd_key + "_daemon_cpu"], local,
               r[local_key + "_cpu"], nbd / local, GOAL_THROUGHPUT,
               "met" if nbd / local >= GOAL_THROUGHPUT else "NOT met"))
    say("")
    say("the NBD path alone (same daemon and client, a null-co export: no data read or"
        " stored):")
    for label, null_key, local_key in (("read", "nbd_null_read", "local_read"),
                                       ("write", "nbd_null_write", "local_write")):
        say("%-9s NBD, null  %5.0f MiB/s (CPU %.2f + %.2f): %.2fx local, the ceiling of"
            " the ratio above" % (label, r[null_key], r[null_key + "_cpu"],
                                  r[null_key + "_daemon_cpu"], r[null_key] / r[local_key]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

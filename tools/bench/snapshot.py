"""Snapshot of a running guest through the API vs the same work by hand.

    .venv/bin/python tools/bench/snapshot.py [--rounds 3] [--data-mib 200]

Brings up a one-host cloud (tools/demo/bringup.py: a rig host with QEMU, a
RabbitMQ vhost, a PostgreSQL database, every daemon as a process), uploads
the tiny real guest image and boots a server from it (1 GiB root disk). The
server is stopped, ``--data-mib`` MiB are written into its root overlay
with qemu-io (beyond the guest's own file system) and it is started again:
a running guest whose overlay holds that much written data. Then, taking
turns, ``--rounds`` times each:

* **API**: ``POST /servers/{id}/action {"createImage": ...}`` until the image
  is ``active`` (polled every 20 ms); the image is deleted afterwards;
* **by hand**, on the same host, disk and base: ``qemu-img create`` of a
  qcow2 on the same base, ``virsh blockcopy --shallow --reuse-external
  --transient-job --wait --finish`` into it, ``qemu-img convert -O qcow2``
  into a standalone file (what the driver does, minus the upload).

A separate libvirt connection counts the guest's lifecycle events: every
``suspended`` one is a pause. Prints the median of both, their ratio
(goal <= 1.5x) and the pauses during the API's snapshots (goal 0), with the
API's time split by the instance action's events. Asserts nothing;
everything it started is stopped and removed at the end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.fixtures.libvirt_events import LifecycleCounter  # noqa: E402
from tools.bench.rigcloud import on_one_host_cloud, say  # noqa: E402
from tools.demo.bringup import GUEST_BUILDER, Bringup, _run  # noqa: E402
from tools.demo.demo import Walkthrough  # noqa: E402

GOAL_RATIO = 1.5
DATA_OFFSET_MIB = 256     # past the guest's 64 MiB file system




def _parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


class Bench:
    def __init__(self, cloud: Bringup, rounds: int, data_mib: int) -> None:
        self.cloud = cloud
        self.walk = Walkthrough(cloud)
        self.rounds = rounds
        self.data_mib = data_mib
        self.host = cloud.state["rig_hosts"][0]
        self.scratch = pathlib.Path(tempfile.mkdtemp(prefix="bench-snapshot-",
                                                     dir=self.host["instances_path"]))

    def prepare(self):
        tenant = self.walk.tenant
        meta = json.loads(_run([sys.executable, GUEST_BUILDER, "--json"]).stdout)
        image = tenant.image.create_image(name="bench-guest", filename=meta["image"],
                                          disk_format="qcow2", container_format="bare",
                                          wait=True)
        flavor = tenant.compute.find_flavor("m1.tiny")
        server = tenant.compute.create_server(name="bench", image_id=image.id,
                                              flavor_id=flavor.id, networks="none")
        server = self.walk.wait(server, "ACTIVE")
        self.walk.wait_console(server, meta["boot_count_marker"])
        tenant.compute.stop_server(server)
        self.walk.wait(server, "SHUTOFF")
        disk = pathlib.Path(self.host["instances_path"]) / server.id / "disk"
        say("writing %d MiB into the root overlay of %s ..." % (self.data_mib, server.name))
        _run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a %dM %dM"
              % (DATA_OFFSET_MIB, self.data_mib), disk])
        tenant.compute.start_server(server)
        server = self.walk.wait(server, "ACTIVE")
        self.walk.wait_console(server, meta["boot_count_marker"], count=2)
        info = json.loads(_run(["qemu-img", "info", "-U", "--output=json", disk]).stdout)
        say("overlay: %.0f MiB allocated of %d MiB virtual, base %s"
            % (info["actual-size"] / 2 ** 20, info["virtual-size"] // 2 ** 20,
               info.get("backing-filename")))
        return image, server, disk, info

    def api_round(self, server) -> tuple[float, dict[str, float]]:
        tenant = self.walk.tenant
        started = time.monotonic()
        image_id = tenant.compute.create_server_image(server, "bench-snap").id
        while True:
            image = tenant.image.get_image(image_id)
            if image.status == "active":
                break
            if image.status in ("killed", "deleted"):
                raise RuntimeError("the snapshot failed: image %s" % image.status)
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        # Wait for the task to clear (the flow's last steps) before the next round.
        while tenant.compute.get_server(server.id).task_state:
            time.sleep(0.02)
        phases = self._phases(server, "createImage")
        size = image.size
        tenant.image.delete_image(image_id)
        phases["size_mib"] = size / 2 ** 20
        return elapsed, phases

    def _phases(self, server, action_name: str) -> dict[str, float]:
        tenant = self.walk.tenant
        action = next(a for a in tenant.compute.server_actions(server)
                      if a.action == action_name)
        action = tenant.compute.get_server_action(action.request_id, server)
        phases = {}
        for event in action.events:
            start, finish = _parse_time(event["start_time"]), _parse_time(event["finish_time"])
            if start and finish and event["event"] in ("compute_snapshot_instance",
                                                       "compute_upload_image"):
                phases[event["event"]] = (finish - start).total_seconds()
        return phases

    def hand_round(self, server, disk: pathlib.Path, info: dict) -> float:
        copy = self.scratch / "copy.qcow2"
        out = self.scratch / "standalone.qcow2"
        started = time.monotonic()
        _run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", info["backing-filename"],
              "-F", info.get("backing-filename-format", "qcow2"), copy,
              str(info["virtual-size"])])
        _run(["virsh", "-q", "-c", self.host["uri"], "blockcopy", server.id, "vda",
              str(copy), "--shallow", "--reuse-external", "--transient-job", "--wait",
              "--finish"])
        _run(["qemu-img", "convert", "-O", "qcow2", copy, out])
        elapsed = time.monotonic() - started
        copy.unlink()
        out.unlink()
        return elapsed

    def run(self) -> dict:
        image, server, disk, info = self.prepare()
        api_times: list[float] = []
        hand_times: list[float] = []
        phases: list[dict] = []
        with LifecycleCounter(self.host["uri"]) as events:
            for n in range(1, self.rounds + 1):
                paused_before = events.paused(server.id)
                elapsed, split = self.api_round(server)
                api_times.append(elapsed)
                phases.append(split)
                say("round %d: API %.2fs (copy+flatten %.2fs, upload %.2fs, %.0f MiB), "
                    "paused %d time(s)" % (
                        n, elapsed, split.get("compute_snapshot_instance", 0),
                        split.get("compute_upload_image", 0), split["size_mib"],
                        events.paused(server.id) - paused_before))
                hand = self.hand_round(server, disk, info)
                hand_times.append(hand)
                say("round %d: by hand %.2fs" % (n, hand))
            api_pauses = events.paused(server.id)
        self.walk.tenant.compute.delete_server(server)
        self.walk.tenant.compute.wait_for_delete(server, interval=0.5, wait=120)
        self.walk.tenant.image.delete_image(image)
        shutil.rmtree(self.scratch, ignore_errors=True)
        api, hand = statistics.median(api_times), statistics.median(hand_times)
        return {"api_s": api, "hand_s": hand, "ratio": api / hand, "pauses": api_pauses,
                "copy_s": statistics.median(p.get("compute_snapshot_instance", 0)
                                            for p in phases),
                "upload_s": statistics.median(p.get("compute_upload_image", 0)
                                              for p in phases)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-snapshot")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-mib", type=int, default=200)
    args = parser.parse_args(argv)
    result = on_one_host_cloud("flotilla-bench-snapshot-",
                                lambda cloud: Bench(cloud, args.rounds, args.data_mib).run())
    say("")
    say("snapshot of a running guest, %d MiB written in its overlay (median of %d)"
        % (args.data_mib, args.rounds))
    say("%-52s %8.2f s" % ("API: POST createImage -> image active", result["api_s"]))
    say("%-52s %8.2f s" % ("  of which copy + flatten on the host", result["copy_s"]))
    say("%-52s %8.2f s" % ("  of which upload to the image API", result["upload_s"]))
    say("%-52s %8.2f s" % ("by hand: virsh blockcopy --shallow + qemu-img convert",
                           result["hand_s"]))
    say("ratio API / by hand: %.2fx (goal <= %.1fx: %s)" % (
        result["ratio"], GOAL_RATIO, "met" if result["ratio"] <= GOAL_RATIO else "NOT met"))
    say("times the guest was paused during the API's snapshots: %d (goal 0)"
        % result["pauses"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

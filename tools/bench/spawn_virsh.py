"""Time guest spawns through the libvirt driver on a rig host.

    .venv/bin/python tools/bench/spawn_virsh.py [--count N] [--guest]
        [--uri qemu+tcp://127.0.0.1:PORT/system --instances-path DIR]

Without --uri it starts a one-host rig in a temporary root and stops it
afterwards. Prints figures (spawn, destroy, and with --guest the real
guest's boot and ACPI power-off times); asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from compute.virt.libvirt.driver import LibvirtDriver  # noqa: E402
from flotilla.conf import CONF  # noqa: E402

RIG = os.path.join(REPO, "tools", "rig", "rig.py")
BUILDER = os.path.join(REPO, "tools", "guest-image", "build.py")


def figures(name: str, values: list[float]) -> None:
    print("%-22s n=%-3d median %.2fs  min %.2fs  max %.2fs"
          % (name, len(values), statistics.median(values), min(values),
             max(values)))


def bench(driver: LibvirtDriver, count: int, guest: bool, work: str) -> None:
    empty = os.path.join(work, "empty.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", empty, "64M"],
                   check=True)
    with open(empty, "rb") as f:
        image = {"id": "bench-empty", "source": empty,
                 "sha256": hashlib.sha256(f.read()).hexdigest()}
    spawns, destroys = [], []
    for _ in range(count):
        inst = {"uuid": str(uuid.uuid4()), "flavor": {"memory_mb": 64}}
        started = time.monotonic()
        driver.spawn(inst, image)
        spawns.append(time.monotonic() - started)
        started = time.monotonic()
        driver.destroy(inst)
        destroys.append(time.monotonic() - started)
    figures("spawn (no OS, 64 MiB)", spawns)
    figures("destroy", destroys)
    if not guest:
        return
    meta = json.loads(subprocess.run([sys.executable, BUILDER, "--json"],
                                     check=True, capture_output=True,
                                     text=True).stdout)
    image = {"id": "bench-guest", "source": meta["image"], "sha256": meta["sha256"]}
    inst = {"uuid": str(uuid.uuid4()),
            "flavor": {"memory_mb": meta["min_ram_mb"] + 16}}
    started = time.monotonic()
    driver.spawn(inst, image)
    while meta["boot_marker"] not in driver.get_console_output(inst):
        if time.monotonic() - started > 120:
            print("guest did not boot within 120s")
            break
        time.sleep(0.1)
    print("guest boot marker after %.2fs" % (time.monotonic() - started))
    started = time.monotonic()
    graceful = driver.power_off(inst, timeout=60, retry_interval=2)
    print("ACPI power off %s after %.2fs"
          % ("completed" if graceful else "FELL BACK TO DESTROY",
             time.monotonic() - started))
    driver.destroy(inst)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--guest", action="store_true")
    parser.add_argument("--uri")
    parser.add_argument("--instances-path")
    parser.add_argument("--base-port", type=int, default=17900)
    args = parser.parse_args()
    CONF([], project="flotilla", default_config_files=[])
    with tempfile.TemporaryDirectory(prefix="flotilla-bench-") as work:
        root = None
        uri, instances = args.uri, args.instances_path
        if uri is None:
            root = os.path.join(work, "rig")
            subprocess.run([sys.executable, RIG, "start", "1", "--root", root,
                            "--base-port", str(args.base_port)], check=True,
                           stdout=subprocess.DEVNULL)
            with open(os.path.join(root, "rig.json")) as f:
                host = json.load(f)["hosts"][0]
            uri, instances = host["uri"], host["instances_path"]
        try:
            CONF.set_override("connection_uri", uri, "libvirt")
            CONF.set_override("instances_path",
                              instances or os.path.join(work, "instances"),
                              "libvirt")
            CONF.set_override("image_cache_max_age", 0, "libvirt")
            driver = LibvirtDriver(CONF)
            driver.init_host("bench")
            try:
                bench(driver, args.count, args.guest, work)
            finally:
                driver.manage_image_cache()
                driver.cleanup_host()
        finally:
            if root is not None:
                subprocess.run([sys.executable, RIG, "stop", "--root", root])
    return 0


if __name__ == "__main__":
    sys.exit(main())

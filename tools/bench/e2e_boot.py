"""Boot latency through the whole cloud vs bare ``virsh create``.

    .venv/bin/python tools/bench/e2e_boot.py [--count 20]

On the demo's bring-up (tools/demo/bringup.py: two rig hosts, RabbitMQ,
PostgreSQL, every daemon as a process) in a temporary root: ``--count``
servers of a 64 MiB no-OS guest booted one after the other through the
public API (openstacksdk), each timed from the POST to ACTIVE (polled every
10 ms); then as many ``virsh create`` of the same domain XML on a rig host.
Prints p50/p99 of both and the per-boot overhead (goal: <= 250 ms). Asserts
nothing; stops everything it started.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import libvirt  # noqa: E402

from tests.fixtures import rig as rig_fixtures  # noqa: E402
from tests.fixtures.ports import free_port, free_port_block  # noqa: E402
from tools.bench.spawn import bench_virsh, print_comparison  # noqa: E402
from tools.demo.bringup import Bringup  # noqa: E402
from tools.demo.demo import Walkthrough  # noqa: E402


def boot_through_api(walk: Walkthrough, image, flavor,
                     count: int) -> tuple[list[float], object]:
    """Boot ``count`` + 1 servers one at a time (each deleted before the
    next: two small hosts do not hold 21 guests); the first fills the image
    cache and is not counted but kept, for its domain XML."""
    compute = walk.tenant.compute
    times, first = [], None
    for i in range(count + 1):
        started = time.monotonic()
        server = compute.create_server(name="bench-%d" % i, image_id=image.id,
                                       flavor_id=flavor.id, networks="none")
        while True:
            server = compute.get_server(server.id)
            if server.status == "ACTIVE":
                break
            if server.status == "ERROR":
                raise RuntimeError("boot failed: %s" % server.fault)
            time.sleep(0.01)
        if i == 0:
            first = server
            continue
        times.append(time.monotonic() - started)
        compute.delete_server(server)
        compute.wait_for_delete(server, interval=0.1, wait=120)
    return times, first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="e2e_boot.py")
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args(argv)
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        cloud = Bringup(work / "cloud", hosts=2, api_port=free_port(),
                        rig_base_port=free_port_block(4, 18100, 19000),
                        say=lambda text: print(text, file=sys.stderr))
        cloud.up()
        try:
            cloud.manage("flavor", "create", "m1.nano", "--ram", "64", "--vcpus", "1",
                         "--disk", "1")
            walk = Walkthrough(cloud)
            meta = rig_fixtures.empty_image(work)
            image = walk.tenant.image.create_image(
                name="empty", filename=meta["source"], disk_format="qcow2",
                container_format="bare", wait=True)
            flavor = walk.tenant.compute.find_flavor("m1.nano")
            api_times, first = boot_through_api(walk, image, flavor, args.count)
            host = next(h for h in cloud.state["rig_hosts"]
                        if h["name"] == walk.admin.compute.get_server(first.id).compute_host)
            conn = libvirt.open(host["uri"])
            xml = conn.lookupByUUIDString(first.id).XMLDesc(0)
            conn.close()
            walk.tenant.compute.delete_server(first)
            walk.tenant.compute.wait_for_delete(first, interval=0.2, wait=120)
            virsh_times = bench_virsh(args.count, work, host, xml)
        finally:
            cloud.down(keep_logs=False)
    p50a, p99a, p50b, p99b = print_comparison(
        "boot of a 64 MiB no-OS guest, %d runs each, 2 rig hosts" % args.count,
        "flotilla: POST /servers -> ACTIVE", api_times, virsh_times)
    print("per-boot overhead: p50 %+.0f ms, p99 %+.0f ms (goal <= 250 ms)"
          % ((p50a - p50b) * 1e3, (p99a - p99b) * 1e3))
    return 0


if __name__ == "__main__":
    sys.exit(main())

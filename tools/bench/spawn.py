"""Spawn latency through the compute agent vs bare ``virsh create``.

    .venv/bin/python tools/bench/spawn.py [--count 20]

Starts a one-host rig, a RabbitMQ vhost and a PostgreSQL database, and
flotilla-conductor and flotilla-compute as processes (as in the integration
tier). Then, in one run: ``--count`` builds of a 64 MiB no-OS guest from a
cached base, each timed from the RPC cast to libvirt reporting the domain
running; and as many ``virsh create`` of the same domain XML (with its own
overlay disk made beforehand) timed until the command returns. Prints
p50/p99 of both and their ratio (goal: <= 1.3x). Asserts nothing. Everything
it started is stopped and removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import libvirt  # noqa: E402

from tests.fixtures import rig as rig_fixtures  # noqa: E402
from tests.fixtures.daemons import Daemon, write_config  # noqa: E402
from tests.fixtures.services import (  # noqa: E402
    RPC_KEY,
    postgresql_database,
    rabbit_vhost,
)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def print_comparison(title: str, flotilla_label: str, flotilla_times: list[float],
                     bare_times: list[float]) -> tuple[float, float, float, float]:
    """A table of p50/p99 of both series (ms); returns the four figures (s)."""
    p50a, p99a = statistics.median(flotilla_times), percentile(flotilla_times, 99)
    p50b, p99b = statistics.median(bare_times), percentile(bare_times, 99)
    print(title)
    print("%-36s %9s %9s" % ("", "p50 (ms)", "p99 (ms)"))
    print("%-36s %9.1f %9.1f" % (flotilla_label, p50a * 1e3, p99a * 1e3))
    print("%-36s %9.1f %9.1f" % ("bare virsh create (same XML)", p50b * 1e3, p99b * 1e3))
    return p50a, p99a, p50b, p99b


def wait_running(conn: libvirt.virConnect, uuid_str: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if conn.lookupByUUIDString(uuid_str).state()[0] == libvirt.VIR_DOMAIN_RUNNING:
                return
        except libvirt.libvirtError:
            pass
        time.sleep(0.002)
    raise RuntimeError("domain %s did not start" % uuid_str)


def bench_agent(count: int, work: pathlib.Path, host: dict, rabbit_url: str,
                db_url: str) -> tuple[list[float], str]:
    from oslo_config import cfg

    from compute.rpcapi import ComputeAPI
    from flotilla import conf as flotilla_conf
    from flotilla import rpc
    from flotilla import states as st
    from flotilla.context import RequestContext
    from flotilla.db import api as db
    from flotilla.db import schema

    config = write_config(work / "flotilla.conf", {
        "DEFAULT": {"transport_url": rabbit_url, "state_path": work, "host": host["name"]},
        "rpc": {"signing_key": RPC_KEY},
        "database": {"connection": db_url},
        "compute": {"compute_driver": "libvirt"},
        "libvirt": {"connection_uri": host["uri"],
                    "instances_path": host["instances_path"]}})
    conf = cfg.ConfigOpts()
    flotilla_conf.register_all(conf)
    conf(["--config-file", str(config)], project="flotilla", default_config_files=[])
    db.configure(conf)
    schema.db_sync(conf)
    image = rig_fixtures.empty_image(work)
    transport = rpc.get_transport(conf)
    compute = ComputeAPI(transport)
    conductor = Daemon("flotilla-conductor", config, work / "conductor.log")
    agent = Daemon("flotilla-compute", config, work / "compute.log")
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # polling misses are expected
    conn = libvirt.open(host["uri"])
    times, sample_xml = [], ""
    try:
        agent.wait_for_log("flotilla-compute started", 60)

        def build() -> tuple[str, float]:
            uuid_str = db.instance_create({
                "name": "bench", "project_id": "bench", "vm_state": st.BUILDING,
                "task_state": st.SCHEDULING,
                "flavor": {"name": "bench", "memory_mb": 64, "vcpus": 1, "root_gb": 1}}).uuid
            started = time.monotonic()
            compute.build_and_run_instance(RequestContext(), host["name"], uuid_str, image)
            wait_running(conn, uuid_str)
            return uuid_str, time.monotonic() - started

        warm, _ = build()   # fills the image cache: the figures are for a cached base
        sample_xml = conn.lookupByUUIDString(warm).XMLDesc(0)
        built = [warm]
        for _ in range(count):
            uuid_str, elapsed = build()
            times.append(elapsed)
            built.append(uuid_str)
        for uuid_str in built:
            compute.terminate_instance(RequestContext(), host["name"], uuid_str)
        deadline = time.monotonic() + 120
        while conn.listAllDomains() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        agent.stop()
        conductor.stop()
        conn.close()
        transport.cleanup()
        db.dispose()
    return times, sample_xml


def bench_virsh(count: int, work: pathlib.Path, host: dict, sample_xml: str) -> list[float]:
    from lxml import etree
    base = work / "empty.qcow2"
    times = []
    for i in range(count):
        tree = etree.fromstring(sample_xml.encode())
        new_uuid = str(uuid.uuid4())
        tree.find("uuid").text = new_uuid
        tree.find("name").text = "bench-virsh-%d" % i
        disk = pathlib.Path(host["instances_path"]) / ("virsh-%d.qcow2" % i)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base),
                        "-F", "qcow2", str(disk)], check=True)
        tree.find("devices/disk/source").set("file", str(disk))
        for serial_log in tree.iterfind("devices/serial/log"):
            serial_log.set("file", str(work / ("virsh-%d.log" % i)))
        for source in tree.iterfind("devices/serial/source"):
            source.set("path", str(work / ("virsh-%d.log" % i)))
        xml_path = work / ("virsh-%d.xml" % i)
        xml_path.write_bytes(etree.tostring(tree))
        started = time.monotonic()
        subprocess.run(["virsh", "-q", "-c", host["uri"], "create", str(xml_path)],
                       check=True, capture_output=True)
        times.append(time.monotonic() - started)
        subprocess.run(["virsh", "-q", "-c", host["uri"], "destroy", new_uuid],
                       check=True, capture_output=True)
        disk.unlink()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spawn.py")
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        work = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory()))
        rig = stack.enter_context(rig_fixtures.running_rig(str(work / "rig"), hosts=1))
        rabbit_url = stack.enter_context(rabbit_vhost("flotilla-bench"))
        db_url = stack.enter_context(postgresql_database())
        host = rig["hosts"][0]
        agent, xml = bench_agent(args.count, work, host, rabbit_url, db_url)
        bare = bench_virsh(args.count, work, host, xml)
    p50a, p99a, p50b, p99b = print_comparison(
        "spawn of a 64 MiB no-OS guest, cached base, %d runs each" % args.count,
        "flotilla: RPC cast -> running", agent, bare)
    print("ratio flotilla / virsh: p50 %.2fx, p99 %.2fx (goal <= 1.3x)"
          % (p50a / p50b, p99a / p99b))
    return 0


if __name__ == "__main__":
    sys.exit(main())

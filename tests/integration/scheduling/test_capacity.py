"""Builds at exact capacity across processes (RabbitMQ, PostgreSQL).

A conductor, TWO scheduler processes (competing consumers) and two compute
agents on the fake driver (sized by [fake_driver]), each agent with room for
exactly 25 tiny servers by RAM (1600 MB, 64 MB each): 50 concurrent create
requests end with 50 ACTIVE servers and no host over capacity; one more
ends in ERROR with the NoValidHost reason as its fault. Every process is stopped, the
vhost and the database are removed afterwards.
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import subprocess
import uuid as uuidlib

import pytest

from tests.fixtures.daemons import BIN, Daemon, write_config
from tests.fixtures.services import RPC_KEY, postgresql_database, rabbit_vhost
from tests.fixtures.waiting import wait_until

REPO = pathlib.Path(__file__).resolve().parents[3]
FLAVOR = {"flavorid": "tiny", "name": "tiny", "memory_mb": 64, "vcpus": 1,
          "root_gb": 1, "ephemeral_gb": 0}
HOSTS = {"cap-host1": 25, "cap-host2": 25}


@pytest.fixture
def services():
    with rabbit_vhost() as rabbit_url, postgresql_database() as db_url:
        yield rabbit_url, db_url


def _config(tmp_path, name, rabbit_url, db_url, host, exchange, memory_mb=8192):
    return write_config(tmp_path / ("%s.conf" % name), {
        "DEFAULT": {"transport_url": rabbit_url, "state_path": tmp_path,
                    "report_interval": 1, "host": host},
        "rpc": {"control_exchange": exchange, "signing_key": RPC_KEY},
        "database": {"connection": db_url},
        "compute": {"compute_driver": "fake", "resource_report_interval": 5},
        "fake_driver": {"memory_mb": memory_mb, "vcpus": 32, "disk_gb": 1000},
        "scheduler": {"host_subset_size": 2},
    })


def _wait(predicate, timeout: float = 30, what: str = "condition"):
    return wait_until(predicate, timeout, what, interval=0.2)

def test_fifty_builds_fill_exact_capacity_and_the_next_gets_no_valid_host(
        tmp_path, services, conf):
    rabbit_url, db_url = services
    exchange = "flotilla-cap-" + uuidlib.uuid4().hex[:6]
    env = {"PYTHONPATH": str(REPO)}
    base = _config(tmp_path, "base", rabbit_url, db_url, "cap-ctl", exchange)
    sync = subprocess.run([str(BIN / "flotilla-manage"), "--config-file", str(base),
                           "db", "sync"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    assert sync.returncode == 0, sync.stderr

    daemons: list[Daemon] = []
    try:
        daemons.append(Daemon("flotilla-conductor", base, tmp_path / "conductor.log", env=env))
        for n in (1, 2):
            cfg_path = _config(tmp_path, "sched%d" % n, rabbit_url, db_url,
                               "cap-sched%d" % n, exchange)
            daemons.append(Daemon("flotilla-scheduler", cfg_path,
                                  tmp_path / ("scheduler%d.log" % n), env=env))
        for host, slots in HOSTS.items():
            cfg_path = _config(tmp_path, host, rabbit_url, db_url, host, exchange,
                               memory_mb=64 * slots)
            daemons.append(Daemon("flotilla-compute", cfg_path, tmp_path / ("%s.log" % host),
                                  env=env))
        for d in daemons:
            d.wait_for_log(r"%s started" % d.binary, timeout=60)
        _run_builds(tmp_path, rabbit_url, db_url, exchange, conf)
    finally:
        statuses = {d.log_path.name: d.stop(timeout=40) for d in daemons}
    logs = "".join(d.log() for d in daemons)
    assert all(s == 0 for s in statuses.values()), (statuses, logs[-6000:])
    assert "Traceback" not in logs, logs[-6000:]
    placed = [d.log().count("placed ") for d in daemons if d.binary == "flotilla-scheduler"]
    print("requests placed per scheduler process:", placed)


def _run_builds(tmp_path, rabbit_url, db_url, exchange, conf) -> None:
    from conductor.rpcapi import ConductorAPI
    from flotilla import rpc
    from flotilla import states as st
    from flotilla.context import RequestContext
    from flotilla.db import api as db

    conf.set_override("transport_url", rabbit_url)
    conf.set_override("control_exchange", exchange, group="rpc")
    conf.set_override("signing_key", RPC_KEY, group="rpc")
    conf.set_override("connection", db_url, group="database")
    db.configure(conf)
    transport = rpc.get_transport(conf)
    conductor = ConductorAPI(transport)
    try:
        _wait(lambda: len(db.compute_node_get_all()) == len(HOSTS)
              and all(n.memory_mb for n in db.compute_node_get_all()), 60,
              "both compute nodes to report")

        def create() -> str:
            ctxt = RequestContext(user_id="u1", project_id="p1", roles=["member"])
            uuid = str(uuidlib.uuid4())
            db.instance_create({"uuid": uuid, "name": "cap", "project_id": "p1",
                                "user_id": "u1", "flavor": dict(FLAVOR),
                                "vm_state": st.BUILDING, "task_state": st.SCHEDULING})
            db.action_start(uuid, "create", ctxt.request_id, user_id="u1", project_id="p1")
            conductor.build_instances(ctxt, [uuid], {
                "flavor": dict(FLAVOR), "image": {"id": "img", "properties": {},
                                                  "min_ram": 0, "min_disk": 0},
                "availability_zone": None, "group": None, "num_instances": 1}, None)
            return uuid

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            uuids = list(pool.map(lambda _: create(), range(50)))

        def settled(us):
            insts = [db.instance_get(u) for u in us]
            return insts if all(i.task_state is None and i.vm_state != st.BUILDING
                                for i in insts) else None

        insts = _wait(lambda: settled(uuids), 180, "50 builds to settle")
        states = sorted({i.vm_state for i in insts})
        faults = {i.uuid: [f.message for f in db.instance_fault_get_all(i.uuid)]
                  for i in insts if i.vm_state != st.ACTIVE}
        assert states == [st.ACTIVE], faults
        for node in db.compute_node_get_all():
            allocations = db.allocation_get_all_by_host(node.host)
            assert len(allocations) == HOSTS[node.host]
            assert node.memory_mb_used == sum(a.memory_mb for a in allocations)
            assert node.memory_mb_used <= node.memory_mb * node.ram_allocation_ratio
        assert sorted(i.host for i in insts).count("cap-host1") == HOSTS["cap-host1"]

        extra = create()
        [inst] = _wait(lambda: settled([extra]), 60, "the 51st build to settle")
        assert inst.vm_state == st.ERROR and inst.host is None
        [fault] = db.instance_fault_get_all(extra)
        assert fault.message.startswith("No valid host was found.")
        assert "RamFilter eliminated 2 of 2 hosts" in fault.message
        assert db.allocation_get_by_consumer(extra) == []
    finally:
        transport.cleanup()
        db.dispose()

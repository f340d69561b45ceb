"""The demo's bring-up for the end-to-end tests: a real two-host cloud.

One bring-up per module (rig hosts with QEMU, RabbitMQ, PostgreSQL, every
daemon as a process). Its teardown checks that nothing is left: no domain on
any rig host, no instance files, every server soft-deleted with no
allocation, and, once stopped, no vhost, queue, database or process.
"""

from __future__ import annotations

import logging
import pathlib

import pytest
import sqlalchemy as sa

from tests.fixtures.ports import free_port, free_port_block
from tests.fixtures.rig import virsh
from tests.fixtures.services import rabbitmqctl
from tools.demo.bringup import Bringup
from tools.demo.demo import Walkthrough

LOG = logging.getLogger("e2e")



@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    bringup = Bringup(root, hosts=2, api_port=free_port(),
                      rig_base_port=free_port_block(4, start=18100, end=19000),
                      say=LOG.info)
    bringup.up()
    try:
        yield bringup
    finally:
        _teardown_and_check(bringup)


def _teardown_and_check(bringup: Bringup) -> None:
    state = dict(bringup.state)
    problems: list[str] = []
    try:
        for name in list(state.get("pids", {})):
            if name.startswith("flotilla-compute"):
                bringup.stop_daemon(name)
        problems += _leftovers_on_hosts(state) + _leftovers_in_database(state)
    finally:
        statuses = bringup.down()
    if any(code not in (0, None) for code in statuses.values()):
        problems.append("daemons did not stop cleanly: %s" % statuses)
    if state["vhost"] in rabbitmqctl("list_vhosts", "--no-table-headers").split():
        problems.append("vhost %s left" % state["vhost"])
    queues = rabbitmqctl("list_queues", "--no-table-headers", "name").split()
    ours = [q for q in queues if q.startswith(("compute.", "conductor", "scheduler"))]
    if ours:
        problems.append("queues left in the default vhost: %s" % ours)
    if pathlib.Path(state["rig_root"]).exists():
        problems.append("rig directory left: %s" % state["rig_root"])
    assert not problems, "\n".join(problems)


def _leftovers_on_hosts(state: dict) -> list[str]:
    problems = []
    for host in state["rig_hosts"]:
        domains = virsh(host["uri"], "list", "--all", "--name").stdout.split()
        if domains:
            problems.append("domains left on %s: %s" % (host["name"], domains))
        instances = pathlib.Path(host["instances_path"])
        files = [p.name for p in instances.iterdir() if p.name != "_base"] \
            if instances.exists() else []
        if files:
            problems.append("instance files left on %s: %s" % (host["name"], files))
    return problems


def _leftovers_in_database(state: dict) -> list[str]:
    engine = sa.create_engine(state["database_url"])
    try:
        with engine.connect() as conn:
            live = conn.execute(sa.text(
                "select uuid, vm_state from instances where not deleted")).all()
            allocations = conn.execute(sa.text("select consumer_id from allocations")).all()
            unterminated = conn.execute(sa.text(
                "select uuid from instances where deleted and vm_state <> 'deleted'")).all()
    finally:
        engine.dispose()
    problems = []
    if live:
        problems.append("instances not deleted: %s" % live)
    if allocations:
        problems.append("allocations left: %s" % allocations)
    if unterminated:
        problems.append("soft-deleted instances not in vm_state deleted: %s" % unterminated)
    return problems


@pytest.fixture(scope="module")
def walkthrough(cloud):
    return Walkthrough(cloud)

"""Host drain (flotilla/drain.py) on fake hosts joined by a fake migration
fabric: ``flotilla host drain`` through the real HTTP API with the
unmodified SDK, and ``flotilla-manage host drain``'s control-plane backend.
The host ends disabled with the reason, every movable guest on the other
host, and every guest not moved named with its reason (exit status 1)."""

from __future__ import annotations

import io
import time
from contextlib import redirect_stdout

import pytest

from compute.virt.fake import FakeDriver, FakeGuest
from compute.virt.fake_migration import FakeFabric
from flotilla import states as st
from flotilla.cli import main as cli_main
from flotilla.cmd.manage_host import DirectBackend
from flotilla.db import api as db
from flotilla.db import identity as identity_db
from flotilla.drain import Drainer
from flotilla.objects import Instance
from tests.fixtures.api_stack import APIStack
from tests.fixtures.image_app import qcow2_bytes
from tests.fixtures.scheduling import SchedulingCloud


def _on_host1(count: int, boot) -> list[str]:
    """Boot ``count`` servers while host2 is disabled, so all land on host1."""
    db.service_set_disabled("host2", "flotilla-compute", True, "test")
    try:
        uuids = boot(count)
    finally:
        db.service_set_disabled("host2", "flotilla-compute", False)
    assert {db.instance_get(u).host for u in uuids} == {"host1"}
    return uuids


@pytest.fixture
def stack(conf, tmp_path):
    conf.set_override("compute_driver", "fake", group="compute")
    conf.set_override("live_migration_progress_interval", 0.2, group="compute")
    fabric = FakeFabric()
    cloud = APIStack(conf, tmp_path, lambda host: FakeDriver(fabric=fabric))
    identity_db.role_add("alice", "demo", "admin")
    yield cloud
    cloud.stop()


def _boot_api(conn, count: int) -> list[str]:
    image = conn.image.create_image(name="base", data=qcow2_bytes(8192),
                                    disk_format="qcow2", container_format="bare")
    servers = [conn.compute.create_server(name="vm%d" % i, image_id=image.id,
                                          flavor_id="1", networks="none")
               for i in range(count)]
    for server in servers:
        deadline = time.monotonic() + 30
        while (s := conn.compute.get_server(server.id)).status != "ACTIVE" \
                or s.task_state:
            assert time.monotonic() < deadline, "%s is %s" % (s.name, s.status)
            time.sleep(0.05)
    return [s.id for s in servers]


def _wait_stopped(uuid: str) -> None:
    deadline = time.monotonic() + 30
    while db.instance_get(uuid).vm_state != st.STOPPED or db.instance_get(uuid).task_state:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _cli_drain(conn, *args: str) -> tuple[int, str]:
    """``flotilla host drain host1 ARGS`` through the SDK connection: its exit
    status and output."""
    out = io.StringIO()
    with redirect_stdout(out):
        status = cli_main.main(["--poll-interval", "0.1", "host", "drain", "host1", *args],
                               connector=lambda args: conn)
    return status, out.getvalue()


def test_flotilla_host_drain_moves_running_and_stopped_guests(stack):
    conn = stack.connect()
    uuids = _on_host1(5, lambda n: _boot_api(conn, n))
    stopped = uuids[-1]
    conn.compute.stop_server(stopped)
    _wait_stopped(stopped)
    status, text = _cli_drain(conn, "--reason", "kernel update", "--max-concurrent", "2")
    assert status == 0, text
    for uuid in uuids:
        assert db.instance_get(uuid).host == "host2"
        assert uuid in stack.drivers["host2"].guests
        assert uuid not in stack.drivers["host1"].guests
        assert "(%s): moved" % uuid in text
    # Cold-migrated and confirmed: still stopped, no resize left to confirm.
    now = db.instance_get(stopped)
    assert (now.vm_state, now.task_state) == (st.STOPPED, None)
    assert conn.compute.get_server(stopped).status == "SHUTOFF"
    assert "vm4 (%s): cold migration (stopped) started" % stopped in text
    assert "vm4 (%s): confirming its cold migration" % stopped in text
    assert "vm0 (%s): live migration started" % uuids[0] in text
    assert "5 moved, 0 not moved" in text
    service = db.service_get("host1", "flotilla-compute")
    assert (service.disabled, service.disabled_reason) == (True, "kernel update")


def test_flotilla_host_drain_names_a_guest_in_error(stack):
    conn = stack.connect()
    uuids = _on_host1(2, lambda n: _boot_api(conn, n))
    broken = uuids[1]
    db.instance_update(broken, {"vm_state": st.ERROR})
    status, text = _cli_drain(conn)
    assert status == 1, text
    assert db.instance_get(uuids[0]).host == "host2"
    assert db.instance_get(broken).host == "host1"
    assert "not moved: vm1 (%s): status ERROR" % broken in text
    assert "1 moved, 1 not moved" in text


@pytest.fixture
def cloud(conf):
    conf.set_override("compute_driver", "fake", group="compute")
    conf.set_override("live_migration_progress_interval", 0.2, group="compute")
    fabric = FakeFabric()
    c = SchedulingCloud(conf, ["host1", "host2"], lambda host: FakeDriver(fabric=fabric))
    yield c
    c.stop()


def _boot_direct(cloud, count: int) -> list[str]:
    _ctxt, uuids = cloud.boot_servers(count)
    cloud.wait_settled(uuids)
    return uuids


def test_manage_drain_names_a_guest_whose_migration_failed(cloud, conf):
    uuids = _on_host1(3, lambda n: _boot_direct(cloud, n))
    # host2 already defines one of them: its migration's checks refuse it.
    blocked = uuids[1]
    cloud.drivers["host2"].guests[blocked] = FakeGuest(
        Instance.from_record(db.instance_get(blocked).to_dict()))
    out = io.StringIO()
    result = Drainer(DirectBackend(conf, cloud.conductor), max_concurrent=2,
                     poll_interval=0.05, out=out).drain("host1", "maintenance")
    text = out.getvalue()
    assert not result.ok
    assert sorted(g.id for g in result.moved) == sorted(set(uuids) - {blocked})
    assert list(result.failed) == [blocked]
    reason = result.failed[blocked][1]
    assert reason.startswith("migration error:") and "holds it already" in reason, reason
    assert "holds it already" in text
    for uuid in set(uuids) - {blocked}:
        assert db.instance_get(uuid).host == "host2"
    now = db.instance_get(blocked)
    assert (now.host, now.vm_state, now.task_state) == ("host1", st.ACTIVE, None)
    assert db.service_get("host1", "flotilla-compute").disabled


def test_drain_never_runs_more_than_the_limit_at_once(cloud, conf):
    uuids = _on_host1(4, lambda n: _boot_direct(cloud, n))
    backend = DirectBackend(conf, cloud.conductor)
    most = []
    start = backend.live_migrate

    def counting(guest):
        start(guest)
        most.append(sum(1 for u in uuids
                        if db.instance_get(u).task_state == st.MIGRATING))
    backend.live_migrate = counting
    result = Drainer(backend, max_concurrent=2, poll_interval=0.05).drain("host1")
    assert result.ok, result.failed
    assert max(most) <= 2
    assert {db.instance_get(u).host for u in uuids} == {"host2"}



def test_manage_drain_cold_migrates_and_confirms_a_stopped_guest(cloud, conf):
    uuids = _on_host1(2, lambda n: _boot_direct(cloud, n))
    stopped = uuids[0]
    ctxt = cloud.ctxt
    db.action_start(stopped, "stop", ctxt.request_id)
    db.instance_update(stopped, {"task_state": st.POWERING_OFF})
    cloud.compute.stop_instance(ctxt, "host1", stopped)
    _wait_stopped(stopped)
    out = io.StringIO()
    result = Drainer(DirectBackend(conf, cloud.conductor), max_concurrent=2,
                     poll_interval=0.05, out=out).drain("host1")
    text = out.getvalue()
    assert result.ok, (result.failed, text)
    assert sorted(g.id for g in result.moved) == sorted(uuids)
    now = db.instance_get(stopped)
    assert (now.host, now.vm_state, now.task_state) == ("host2", st.STOPPED, None)
    assert stopped in cloud.drivers["host2"].guests
    assert stopped not in cloud.drivers["host1"].guests
    assert "confirming its cold migration" in text
    actions = [a.action for a in db.action_get_all(stopped)]
    assert "migrate" in actions and "confirmResize" in actions, actions


def test_manage_drain_leaves_a_guest_whose_volume_is_being_attached(cloud, conf):
    from flotilla.db import volumes as vdb
    uuids = _on_host1(2, lambda n: _boot_direct(cloud, n))
    busy = uuids[1]
    volume = vdb.volume_create({"size_gb": 1, "status": st.VOLUME_ATTACHING,
                                "project_id": "p1", "host": "vol1"},
                               {"volumes": -1, "gigabytes": -1})
    vdb.attachment_create(volume.id, busy, "host1")
    result = Drainer(DirectBackend(conf, cloud.conductor), max_concurrent=2,
                     poll_interval=0.05).drain("host1")
    assert [g.id for g in result.moved] == [uuids[0]]
    assert result.failed[busy][1] == "refused: its volume %s is attaching" % volume.id
    now = db.instance_get(busy)
    assert (now.host, now.vm_state, now.task_state) == ("host1", st.ACTIVE, None)
    assert db.action_get_all(busy)[0].action == "create"    # nothing was started


def _wait_verify_resize(uuid: str) -> None:
    deadline = time.monotonic() + 30
    while (db.instance_get(uuid).vm_state, db.instance_get(uuid).task_state) \
            != (st.RESIZED, None):
        assert time.monotonic() < deadline, db.instance_get(uuid).vm_state
        time.sleep(0.05)


def test_flotilla_host_drain_confirms_a_cold_migration_left_unconfirmed(stack):
    """A cold migration off host1 waiting in VERIFY_RESIZE (a drain died
    before its confirm) keeps its source copy on host1: the next drain
    finds it through os-migrations and confirms it."""
    conn = stack.connect()
    [left] = _on_host1(1, lambda n: _boot_api(conn, n))
    conn.compute.stop_server(left)
    _wait_stopped(left)
    conn.compute.migrate_server(left)
    _wait_verify_resize(left)
    assert left in stack.drivers["host1"].guests          # the source copy
    status, text = _cli_drain(conn)
    assert status == 0, text
    assert "vm0 (%s): its cold migration off the host waits in VERIFY_RESIZE" % left in text
    assert "1 moved, 0 not moved" in text
    now = db.instance_get(left)
    assert (now.host, now.vm_state, now.task_state) == ("host2", st.STOPPED, None)
    assert left not in stack.drivers["host1"].guests


def test_manage_drain_confirms_a_cold_migration_left_unconfirmed(cloud, conf):
    """As above through the control plane; the confirm is not refused for
    a volume being uploaded (a move would be: the confirm moves nothing)."""
    from flotilla.db import volumes as vdb
    [left] = _on_host1(1, lambda n: _boot_direct(cloud, n))
    ctxt = cloud.ctxt
    db.action_start(left, "stop", ctxt.request_id)
    db.instance_update(left, {"task_state": st.POWERING_OFF})
    cloud.compute.stop_instance(ctxt, "host1", left)
    _wait_stopped(left)
    backend = DirectBackend(conf, cloud.conductor)
    [listed] = backend.guests("host1")
    backend.cold_migrate(listed)
    _wait_verify_resize(left)
    volume = vdb.volume_create({"size_gb": 1, "status": st.VOLUME_UPLOADING,
                                "project_id": "p1", "host": "vol1"},
                               {"volumes": -1, "gigabytes": -1})
    vdb.attachment_create(volume.id, left, "host2")
    out = io.StringIO()
    result = Drainer(backend, max_concurrent=2, poll_interval=0.05, out=out).drain("host1")
    assert result.ok, (result.failed, out.getvalue())
    assert [g.id for g in result.moved] == [left]
    now = db.instance_get(left)
    assert (now.host, now.vm_state, now.task_state) == ("host2", st.STOPPED, None)
    assert left not in cloud.drivers["host1"].guests

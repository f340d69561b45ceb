"""Flotilla's units under a real systemd, installed the operator's way.

One container per module (tests/systemd/conftest.py: mmdebstrap tree,
tools/install/install.sh from wheels, the host's RabbitMQ and PostgreSQL,
compute on libvirt's test:///default). The tests run in order and each
leaves every unit running with its shipped definition, except the last two.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
import urllib.request

import psycopg
import pytest

from tests.fixtures.services import rabbitmqctl
from tests.fixtures.waiting import wait_until
from tests.systemd.conftest import UNITS, Deployed

pytestmark = pytest.mark.slow

READY_LINES = {"flotilla-api": "flotilla-api listening on",
               "flotilla-conductor": "flotilla-conductor started on",
               "flotilla-scheduler": "flotilla-scheduler started on",
               "flotilla-compute": "flotilla-compute started on",
               "flotilla-volume": "flotilla-volume started on"}
STOPPED = {"flotilla-api": r"flotilla-api on http://\S+ stopped",
           "flotilla-conductor": r"flotilla-conductor on \S+ stopped",
           "flotilla-scheduler": r"flotilla-scheduler on \S+ stopped",
           "flotilla-compute": r"flotilla-compute on \S+ stopped",
           "flotilla-volume": r"flotilla-volume on \S+ stopped"}
# A bad value per daemon: [group], option, value.
BAD_OPTIONS = {"flotilla-api": ("api", "workers", "many"),
               "flotilla-conductor": ("DEFAULT", "report_interval", "soon"),
               "flotilla-scheduler": ("scheduler", "max_attempts", "0"),
               "flotilla-compute": ("libvirt", "virt_type", "xen"),
               "flotilla-volume": ("volume", "nbd_port", "99999")}
# systemd-analyze security: the goal for every unit (the compute
# agent's sandbox is the same but for UMask=0022 and ProcSubset, see its unit).
EXPOSURE_GOAL = {unit: 2.0 for unit in UNITS}


def _wait(predicate, timeout: float = 30, what: str = "condition"):
    return wait_until(predicate, timeout, what, interval=0.1)

def _get(url: str, timeout: float = 5) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status


def _drop_in(deployed: Deployed, unit: str, name: str, text: str) -> None:
    deployed.write("/etc/systemd/system/%s.service.d/%s.conf" % (unit, name), text)


def _restore(deployed: Deployed, *units: str) -> None:
    """The shipped definitions again, every unit running."""
    for unit in units:
        deployed.remove("/etc/systemd/system/%s.service.d" % unit)
    deployed.systemctl("daemon-reload")
    deployed.systemctl("reset-failed", check=False)
    deployed.systemctl("restart", *units)


def _service_states(deployed: Deployed) -> dict[tuple[str, str], str]:
    """(binary, host) -> up/down from flotilla-manage service list."""
    rows = [line.split() for line in deployed.manage("service", "list").splitlines()]
    # Columns: host, binary, topic, state, ...
    return {(r[1], r[0]): r[3] for r in rows if len(r) > 3 and r[1].startswith("flotilla-")}


def test_installed_the_operator_way(deployed):
    machine = deployed.machine
    units = ["/etc/systemd/system/%s.service" % u for u in UNITS]
    verify = machine.sh("systemd-analyze", "verify", *units, check=False)
    assert verify.returncode == 0 and "flotilla" not in verify.stdout + verify.stderr, \
        verify.stdout + verify.stderr
    for unit in UNITS:
        docs = deployed.show(unit, "Documentation")["Documentation"].split()
        assert docs
        for url in docs:
            assert url.startswith("file:///"), url
            assert (machine.root / url[len("file:///"):]).is_file(), \
                "%s: Documentation=%s is not installed" % (unit, url)
    assert machine.sh("stat", "-c", "%a %U %G", "/etc/flotilla/flotilla.conf").stdout.split() \
        == ["640", "root", "flotilla"]
    groups = machine.sh("id", "-nG", "flotilla").stdout.split()
    assert set(groups) == {"flotilla", "libvirt"}, groups
    version = deployed.manage("db", "version")
    assert "db sync" not in version and version.strip(), version


def test_start_returns_when_ready(deployed):
    cursor = deployed.cursor()
    deployed.systemctl("start", *UNITS)
    # No retry: `systemctl start` returning is the promise that it serves.
    assert _get(deployed.endpoint + "/compute") == 200
    # Every RPC daemon sent its first heartbeat before READY=1.
    states = _service_states(deployed)
    for binary in ("flotilla-conductor", "flotilla-scheduler", "flotilla-compute",
                   "flotilla-volume"):
        assert states.get((binary, deployed.host)) == "up", states
    for unit in UNITS:
        props = deployed.show(unit, "ActiveState", "SubState", "Type", "StatusText",
                              "WatchdogUSec", "NRestarts", "UMask")
        assert props["ActiveState"] == "active" and props["SubState"] == "running", props
        assert props["Type"] == "notify" and props["StatusText"] == "serving", props
        assert props["WatchdogUSec"] == "1min", props
        assert props["UMask"] == ("0022" if unit == "flotilla-compute" else "0077"), props
        journal = _wait(lambda u=unit: READY_LINES[u] in (j := deployed.journal(u, cursor))
                        and j, 10, unit + " ready line")
        assert "systemd watchdog: a keep-alive every 15.0 s" in journal, journal
    # The user's groups from /etc/group reach the agent (libvirtd's socket).
    pid = deployed.main_pid("flotilla-compute")
    gids = deployed.machine.sh("awk", "/^Groups:/ {$1=\"\"; print}",
                               "/proc/%d/status" % pid).stdout.split()
    libvirt_gid = deployed.machine.sh("getent", "group", "libvirt").stdout.split(":")[2]
    assert libvirt_gid in gids, gids


def test_a_tenant_boots_and_deletes_a_server(deployed, tmp_path):
    conn = deployed.tenant()
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * (1 << 20))
    image = conn.image.create_image(name="systemd-tier", filename=str(disk),
                                    disk_format="raw", container_format="bare", wait=True)
    try:
        image = conn.image.get_image(image.id)
        assert image.status == "active" and image.size == 1 << 20, image
        flavor = conn.compute.find_flavor("m1.tiny", ignore_missing=False)
        server = conn.compute.create_server(name="under-systemd", image_id=image.id,
                                            flavor_id=flavor.id, networks="none")
        server = conn.compute.wait_for_server(server, status="ACTIVE", wait=60, interval=0.5)
        assert server.status == "ACTIVE"
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, interval=0.5, wait=60)
    finally:
        conn.image.delete_image(image, ignore_missing=True)


def _storage_daemon(deployed: Deployed) -> int:
    """The pid of the one qemu-storage-daemon, which runs as flotilla in
    the volume unit's control group."""
    pids = deployed.machine.sh("pgrep", "-u", "flotilla", "-x", "qemu-storage-da",
                               check=False).stdout.split()
    assert len(pids) == 1, "qemu-storage-daemon processes: %s" % pids
    cgroup = deployed.machine.sh("cat", "/proc/%s/cgroup" % pids[0]).stdout
    assert "flotilla-volume.service" in cgroup, cgroup
    return int(pids[0])


def test_a_tenant_creates_and_deletes_a_volume(deployed):
    """Through the API, the scheduler and the sandboxed volume service (its
    pool in libvirt's test driver, its storage daemon real)."""
    conn = deployed.tenant()
    volume = conn.block_storage.create_volume(size=1, name="under-systemd")
    volume = conn.block_storage.wait_for_status(volume, "available", failures=["error"],
                                                interval=0.5, wait=60)
    assert volume.size == 1
    conn.block_storage.delete_volume(volume)
    conn.block_storage.wait_for_delete(volume, interval=0.5, wait=60)
    _storage_daemon(deployed)


def test_kill_9_of_each_daemon_restarts_it(deployed):
    storage_daemon = _storage_daemon(deployed)
    before = {u: deployed.show(u, "MainPID", "NRestarts") for u in UNITS}
    pids = [before[u]["MainPID"] for u in UNITS]
    assert all(int(pid) > 0 for pid in pids), "units not running: %s" % before
    cursor = deployed.cursor()
    deployed.machine.sh("kill", "-9", *pids)

    def restarted():
        now = {u: deployed.show(u, "MainPID", "ActiveState", "NRestarts") for u in UNITS}
        return all(s["ActiveState"] == "active" and s["MainPID"] not in ("0", before[u]["MainPID"])
                   for u, s in now.items()) and now
    now = _wait(restarted, 60, "every unit restarted with a new main process")
    for unit in UNITS:
        assert int(now[unit]["NRestarts"]) == int(before[unit]["NRestarts"]) + 1, now[unit]
        journal = deployed.journal(unit, cursor)
        assert "Main process exited, code=killed, status=9/KILL" in journal, journal
    assert _get(deployed.endpoint + "/compute") == 200
    # KillMode=process: the storage daemon outlived its service, which found
    # it again (exports of attached volumes never stop for a restart).
    assert _storage_daemon(deployed) == storage_daemon


def test_the_watchdog_restarts_a_hung_daemon(deployed):
    """The scheduler's heartbeat blocks on a row lock: its watchdog thread
    stops the keep-alives and systemd restarts it."""
    unit = "flotilla-scheduler"
    # A heartbeat may wait as long as an RPC message may: shorten that too.
    deployed.write("/etc/flotilla/short-waits.conf",
                   "[rpc]\ncall_timeout = 2\nreconnect_timeout = 2\n")
    _drop_in(deployed, unit, "watchdog", "[Service]\nWatchdogSec=4\nRestartSec=1\n"
             "ExecStart=\nExecStart=/opt/flotilla/bin/flotilla-scheduler --config-file "
             "/etc/flotilla/flotilla.conf --config-file /etc/flotilla/short-waits.conf\n")
    deployed.systemctl("daemon-reload")
    deployed.systemctl("restart", unit)
    try:
        pid = deployed.main_pid(unit)
        first = deployed.show(unit, "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]
        _wait(lambda: deployed.show(unit, "WatchdogTimestampMonotonic")
              ["WatchdogTimestampMonotonic"] != first, 5, "a keep-alive")
        cursor = deployed.cursor()
        url = deployed.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(url) as lock:
            lock.execute('SELECT 1 FROM services WHERE host = %s AND "binary" = %s FOR UPDATE',
                         (deployed.host, unit))
            journal = _wait(lambda: "Watchdog timeout" in (j := deployed.journal(unit, cursor))
                            and j, 60, "systemd's watchdog timeout")
            lock.rollback()
        assert "watchdog: flotilla-scheduler: heartbeat under way for" in journal, journal
        _wait(lambda: deployed.show(unit, "ActiveState")["ActiveState"] == "active"
              and deployed.main_pid(unit) != pid, 30, "the scheduler restarted")
        journal = deployed.journal(unit, cursor)
        assert "Failed with result 'watchdog'" in journal, journal
        # faulthandler: the stack of the hung thread is in the journal.
        assert "Fatal Python error: Aborted" in journal and "service_heartbeat" in journal, \
            journal
    finally:
        deployed.remove("/etc/flotilla/short-waits.conf")
        _restore(deployed, unit)


def test_a_bad_option_fails_after_one_try(deployed):
    for unit, (group, option, value) in BAD_OPTIONS.items():
        deployed.write("/etc/flotilla/bad-%s.conf" % unit, "[%s]\n%s = %s\n" % (group, option, value))
        _drop_in(deployed, unit, "bad", "[Service]\nExecStart=\nExecStart=/opt/flotilla/bin/"
                 "%s --config-file /etc/flotilla/flotilla.conf --config-file "
                 "/etc/flotilla/bad-%s.conf\n" % (unit, unit))
    deployed.systemctl("daemon-reload")
    cursor = deployed.cursor()
    try:
        result = deployed.systemctl("restart", *UNITS, check=False)
        assert result.returncode != 0
        for unit, (group, option, value) in BAD_OPTIONS.items():
            props = deployed.show(unit, "ActiveState", "Result", "ExecMainStatus", "NRestarts")
            # failed, not activating (auto-restart): no further try is coming.
            assert props == {"ActiveState": "failed", "Result": "exit-code",
                             "ExecMainStatus": "2", "NRestarts": "0"}, (unit, props)
            journal = deployed.journal(unit, cursor)
            named = "configuration error: invalid value for [%s] %s" % (group, option)
            assert journal.count(named) == 1, journal
            assert journal.count("Main process exited") == 1, journal
    finally:
        for unit in UNITS:
            deployed.remove("/etc/flotilla/bad-%s.conf" % unit)
        _restore(deployed, *UNITS)


def test_a_missing_group_fails_after_one_try(deployed):
    """A group the host lacks (SupplementaryGroups=libvirt on a host without
    libvirt) fails once with 216/GROUP instead of looping."""
    unit = "flotilla-compute"
    _drop_in(deployed, unit, "group", "[Service]\nSupplementaryGroups=no-such-group\n")
    deployed.systemctl("daemon-reload")
    cursor = deployed.cursor()
    try:
        assert deployed.systemctl("restart", unit, check=False).returncode != 0
        props = deployed.show(unit, "ActiveState", "ExecMainStatus", "NRestarts")
        assert props == {"ActiveState": "failed", "ExecMainStatus": "216", "NRestarts": "0"}, props
        journal = deployed.journal(unit, cursor)
        assert journal.count("status=216/GROUP") == 1, journal
    finally:
        _restore(deployed, unit)


def test_the_sandboxed_agent_reaches_a_real_libvirtd(deployed):
    """On a rig host's qemu+tcp:// URI the compute unit, sandbox and all,
    connects and reports the host before it says READY=1."""
    unit = "flotilla-compute"
    deployed.write("/etc/flotilla/libvirt-tcp.conf",
                   "[libvirt]\nconnection_uri = %s\n" % deployed.rig_uri)
    _drop_in(deployed, unit, "tcp", "[Service]\nExecStart=\nExecStart=/opt/flotilla/bin/"
             "flotilla-compute --config-file /etc/flotilla/flotilla.conf --config-file "
             "/etc/flotilla/libvirt-tcp.conf\n")
    deployed.systemctl("daemon-reload")
    cursor = deployed.cursor()
    try:
        deployed.systemctl("restart", unit)
        assert _hypervisor_type(deployed) == "QEMU"
        journal = deployed.journal(unit, cursor)
        assert "flotilla-compute started on" in journal and "cannot connect" not in journal, \
            journal
    finally:
        deployed.remove("/etc/flotilla/libvirt-tcp.conf")
        _restore(deployed, unit)
    assert _hypervisor_type(deployed) == "TEST"


def _hypervisor_type(deployed: Deployed) -> str:
    url = deployed.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT hypervisor_type FROM compute_nodes WHERE host = %s",
                            (deployed.host,)).fetchone()[0]


def test_security_exposure_within_the_goal(deployed):
    scores = {}
    for unit in UNITS:
        out = deployed.machine.sh("systemd-analyze", "security", "--no-pager", unit).stdout
        match = re.search(r"Overall exposure level for %s\.service: (\d+\.\d+)" % unit, out)
        assert match, out[-2000:]
        scores[unit] = float(match.group(1))
    print("systemd-analyze security: %s" % json.dumps(scores))
    assert all(scores[u] <= EXPOSURE_GOAL[u] for u in UNITS), scores


def test_stop_finishes_in_flight_work(deployed):
    conn = deployed.tenant()
    _upload_in_flight_while_the_api_stops(deployed, conn)
    _build_in_flight_while_the_conductor_stops(deployed, conn)
    cursor = deployed.cursor()
    deployed.systemctl("stop", *UNITS)
    for unit in UNITS:
        journal = _stopped_cleanly(deployed, unit, cursor)[1]
        assert "%s: received SIGTERM, stopping" % unit in journal, journal
        assert re.search(STOPPED[unit], journal), journal
        assert "Traceback" not in journal, journal


def _stopped_cleanly(deployed: Deployed, unit: str, cursor: str) -> tuple[float, str]:
    """Wait until ``unit`` stopped; assert it exited 0. Returns when it did
    (CLOCK_MONOTONIC, the host's too) and its journal since ``cursor``.

    The journal, not `systemctl show`: systemd unloads an inactive unit, and
    a fresh load reports Result=success and no exit status whatever happened.
    """
    done = re.compile(r"^\[\s*(\d+\.\d+)\] .*%s\.service: Deactivated successfully\.$"
                      % unit, re.M)
    journal = _wait(lambda: (j := deployed.journal(unit, cursor)) and (
        done.search(j) or "Failed with result" in j) and j, 45, unit + " stopped")
    assert "Main process exited" not in journal and "Failed with result" not in journal, journal
    return float(done.search(journal).group(1)), journal


def _upload_in_flight_while_the_api_stops(deployed: Deployed, conn) -> None:
    """An image upload half sent when SIGTERM comes completes (204), the
    API then exits 0."""
    unit = "flotilla-api"
    port = int(deployed.endpoint.rsplit(":", 1)[1])
    image = conn.image.post("/images", json={
        "name": "in-flight", "disk_format": "raw", "container_format": "bare"}).json()
    size = 4 << 20
    upload = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    upload.putrequest("PUT", "/image/v2/images/%s/file" % image["id"])
    for name, value in (("Content-Type", "application/octet-stream"),
                        ("Content-Length", str(size)), ("X-Auth-Token", conn.auth_token),
                        ("Connection", "close")):
        upload.putheader(name, value)
    upload.endheaders()
    upload.send(b"\1" * (size // 2))
    cursor = deployed.cursor()
    deployed.systemctl("stop", "--no-block", unit)
    _wait(lambda: "received SIGTERM, stopping" in deployed.journal(unit, cursor), 10,
          "the API got SIGTERM")

    def refused():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except (ConnectionRefusedError, ConnectionResetError):
            # Reset: it was in the backlog of the socket closed meanwhile.
            return True
        return False
    _wait(refused, 10, "the API stopped accepting connections")
    completing = time.monotonic()
    upload.send(b"\1" * (size - size // 2))
    response = upload.getresponse()
    assert response.status == 204, (response.status, response.read())
    upload.close()
    # It exited 0, and only after the upload completed.
    assert _stopped_cleanly(deployed, unit, cursor)[0] > completing
    deployed.systemctl("start", unit)
    stored = conn.image.get_image(image["id"])
    assert stored.status == "active" and stored.size == size, stored
    conn.image.delete_image(stored)


def _build_in_flight_while_the_conductor_stops(deployed: Deployed, conn) -> None:
    """The conductor, stopped while its build flow waits for the (frozen)
    scheduler, finishes the flow before it exits 0."""
    scheduler = deployed.main_pid("flotilla-scheduler")
    image = conn.image.post("/images", json={
        "name": "flow", "disk_format": "raw", "container_format": "bare"}).json()
    conn.image.put("/images/%s/file" % image["id"], data=b"\0" * 4096,
                   headers={"Content-Type": "application/octet-stream"})
    flavor = conn.compute.find_flavor("m1.tiny", ignore_missing=False)
    deployed.machine.sh("kill", "-STOP", str(scheduler))
    frozen = True
    try:
        server = conn.compute.create_server(name="in-flight", image_id=image["id"],
                                            flavor_id=flavor.id, networks="none")
        _wait(lambda: _queued(deployed, "scheduler") >= 1, 30,
              "the conductor's call waiting in the scheduler's queue")
        cursor = deployed.cursor()
        deployed.systemctl("stop", "--no-block", "flotilla-conductor")
        _wait(lambda: "received SIGTERM, stopping" in deployed.journal(
            "flotilla-conductor", cursor), 10, "the conductor got SIGTERM")
        released = time.monotonic()
        deployed.machine.sh("kill", "-CONT", str(scheduler))
        frozen = False
        # It exited 0, and only once the scheduler answered.
        stopped, journal = _stopped_cleanly(deployed, "flotilla-conductor", cursor)
        assert stopped > released and "did not finish" not in journal, journal
        # The flow got its host before the conductor exited.
        action = next(iter(conn.compute.server_actions(server)))
        events = conn.compute.get_server_action(action.request_id, server).events
        assert any(e["event"] == "conductor_select_destinations" and e["result"] == "Success"
                   for e in events), events
        deployed.systemctl("start", "flotilla-conductor")
        conn.compute.wait_for_server(server, status="ACTIVE", wait=60, interval=0.5)
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, interval=0.5, wait=60)
    finally:
        if frozen:
            deployed.machine.sh("kill", "-CONT", str(scheduler), check=False)
        conn.image.delete_image(image["id"], ignore_missing=True)


def _queued(deployed: Deployed, queue: str) -> int:
    out = rabbitmqctl("list_queues", "-p", deployed.vhost, "name", "messages",
                      "--no-table-headers")
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == queue:
            return int(parts[1])
    return 0


def test_nothing_is_left_running(deployed):
    out = deployed.machine.sh("ps", "-eo", "user=,args=").stdout
    assert "flotilla" not in out, out

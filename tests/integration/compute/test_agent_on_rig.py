"""flotilla-compute as a process on a rig host with QEMU, over RabbitMQ.

The conductor and the agent run as separate daemons on RabbitMQ and
PostgreSQL; the test casts like the conductor would and checks libvirt's
own view with virsh against the rig host.
"""

from __future__ import annotations

import http.server
import os
import pathlib
import signal
import threading
import time
import uuid as uuidlib

import pytest

from compute.rpcapi import ComputeAPI
from flotilla import states as st
from flotilla.context import RequestContext
from tests.fixtures.daemons import Daemon, write_config
from tests.fixtures.rig import domstate, rig_module, virsh
from tests.fixtures.services import RPC_KEY, postgresql_database, rabbit_vhost

REPO = pathlib.Path(__file__).resolve().parents[3]


class AgentCloud:
    """A conductor and one agent (on the rig host) as daemons."""

    def __init__(self, tmp_path, rig, rabbit_url, db_url) -> None:
        from oslo_config import cfg

        from flotilla import conf as flotilla_conf
        from flotilla import rpc
        from flotilla.db import api as db
        from flotilla.db import schema

        self.tmp_path = tmp_path
        self.rig = rig
        self.host = rig["hosts"][0]
        self.config = write_config(tmp_path / "flotilla.conf", {
            "DEFAULT": {"transport_url": rabbit_url, "state_path": tmp_path,
                        "host": self.host["name"], "report_interval": 2},
            "rpc": {"signing_key": RPC_KEY},
            "database": {"connection": db_url},
            "compute": {"compute_driver": "libvirt", "shutdown_timeout": 5,
                        "sync_power_state_interval": 2},
            "libvirt": {"connection_uri": self.host["uri"],
                        "instances_path": self.host["instances_path"],
                        "reconnect_timeout": 60},
        })
        conf = cfg.ConfigOpts()
        flotilla_conf.register_all(conf)
        conf(["--config-file", str(self.config)], project="flotilla",
             default_config_files=[])
        db.configure(conf)
        schema.db_sync(conf)
        self.db = db
        self.transport = rpc.get_transport(conf)
        self.compute = ComputeAPI(self.transport)
        self.conductor = Daemon("flotilla-conductor", self.config, tmp_path / "conductor.log")
        self.agent = None
        self.start_agent()

    def start_agent(self) -> None:
        self.agent = Daemon("flotilla-compute", self.config,
                            self.tmp_path / "compute.log")
        self.agent.wait_for_log(r"flotilla-compute started on %s" % self.host["name"], 60)

    def stop(self) -> None:
        codes = [d.stop(40) for d in (self.agent, self.conductor) if d]
        self.transport.cleanup()
        self.db.dispose()
        assert codes == [0, 0], self.agent.log()[-3000:] + self.conductor.log()[-3000:]

    @property
    def ctxt(self) -> RequestContext:
        return RequestContext(user_id="u", project_id="p")

    def new_instance(self) -> str:
        return self.db.instance_create({
            "uuid": str(uuidlib.uuid4()), "name": "rig-vm", "project_id": "p",
            "vm_state": st.BUILDING, "task_state": st.SCHEDULING,
            "flavor": {"name": "tiny", "memory_mb": 64, "vcpus": 1, "root_gb": 1}}).uuid

    def wait(self, uuid: str, predicate, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            record = self.db.instance_get(uuid, read_deleted=True).to_dict()
            if predicate(record):
                return record
            if time.monotonic() > deadline:
                raise AssertionError("instance %s stuck: %s\n%s" % (
                    uuid, {k: record[k] for k in ("vm_state", "task_state", "power_state")},
                    self.agent.log()[-3000:]))
            time.sleep(0.1)

    def wait_action_done(self, uuid: str, action: str, timeout: float = 60) -> None:
        """Until the newest ``action`` on the instance has finished."""
        def done(_record):
            actions = [a for a in self.db.action_get_all(uuid) if a.action == action]
            return bool(actions) and actions[0].finish_time is not None
        self.wait(uuid, done, timeout)

    def idle_in(self, uuid: str, vm_state: str, timeout: float = 60) -> dict:
        return self.wait(uuid, lambda i: i["vm_state"] == vm_state
                         and i["task_state"] is None, timeout)


@pytest.fixture
def agent_cloud(tmp_path, rig):
    with rabbit_vhost() as rabbit_url, postgresql_database() as db_url:
        cloud = AgentCloud(tmp_path, rig, rabbit_url, db_url)
        try:
            yield cloud
        finally:
            cloud.stop()
            assert not virsh(cloud.host["uri"], "list", "--all", "--name").stdout.strip()


def test_lifecycle_is_reflected_in_libvirt(agent_cloud, empty_image):
    cloud, uri = agent_cloud, agent_cloud.host["uri"]
    uuid = cloud.new_instance()
    cloud.compute.build_and_run_instance(cloud.ctxt, cloud.host["name"], uuid, empty_image)
    cloud.idle_in(uuid, st.ACTIVE)
    assert domstate(uri, uuid).startswith("running")
    steps = [("stop_instance", st.STOPPED, "shut off"),
             ("start_instance", st.ACTIVE, "running"),
             ("pause_instance", st.PAUSED, "paused"),
             ("unpause_instance", st.ACTIVE, "running"),
             ("suspend_instance", st.SUSPENDED, "shut off (saved)"),
             ("resume_instance", st.ACTIVE, "running")]
    for method, vm_state, libvirt_state in steps:
        getattr(cloud.compute, method)(cloud.ctxt, cloud.host["name"], uuid)
        cloud.idle_in(uuid, vm_state)
        assert domstate(uri, uuid).startswith(libvirt_state), method
    cloud.compute.reboot_instance(cloud.ctxt, cloud.host["name"], uuid, "HARD")
    cloud.wait_action_done(uuid, "reboot")
    assert cloud.db.instance_get(uuid).vm_state == st.ACTIVE
    assert domstate(uri, uuid).startswith("running")
    instance_dir = pathlib.Path(cloud.host["instances_path"]) / uuid
    assert instance_dir.exists()
    cloud.compute.terminate_instance(cloud.ctxt, cloud.host["name"], uuid)
    cloud.wait(uuid, lambda i: i["deleted"])
    assert virsh(uri, "dominfo", uuid).returncode != 0
    assert not instance_dir.exists()


def test_agent_survives_a_libvirtd_restart(agent_cloud, empty_image):
    cloud = agent_cloud
    uuid = cloud.new_instance()
    cloud.compute.build_and_run_instance(cloud.ctxt, cloud.host["name"], uuid, empty_image)
    cloud.idle_in(uuid, st.ACTIVE)
    rig_module.restart_libvirtd(cloud.rig["root"], cloud.host["name"], down_seconds=1)
    cloud.compute.stop_instance(cloud.ctxt, cloud.host["name"], uuid)
    cloud.idle_in(uuid, st.STOPPED, timeout=90)
    assert domstate(cloud.host["uri"], uuid).startswith("shut off")
    cloud.compute.terminate_instance(cloud.ctxt, cloud.host["name"], uuid)
    cloud.wait(uuid, lambda i: i["deleted"])


class _SlowImage(http.server.BaseHTTPRequestHandler):
    """Serves one file slowly (40 pieces, 0.1 s apart), so an agent can be
    killed mid-download; ``sending`` is set once the first piece is out."""

    path_to_serve = ""
    sending: threading.Event

    def do_GET(self):  # noqa: N802 - http.server's name
        data = pathlib.Path(self.path_to_serve).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        step = max(1, len(data) // 40)
        try:
            for offset in range(0, len(data), step):
                self.wfile.write(data[offset:offset + step])
                self.wfile.flush()
                self.sending.set()
                time.sleep(0.1)   # the pace of a slow link
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


def test_agent_killed_mid_spawn_leaves_no_orphan(agent_cloud, empty_image):
    cloud, uri = agent_cloud, agent_cloud.host["uri"]
    handler = type("Handler", (_SlowImage,), {"path_to_serve": empty_image["source"],
                                              "sending": threading.Event()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    image = dict(empty_image, id="slow-" + empty_image["id"],
                 source="http://127.0.0.1:%d/image" % server.server_port)
    try:
        uuid = cloud.new_instance()
        cloud.compute.build_and_run_instance(cloud.ctxt, cloud.host["name"], uuid, image)
        cloud.wait(uuid, lambda i: i["task_state"] == st.SPAWNING, 30)
        assert handler.sending.wait(30), "the agent never started the download"
        os.kill(cloud.agent.proc.pid, signal.SIGKILL)
        cloud.agent.proc.wait(10)
        cloud.start_agent()
        record = cloud.wait(uuid, lambda i: i["task_state"] is None, 60)
        # Killed inside the image download: the guest never started.
        assert record["vm_state"] == st.ERROR, record
        faults = cloud.db.instance_fault_get_all(uuid)
        assert faults and "restarted during the spawn" in faults[0].message
        assert virsh(uri, "dominfo", uuid).returncode != 0      # no orphan domain
        assert not (pathlib.Path(cloud.host["instances_path"]) / uuid).exists()
        cloud.compute.terminate_instance(cloud.ctxt, cloud.host["name"], uuid)
        cloud.wait(uuid, lambda i: i["deleted"])
    finally:
        server.shutdown()

"""A cloud of separate processes on the containerised RabbitMQ and PostgreSQL,
for the fault tests.

The containers come from ``tools/containers/ctl.py`` (``make test-containers``
starts them and exports ``FLOTILLA_TEST_*``); without them the tests fail
naming what to run. One cloud per module: a conductor, a scheduler, the API
and two compute agents on the sized fake driver, plus the receiving end of a
cast stream (caststream.py), each its own process, in a throwaway vhost and
database. Faults are applied to the containers only, never to the machine's
own RabbitMQ or PostgreSQL.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib

import pytest

from tests.fixtures.daemons import BIN, Daemon, write_config
from tests.fixtures.ports import free_port
from tests.fixtures.services import RPC_KEY, postgresql_database, rabbit_vhost

REPO = pathlib.Path(__file__).resolve().parents[3]
ENV = {"PYTHONPATH": str(REPO)}
HOSTS = ("chaos-host1", "chaos-host2")
#: Deadlines of the tasks a boot goes through; the reaper ends any overrun.
TASK_TIMEOUT = 90


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = predicate()
        except Exception:  # the database may be restarting: try again
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.25)


@pytest.fixture(scope="session")
def containers():
    state = os.environ.get("FLOTILLA_TEST_CONTAINERS")
    if not state or not os.path.exists(state):
        pytest.fail("The fault tests need the containerised RabbitMQ and PostgreSQL: run "
                    "`make test-containers`, or `tools/containers/ctl.py up` and export "
                    "what `tools/containers/ctl.py env` prints.", pytrace=False)
    from tools.containers import ctl
    return ctl



class ChaosCloud:
    def __init__(self, root: pathlib.Path, rabbit_url: str, db_url: str) -> None:
        self.root = root
        self.api_port = free_port()
        self.endpoint = "http://127.0.0.1:%d" % self.api_port
        self.daemons: list[Daemon] = []
        self.base = self.config("base", "chaos-ctl", rabbit_url, db_url)
        sync = subprocess.run([str(BIN / "flotilla-manage"), "--config-file",
                               str(self.base), "db", "sync"], capture_output=True,
                              text=True, timeout=120, env={**os.environ, **ENV})
        assert sync.returncode == 0, sync.stderr
        self._seed()
        self.received = root / "received.txt"
        self.receiver = subprocess.Popen(
            [sys.executable, str(REPO / "tests/integration/chaos/caststream.py"),
             "receive", str(self.config("receiver", "chaos-rcv", rabbit_url, db_url)),
             str(self.received)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(root / "receiver.log", "ab"), text=True, env={**os.environ, **ENV})
        assert self.receiver.stdout.readline().strip() == "ready"
        self.start("flotilla-conductor", self.base, "conductor")
        self.start("flotilla-scheduler", self.base, "scheduler")
        self.start("flotilla-api", self.base, "api")
        for host in HOSTS:
            self.start("flotilla-compute", self.config(host, host, rabbit_url, db_url),
                       host)
        for daemon in self.daemons:
            daemon.wait_for_log(r"(started|listening)", timeout=90)
        from flotilla.db import api as db
        wait_for(lambda: len([n for n in db.compute_node_get_all() if n.memory_mb])
                 == len(HOSTS), 90, "both compute nodes to report")

    def config(self, name: str, host: str, rabbit_url: str, db_url: str) -> pathlib.Path:
        return write_config(self.root / ("%s.conf" % name), {
            "DEFAULT": {"transport_url": rabbit_url, "state_path": self.root,
                        "report_interval": 2, "service_down_time": 30, "host": host},
            "rpc": {"signing_key": RPC_KEY, "heartbeat": 4, "reconnect_timeout": 150,
                    "reconnect_max_delay": 2, "call_timeout": 30},
            "database": {"connection": db_url},
            "conductor": {"task_timeouts": "scheduling:%d,spawning:%d,deleting:%d"
                          % (TASK_TIMEOUT, TASK_TIMEOUT, TASK_TIMEOUT),
                          "reaper_interval": 5},
            "compute": {"compute_driver": "fake", "resource_report_interval": 5},
            "fake_driver": {"memory_mb": 65536, "vcpus": 256, "disk_gb": 10000},
            "api": {"bind_host": "127.0.0.1", "bind_port": self.api_port, "workers": 16},
            "image": {"download_signing_key": "chaos-download-key"},
        })

    def start(self, binary: str, config: pathlib.Path, name: str, env=None) -> None:
        self.daemons.append(Daemon(binary, config, self.root / ("%s.log" % name),
                                   env={**ENV, **(env or {})}))

    def _seed(self) -> None:
        from oslo_config import cfg

        from flotilla import conf as flotilla_conf
        from flotilla.db import api as db
        from flotilla.db import identity as identity_db
        from flotilla.db import images as images_db
        conf = cfg.ConfigOpts()
        flotilla_conf.register_all(conf)
        conf(["--config-file", str(self.base)], project="flotilla", default_config_files=[])
        db.configure(conf)
        identity_db.project_create("chaos", project_id="chaos")
        user = identity_db.user_create("chaos", "chaos-pw", scrypt_n=1024)
        identity_db.role_add("chaos", "chaos", "member")
        from flotilla.db import quotas as quotas_db
        for resource in ("instances", "cores", "ram"):
            quotas_db.set_limit("chaos", resource, -1)
        self.token, _ = identity_db.token_issue(user.id, "chaos", ["member", "reader"], 86400)
        db.flavor_create({"flavorid": "tiny", "name": "tiny", "memory_mb": 64,
                          "vcpus": 1, "root_gb": 1})
        image_file = self.root / "image.raw"
        image_file.write_bytes(b"\0" * 4096)
        self.image_id = str(uuidlib.uuid4())
        images_db.image_create({"id": self.image_id, "name": "chaos", "status": "active",
                                "disk_format": "raw", "container_format": "bare",
                                "visibility": "public", "checksum": "0" * 64,
                                "size": 4096, "virtual_size": 4096, "owner": "chaos",
                                "location": str(image_file)})

    def logs(self) -> str:
        return "".join("\n== %s ==\n%s" % (d.log_path.name, d.log()[-3000:])
                       for d in self.daemons)

    def stop(self) -> dict:
        statuses = {d.log_path.name: d.stop(timeout=40) for d in self.daemons}
        self.receiver.stdin.close()
        try:
            self.receiver.wait(20)
        except subprocess.TimeoutExpired:
            self.receiver.kill()
        return statuses


@pytest.fixture(scope="module")
def chaos(containers):
    """The cloud; the containers are running and reachable when it starts.
    Its files live in a directory of its own (kept for a post-mortem and
    named in the output), out of reach of pytest's rotation of temporary
    directories, which concurrent runs on one machine share."""
    for service in ("rabbitmq", "postgresql"):
        containers.wait_ready(service)
    root = pathlib.Path(tempfile.mkdtemp(prefix="flotilla-chaos-"))
    print("\nchaos cloud files in %s" % root)
    with rabbit_vhost("flotilla-chaos") as rabbit_url, postgresql_database() as db_url:
        cloud = ChaosCloud(root, rabbit_url, db_url)
        try:
            yield cloud
        finally:
            cloud.stop()
            from flotilla.db import api as db
            db.dispose()

"""Daemons as separate processes on RabbitMQ and PostgreSQL.

The service runner end to end: configuration errors stop a daemon with one
line; a conductor and a compute agent (on the in-memory fake driver: the
libvirt side has its own tests on rig hosts) heartbeat, serve RPC across
processes and stop cleanly on SIGTERM under both concurrency backends.
"""

from __future__ import annotations

import pathlib
import subprocess

import pytest

from tests.fixtures.daemons import BIN, Daemon, write_config
from tests.fixtures.services import RPC_KEY, postgresql_database, rabbit_vhost
from tests.fixtures.waiting import wait_until

REPO = pathlib.Path(__file__).resolve().parents[2]
ENV = {"PYTHONPATH": str(REPO)}


def _run(binary: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / binary), *args], capture_output=True, text=True,
                          timeout=60, env={**__import__("os").environ, **ENV})


@pytest.mark.parametrize("binary", ["flotilla-conductor", "flotilla-compute",
                                    "flotilla-manage"])
def test_bad_configuration_is_one_line_and_status_2(tmp_path, binary):
    config = write_config(tmp_path / "f.conf", {"DEFAULT": {
        "concurrency_backend": "greenlets"}})
    args = ["--config-file", str(config)] + (["service", "list"]
                                            if binary == "flotilla-manage" else [])
    result = _run(binary, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "[DEFAULT] concurrency_backend" in lines[0] and "greenlets" in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_config_file_and_secret_values(tmp_path):
    result = _run("flotilla-conductor", "--config-file", str(tmp_path / "absent.conf"))
    assert result.returncode == 2
    assert "config file not found" in result.stderr and "Traceback" not in result.stderr
    config = write_config(tmp_path / "f.conf", {"DEFAULT": {
        "transport_url": "kafka://admin:Sup3rSecret@broker:9092/"}})
    result = _run("flotilla-compute", "--config-file", str(config))
    assert result.returncode == 2
    assert "transport_url" in result.stderr and "Sup3rSecret" not in result.stderr


def test_conductor_refuses_an_unsynced_database(tmp_path):
    config = write_config(tmp_path / "f.conf", {"DEFAULT": {"state_path": tmp_path}})
    result = _run("flotilla-conductor", "--config-file", str(config))
    assert result.returncode == 1
    assert "db sync" in result.stderr and "Traceback" not in result.stderr


def test_missing_secrets_stop_daemons_at_start(tmp_path):
    """Issue 13 defect 13: an API with a public endpoint and no download
    signing key started, then answered 500 to every boot; daemons on a
    broker with no RPC signing key started silently."""
    broker = "rabbit://guest:guest@127.0.0.1:1/"
    config = write_config(tmp_path / "agent.conf", {
        "DEFAULT": {"transport_url": broker, "state_path": tmp_path, "host": "h1"},
        "compute": {"compute_driver": "fake"}})
    result = _run("flotilla-compute", "--config-file", str(config))
    assert result.returncode == 2, result.stderr
    assert "[rpc] signing_key" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    # Explicitly insecure: starts, with a warning.
    insecure = write_config(tmp_path / "insecure.conf", {
        "DEFAULT": {"transport_url": broker, "state_path": tmp_path, "host": "h1"},
        "rpc": {"allow_unsigned_messages": True},
        "compute": {"compute_driver": "fake"}})
    agent = Daemon("flotilla-compute", insecure, tmp_path / "agent.log", env=ENV)
    try:
        agent.wait_for_log(r"WARNING.*signing_key is not set and "
                           r"allow_unsigned_messages is true")
    finally:
        agent.stop()
    api = write_config(tmp_path / "api.conf", {
        "DEFAULT": {"state_path": tmp_path},
        "api": {"public_endpoint": "http://cloud.example:8774", "bind_port": 0}})
    assert _run("flotilla-manage", "--config-file", str(api), "db", "sync").returncode == 0
    result = _run("flotilla-api", "--config-file", str(api))
    assert result.returncode == 2, result.stderr
    assert "[image] download_signing_key" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def cloud_config(tmp_path):
    with rabbit_vhost() as url, postgresql_database() as db_url:
        yield url, db_url


@pytest.mark.parametrize("backend", ["threading", "eventlet"])
def test_conductor_and_agent_serve_across_processes(tmp_path, cloud_config, backend):
    rabbit_url, db_url = cloud_config
    config = write_config(tmp_path / "flotilla.conf", {
        "DEFAULT": {"transport_url": rabbit_url, "state_path": tmp_path,
                    "concurrency_backend": backend, "report_interval": 1,
                    "host": "ihost1"},
        "rpc": {"signing_key": RPC_KEY},
        "database": {"connection": db_url},
        "compute": {"compute_driver": "fake"},
    })
    sync = _run("flotilla-manage", "--config-file", str(config), "db", "sync")
    assert sync.returncode == 0, sync.stderr
    # The compute host holds only its own key, as an operator configures it.
    key = _run("flotilla-manage", "--config-file", str(config), "rpc", "host-key", "ihost1")
    assert key.returncode == 0, key.stderr
    agent_config = write_config(tmp_path / "agent.conf", {
        "rpc": {"signing_key": "", "host_key": key.stdout.strip()}})
    conductor = Daemon("flotilla-conductor", config, tmp_path / "conductor.log", env=ENV)
    compute = Daemon("flotilla-compute", config, tmp_path / "compute.log",
                     "--config-file", str(agent_config), env=ENV)
    try:
        compute.wait_for_log(r"flotilla-compute started on ihost1")
        conductor.wait_for_log(r"flotilla-conductor started")
        listing = _run("flotilla-manage", "--config-file", str(config), "service", "list")
        assert listing.returncode == 0, listing.stderr
        rows = [line.split() for line in listing.stdout.splitlines()]
        assert any("flotilla-compute" in r and "up" in r for r in rows), listing.stdout
        assert any("flotilla-conductor" in r and "up" in r for r in rows), listing.stdout

        _boot_and_delete_through_rpc(config)
    finally:
        statuses = {d.binary: d.stop(timeout=40) for d in (compute, conductor)}
    logs = compute.log() + conductor.log()
    assert statuses == {"flotilla-compute": 0, "flotilla-conductor": 0}, logs[-4000:]
    assert "received SIGTERM, stopping" in compute.log()
    assert "dummy-Secret-pw" not in logs          # the database password
    assert "guest:guest" not in logs              # the broker password
    assert "Traceback" not in logs, logs[-4000:]


def _boot_and_delete_through_rpc(config) -> None:
    """Cast a build to the agent from this process; watch the database."""
    from oslo_config import cfg

    from compute.rpcapi import ComputeAPI
    from flotilla import conf as flotilla_conf
    from flotilla import rpc
    from flotilla import states as st
    from flotilla.context import RequestContext
    from flotilla.db import api as db

    # The daemons' own file, not set_override: oslo.config keeps overrides of
    # group options on the shared OptGroup, so they would leak into every
    # other ConfigOpts of this process.
    conf = cfg.ConfigOpts()
    flotilla_conf.register_all(conf)
    conf(["--config-file", str(config)], project="flotilla", default_config_files=[])
    db.configure(conf)
    transport = rpc.get_transport(conf)
    try:
        # Placed on ihost1 as the scheduler would: the agent, signing as
        # ihost1, may report only on instances of its own host.
        uuid = db.instance_create({
            "name": "x", "project_id": "p", "host": "ihost1", "node": "ihost1",
            "vm_state": st.BUILDING,
            "task_state": st.SCHEDULING,
            "flavor": {"name": "t", "memory_mb": 64, "vcpus": 1, "root_gb": 1}}).uuid
        ctxt = RequestContext(project_id="p", user_id="u")
        compute = ComputeAPI(transport)
        compute.build_and_run_instance(ctxt, "ihost1", uuid, None)
        _wait(lambda: db.instance_get(uuid).vm_state == st.ACTIVE)
        compute.stop_instance(RequestContext(project_id="p"), "ihost1", uuid)
        _wait(lambda: db.instance_get(uuid).vm_state == st.STOPPED)
        assert "disks" in compute.get_diagnostics(ctxt, "ihost1", uuid)
        compute.terminate_instance(RequestContext(project_id="p"), "ihost1", uuid)
        _wait(lambda: db.instance_get(uuid, read_deleted=True).deleted)
    finally:
        transport.cleanup()
        db.dispose()


def _wait(predicate, timeout: float = 30, what: str = "condition"):
    return wait_until(predicate, timeout, what, interval=0.1)

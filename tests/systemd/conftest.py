"""The systemd tier's cloud: Flotilla installed the operator's way in a
container whose PID 1 is systemd, on the host's RabbitMQ and PostgreSQL.

``deployed`` (one per module) builds the wheels of this tree on the host,
stages them, the tree and a configuration into a fresh copy of the cached
Debian tree, runs ``tools/install/install.sh --wheels`` in it (venv in
/opt/flotilla, user, /etc/flotilla/flotilla.conf, units, db sync), boots it
and creates a tenant. Meanwhile one rig host (tools/rig: a real libvirtd on
qemu+tcp://127.0.0.1) starts, for the compute agent's sandbox to prove it
reaches one. Its teardown halts the container and removes its cgroup, work
directory, rig, vhost and database, after copying the units' journal into
pytest's temporary directory (the path is logged).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import pathlib
import secrets
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from tests.fixtures.ports import free_port, free_port_block
from tests.fixtures.rig import RIG
from tests.fixtures.services import postgresql_database, rabbit_vhost
from tests.systemd import nspawn

LOG = logging.getLogger("systemd-tier")
REPO = pathlib.Path(__file__).resolve().parents[2]
UNITS = ("flotilla-conductor", "flotilla-scheduler", "flotilla-api", "flotilla-compute",
         "flotilla-volume")
CONF = "/etc/flotilla/flotilla.conf"
MANAGE = "/opt/flotilla/bin/flotilla-manage"
# Not copied into the container: the install works from wheels and the tree.
_NOT_SOURCE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info",
                                     "__pycache__", ".pytest_cache", ".ruff_cache",
                                     ".tox", "state", ".cache")


@dataclasses.dataclass
class Deployed:
    machine: nspawn.Machine
    endpoint: str
    host: str                     # [DEFAULT] host of the compute agent
    vhost: str
    database_url: str             # as the host reaches it (psycopg)
    password: str                 # of the tenant demo
    rig_uri: str = ""             # a real libvirtd, qemu+tcp://

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.machine.sh("systemctl", *args, check=check)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", unit, *("--property=" + p for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def main_pid(self, unit: str) -> int:
        return int(self.show(unit, "MainPID")["MainPID"])

    def cursor(self) -> str:
        """Now, for :meth:`journal` (the container's clock is the host's)."""
        return "@%.6f" % time.time()

    def journal(self, unit: str, after: str | None = None) -> str:
        """``unit``'s journal (systemd's lines about it included) as text,
        from the time ``after`` (a :meth:`cursor`) on."""
        args = ["journalctl", "-q", "--no-pager", "-o", "short-monotonic", "-u", unit]
        if after:
            args.append("--since=" + after)
        return self.machine.sh(*args).stdout

    def manage(self, *args: str, input: str | None = None) -> str:
        """flotilla-manage as the flotilla user, as an operator runs it."""
        return self.machine.sh("runuser", "-u", "flotilla", "--", MANAGE,
                               "--config-file", CONF, *args, input=input).stdout

    def write(self, path: str, text: str) -> None:
        """Write a file into the container's tree (root-owned, 0644)."""
        target = self.machine.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def remove(self, path: str) -> None:
        target = self.machine.root / path.lstrip("/")
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()

    def tenant(self):
        import openstack
        return openstack.connect(
            auth_url=self.endpoint + "/identity/v3", username="demo", password=self.password,
            project_name="demo", user_domain_name="Default", project_domain_name="Default",
            region_name="RegionOne", compute_api_version="2", identity_interface="public")


@contextlib.contextmanager
def _step(what: str):
    started = time.monotonic()
    yield
    LOG.info("%s: %.1f s", what, time.monotonic() - started)



def _config(transport_url: str, database_url: str, port: int, host: str) -> str:
    return "\n".join([
        "[DEFAULT]",
        "host = %s" % host,
        "transport_url = %s" % transport_url,
        "report_interval = 2",
        "service_down_time = 10",
        "[database]",
        "connection = %s" % database_url,
        "[api]",
        "bind_host = 127.0.0.1",
        "bind_port = %d" % port,
        "public_endpoint = http://127.0.0.1:%d" % port,
        "[image]",
        "download_signing_key = %s" % secrets.token_hex(32),
        "[rpc]",
        "signing_key = %s" % secrets.token_hex(32),
        "[libvirt]",
        "connection_uri = test:///default",
        # The pool in libvirt's test driver; its qemu-storage-daemon is real.
        "[volume]",
        "connection_uri = test:///default",
        "nbd_port = %d" % free_port(),
        ""])


def _stage(machine: nspawn.Machine, config: str) -> None:
    """The tree, wheels built from it on the host, and the configuration."""
    opt = machine.root / "opt"
    shutil.copytree(REPO, opt / "src", ignore=_NOT_SOURCE)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
         str(opt / "src"), "-w", str(opt / "wheels")],
        capture_output=True, text=True, timeout=900)
    if build.returncode != 0:
        raise AssertionError("pip wheel failed:\n%s" % build.stderr[-3000:])
    (opt / "flotilla-test.conf").write_text(config)


def _install(machine: nspawn.Machine) -> None:
    # A compute host's group for libvirtd's socket: install.sh adds the
    # flotilla user to it, and the compute unit must pass it on.
    result = machine.run_offline(
        "/bin/sh", "-c", "groupadd --system libvirt && /opt/src/tools/install/install.sh"
        " --wheels /opt/wheels --config /opt/flotilla-test.conf")
    LOG.info("install.sh:\n%s", result.stdout)
    if result.returncode != 0:
        raise AssertionError("install.sh failed (%d):\n%s\n%s" % (
            result.returncode, result.stdout[-3000:], result.stderr[-3000:]))


def _tenant(cloud: Deployed) -> None:
    cloud.manage("project", "create", "demo")
    cloud.manage("user", "create", "demo", "--project", "demo", input=cloud.password + "\n")
    cloud.manage("role", "add", "demo", "demo", "member")
    cloud.manage("flavor", "create", "m1.tiny", "--ram", "64", "--vcpus", "1", "--disk", "1")


def _keep_journal(machine: nspawn.Machine, directory: pathlib.Path) -> None:
    journal = machine.root / "var/log/journal"
    if not journal.is_dir():
        return
    out = subprocess.run(["journalctl", "-D", str(journal), "--no-pager", "-o",
                          "short-monotonic", *("--unit=%s" % u for u in UNITS)],
                         capture_output=True, text=True, timeout=60).stdout
    path = directory / "flotilla-units.journal.txt"
    path.write_text(out)
    LOG.info("the units' journal is kept in %s", path)


class _Rig:
    """One rig host, started in the background while the container is
    prepared (it takes about ten seconds)."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self._start = subprocess.Popen(
            [sys.executable, RIG, "start", "1", "--root", str(root), "--base-port",
             str(free_port_block(4, start=19100, end=19900))],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def uri(self) -> str:
        out = self._start.communicate(timeout=300)[0]
        if self._start.returncode != 0:
            raise AssertionError("the rig did not start (tools/rig/rig.py):\n" + out[-3000:])
        return json.loads((self.root / "rig.json").read_text())["hosts"][0]["uri"]

    def stop(self) -> list[str]:
        if self._start.poll() is None:
            self._start.communicate(timeout=300)
        result = subprocess.run([sys.executable, RIG, "stop", "--root", str(self.root)],
                                capture_output=True, text=True, timeout=120)
        if (self.root / "rig.json").exists():
            return ["the rig did not stop: %s" % result.stderr[-1000:]]
        shutil.rmtree(self.root, ignore_errors=True)
        return []


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    suffix = uuid.uuid4().hex[:8]
    try:
        with _step("host tools and the container tree"):
            nspawn.ensure_host_tools(LOG.info)
            tree = nspawn.rootfs(LOG.info)
        machine = nspawn.Machine(pathlib.Path("/var/tmp/flotilla-nspawn-" + suffix),
                                 "flotilla-" + suffix)
    except nspawn.Unavailable as exc:
        pytest.fail("the systemd tier cannot run here: %s" % exc, pytrace=False)
    port = free_port()
    with rabbit_vhost("flotilla-systemd") as transport_url, \
            postgresql_database() as database_url:
        database_url = database_url.replace("postgresql://", "postgresql+psycopg://", 1)
        cloud = Deployed(machine, "http://127.0.0.1:%d" % port, "nspawn-" + suffix,
                         transport_url.rsplit("/", 1)[1], database_url,
                         secrets.token_urlsafe(12))
        rig = _Rig(pathlib.Path("/var/tmp/flotilla-nspawn-%s-rig" % suffix))
        problems: list[str] = []
        try:
            with _step("copy of the tree"):
                machine.create(tree)
            with _step("wheels built on the host"):
                _stage(machine, _config(transport_url, database_url, port, cloud.host))
            with _step("install.sh in the container"):
                _install(machine)
            with _step("boot until running"):
                machine.boot()
            with _step("tenant"):
                _tenant(cloud)
            with _step("rig host (started in the background)"):
                cloud.rig_uri = rig.uri()
            yield cloud
        except nspawn.Unavailable as exc:
            pytest.fail("the systemd tier cannot run here: %s" % exc, pytrace=False)
        finally:
            with _step("teardown of the container and the rig"):
                try:
                    machine.halt()
                    _keep_journal(machine, tmp_path_factory.mktemp("systemd"))
                finally:
                    problems = machine.destroy() + rig.stop()
        assert not problems, problems

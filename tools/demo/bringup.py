"""A real multi-host Flotilla on this machine: the demo's and the e2e tests' bring-up.

    Bringup(root).up()    # rig hosts, RabbitMQ vhost, PostgreSQL database,
                          # identities, flavor, then every daemon as a process
    Bringup.load(root).down()   # stop all of it, leave nothing behind but logs

What it starts (state kept in ``<root>/bringup.json`` so another process can
stop it): a rig of N libvirt hosts (tools/rig/), a private RabbitMQ vhost and
PostgreSQL database, and the daemons flotilla-api, -scheduler, -conductor,
one flotilla-compute per rig host and one flotilla-volume (its storage pool
on the first rig host's libvirtd, its NBD exports served by a
qemu-storage-daemon on this machine), each logging to ``<root>/logs/``. It needs
root, RabbitMQ and PostgreSQL running and the project installed in the venv
this Python runs from (``make demo`` sees to all three).
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

from flotilla.rpc import signing

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
RIG = REPO / "tools" / "rig" / "rig.py"
GUEST_BUILDER = REPO / "tools" / "guest-image" / "build.py"
STATE = "bringup.json"
RABBIT = os.environ.get("FLOTILLA_RABBIT", "guest:guest@127.0.0.1:5672")
POSTGRES = os.environ.get("FLOTILLA_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
DAEMONS = ("flotilla-conductor", "flotilla-scheduler", "flotilla-api")


def _run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("check", True)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 600)
    try:
        return subprocess.run([str(c) for c in cmd], **kwargs)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError("%s failed (%s): %s" % (
            " ".join(str(c) for c in cmd[:3]), exc.returncode,
            (exc.stderr or exc.stdout or "").strip()[-2000:])) from None


class Bringup:
    def __init__(self, root: str | os.PathLike, hosts: int = 2, api_port: int = 18774,
                 rig_base_port: int = 16610, say: Callable[[str], None] = print,
                 nbd_port: int | None = None) -> None:
        self.root = pathlib.Path(root).resolve()
        self.hosts = hosts
        self.api_port = api_port
        self.rig_base_port = rig_base_port
        # By default the port after the rig hosts' libvirtd ports: callers
        # pick the rig's block with room for it (tests: free_port_block(4)
        # for two hosts), never from the ephemeral range, where an outgoing
        # connection may take it before qemu-storage-daemon binds it.
        self.nbd_port = nbd_port or rig_base_port + hosts
        self.say = say
        self.state: dict = {}

    # --- paths and state ------------------------------------------------------

    @property
    def logs(self) -> pathlib.Path:
        return self.root / "logs"

    @property
    def endpoint(self) -> str:
        return "http://127.0.0.1:%d" % self.api_port

    @property
    def auth_url(self) -> str:
        return self.endpoint + "/identity/v3"

    def _save(self) -> None:
        (self.root / STATE).write_text(json.dumps(self.state, indent=2))

    @classmethod
    def load(cls, root: str | os.PathLike, say: Callable[[str], None] = print) -> Bringup:
        self = cls(root, say=say)
        path = self.root / STATE
        if path.exists():
            self.state = json.loads(path.read_text())
            self.hosts = len(self.state.get("rig_hosts", []))
            self.api_port = self.state.get("api_port", self.api_port)
        return self

    # --- up -------------------------------------------------------------------

    def up(self) -> None:
        """Start everything; on any failure, stop what was started and raise."""
        if (self.root / STATE).exists():
            self.say("A previous bring-up is still recorded in %s: stopping it first"
                     % self.root)
            Bringup.load(self.root, self.say).down()
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.root / "etc").mkdir(exist_ok=True)
        self.state = {"api_port": self.api_port, "pids": {}}
        self._save()
        try:
            self._start_rig()
            self._prepare_services()
            self._write_config()
            self._prepare_database()
            self._start_daemons()
            self._wait_for_cloud()
        except BaseException:
            self.say("bring-up failed; stopping what was started (logs in %s)" % self.logs)
            self.down(keep_logs=True)
            raise

    def _start_rig(self) -> None:
        self.say("starting %d libvirt hosts (tools/rig) ..." % self.hosts)
        rig_root = self.root / "rig"
        _run([sys.executable, RIG, "start", self.hosts, "--base-port",
              self.rig_base_port, "--root", rig_root])
        rig = json.loads((rig_root / "rig.json").read_text())
        self.state["rig_root"] = str(rig_root)
        self.state["rig_hosts"] = rig["hosts"]
        self._save()
        for host in rig["hosts"]:
            self.say("  %s: %s" % (host["name"], host["uri"]))

    def _prepare_services(self) -> None:
        suffix = uuid.uuid4().hex[:8]
        vhost = "flotilla-demo-" + suffix
        _run(["rabbitmqctl", "-q", "add_vhost", vhost])
        self.state["vhost"] = vhost
        self._save()
        _run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"])
        import psycopg
        from psycopg import sql
        database = "flotilla_demo_" + suffix
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        self.state["database"] = database
        self._save()
        base = psycopg.conninfo.conninfo_to_dict(POSTGRES)
        self.state["database_url"] = "postgresql+psycopg://%s@%s:%s/%s" % (
            base.get("user", "postgres"), base.get("host", "127.0.0.1"),
            base.get("port", 5432), database)
        self.state["transport_url"] = "rabbit://%s/%s" % (RABBIT, vhost)
        self._save()
        self.say("RabbitMQ vhost %s and PostgreSQL database %s created" % (vhost, database))

    def _write_config(self) -> None:
        etc = self.root / "etc"
        common = etc / "flotilla.conf"
        common.write_text("\n".join([
            "[DEFAULT]",
            "transport_url = %s" % self.state["transport_url"],
            "state_path = %s" % (self.root / "state"),
            "report_interval = 2",
            "service_down_time = 10",
            "[database]",
            "connection = %s" % self.state["database_url"],
            "[api]",
            "bind_host = 127.0.0.1",
            "bind_port = %d" % self.api_port,
            "public_endpoint = %s" % self.endpoint,
            "[compute]",
            "compute_driver = libvirt",
            "sync_power_state_interval = 5",
            "resource_report_interval = 5",
            "[libvirt]",
            "virt_type = qemu",
            "",
        ]))
        os.chmod(common, 0o600)
        # The deployment's keys stay on the controllers; each compute host
        # gets only its own RPC key (it can speak only as itself).
        deployment_key = secrets.token_hex(32)
        controller = etc / "controller.conf"
        controller.write_text("\n".join([
            "[rpc]", "signing_key = %s" % deployment_key,
            "[image]", "download_signing_key = %s" % secrets.token_hex(32), ""]))
        os.chmod(controller, 0o600)
        for host in self.state["rig_hosts"]:
            path = etc / ("%s.conf" % host["name"])
            path.write_text("\n".join([
                "[DEFAULT]", "host = %s" % host["name"],
                "[rpc]", "host_key = %s" % signing.host_key(deployment_key, host["name"]),
                "[libvirt]", "connection_uri = %s" % host["uri"],
                "instances_path = %s" % host["instances_path"], ""]))
            os.chmod(path, 0o600)
        # The volume host: flotilla-volume named after the first rig host, its
        # pool on that host's libvirtd, in a directory both it and the
        # storage daemon (started by flotilla-volume, here) see.
        volume_host = self.state["rig_hosts"][0]
        nbd_port = self.nbd_port
        try:
            with socket.socket() as s:
                # As the storage daemon binds: a last run's connections in
                # TIME_WAIT do not make the port taken.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", nbd_port))
        except OSError as exc:
            raise RuntimeError("the volume host's NBD port %d is taken (%s)"
                               % (nbd_port, exc)) from None
        volume_conf = etc / "volume.conf"
        volume_conf.write_text("\n".join([
            "[DEFAULT]", "host = %s" % volume_host["name"],
            "[volume]", "connection_uri = %s" % volume_host["uri"],
            "pool_name = flotilla-demo-volumes",
            "pool_path = %s" % (self.root / "state" / "volumes"),
            "run_path = %s" % (self.root / "state" / "volume-run"),
            "nbd_port = %d" % nbd_port, "detach_timeout = 20", ""]))
        os.chmod(volume_conf, 0o600)
        self.state["volume_host"] = volume_host["name"]
        self.state["volume_config"] = str(volume_conf)
        self.state["config"] = str(common)
        self.state["controller_config"] = str(controller)
        self._save()

    def manage(self, *args: str, password: str | None = None) -> str:
        env = dict(os.environ)
        if password is not None:
            env["FLOTILLA_PASSWORD"] = password
        return _run([BIN / "flotilla-manage", "--config-file", self.state["config"],
                     "--config-file", self.state["controller_config"], *args],
                    env=env).stdout

    def manage_many(self, *commands: tuple[tuple[str, ...], str | None]) -> str:
        """Several ``manage`` commands (arguments, password) in one process;
        the first failure raises."""
        config = ["--config-file", self.state["config"],
                  "--config-file", self.state["controller_config"]]
        batch = [{"argv": config + list(args), "password": password}
                 for args, password in commands]
        return _run([sys.executable, "-m", "tools.demo.manage_batch"], cwd=REPO,
                    input=json.dumps(batch)).stdout

    def _prepare_database(self) -> None:
        creds = {"admin": secrets.token_urlsafe(12), "demo": secrets.token_urlsafe(12)}
        self.manage_many(
            (("db", "sync"), None),
            (("project", "create", "admin"), None),
            (("project", "create", "demo", "--description", "the demo tenant"), None),
            (("user", "create", "admin", "--project", "admin"), creds["admin"]),
            (("role", "add", "admin", "admin", "admin"), None),
            (("user", "create", "demo", "--project", "demo"), creds["demo"]),
            (("role", "add", "demo", "demo", "member"), None),
            # The tiny real guest needs at least 80 MiB of RAM.
            (("flavor", "create", "m1.tiny", "--ram", "128", "--vcpus", "1", "--disk", "1"),
             None),
            # What the demo's resize grows a server to.
            (("flavor", "create", "m1.small", "--ram", "160", "--vcpus", "1", "--disk", "2"),
             None))
        self.state["credentials"] = creds
        self._save()
        os.chmod(self.root / STATE, 0o600)
        self.say("database migrated; users admin and demo, project demo, "
                 "flavors m1.tiny and m1.small")

    def _spawn(self, name: str, *configs: str) -> None:
        binary = name.split("@")[0]
        log = open(self.logs / ("%s.log" % name.replace("@", "-")), "ab")
        args = [str(BIN / binary)]
        for config in configs:
            args += ["--config-file", config]
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.state["pids"][name] = proc.pid
        self._save()

    def _start_daemons(self) -> None:
        for name in DAEMONS:
            self._spawn(name, self.state["config"], self.state["controller_config"])
        self._spawn("flotilla-volume", self.state["config"], self.state["controller_config"],
                    self.state["volume_config"])
        for host in self.state["rig_hosts"]:
            self.start_compute(host["name"])
        self.say("started %s" % ", ".join(self.state["pids"]))

    def start_compute(self, host: str) -> None:
        """Start (or start again) the compute agent of rig host ``host``."""
        self._spawn("flotilla-compute@%s" % host, self.state["config"],
                    str(self.root / "etc" / ("%s.conf" % host)))

    def start_controller(self, name: str) -> None:
        """Start (or start again) controller daemon ``name`` (one of DAEMONS)."""
        if name not in DAEMONS:
            raise ValueError("%s is not a controller daemon" % name)
        self._spawn(name, self.state["config"], self.state["controller_config"])

    def _wait_for_cloud(self, timeout: float = 120) -> None:
        """Until every service is up and every host reported its resources."""
        wanted = {("flotilla-compute", h["name"]) for h in self.state["rig_hosts"]}
        wanted |= {("flotilla-conductor", None), ("flotilla-scheduler", None),
                   ("flotilla-volume", self.state["volume_host"])}
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            listing = self.manage("service", "list")
            up = set()
            for line in listing.splitlines()[1:]:
                cols = line.split()
                if len(cols) >= 4 and cols[3] == "up":
                    up.add((cols[1], cols[0]))
                    up.add((cols[1], None))
            if wanted <= up and self._api_answers():
                self.say("all services up; API at %s" % self.endpoint)
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the cloud did not come up within %ss:\n%s"
                                   % (timeout, listing))
            time.sleep(1)

    def _api_answers(self) -> bool:
        import urllib.request
        try:
            with urllib.request.urlopen(self.endpoint + "/identity/v3", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def _check_alive(self) -> None:
        for name, pid in self.state["pids"].items():
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = (0, 0) if _alive(pid) else (pid, -1)
            if done:
                log = self.logs / ("%s.log" % name.replace("@", "-"))
                raise RuntimeError("%s exited at start (status %s):\n%s" % (
                    name, status, log.read_text(errors="replace")[-3000:]))

    # --- down -----------------------------------------------------------------

    def stop_daemon(self, name: str, timeout: float = 45) -> int | None:
        """SIGTERM one daemon and wait; its exit status (None if not ours)."""
        pid = self.state.get("pids", {}).pop(name, None)
        self._save()
        if pid is None or not _alive(pid):
            return None
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    return os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                if not _alive(pid):
                    return 0
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
        return -9

    def down(self, keep_logs: bool = True) -> dict:
        """Stop daemons (agents first), the rig, the vhost and the database."""
        statuses = {}
        for name in sorted(self.state.get("pids", {}),
                           key=lambda n: (not n.startswith("flotilla-compute"), n)):
            statuses[name] = self.stop_daemon(name)
        self._stop_storage_daemon()
        if keep_logs:
            self._keep_rig_logs()
        if self.state.get("rig_root"):
            _run([sys.executable, RIG, "stop", "--root", self.state["rig_root"]], check=False)
        if self.state.get("vhost"):
            _run(["rabbitmqctl", "-q", "delete_vhost", self.state["vhost"]], check=False)
        if self.state.get("database"):
            import psycopg
            from psycopg import sql
            with psycopg.connect(POSTGRES, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                             .format(sql.Identifier(self.state["database"])))
        for item in ("etc", "state", "rig", STATE):
            path = self.root / item
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()
        if not keep_logs:
            shutil.rmtree(self.logs, ignore_errors=True)
        self.state = {}
        return statuses


    def _keep_rig_logs(self) -> None:
        """Each rig host's libvirtd and QEMU logs, next to the daemons'
        (the rig's directory goes with it): what libvirt said of a failed
        job is often the only account of it."""
        for host in self.state.get("rig_hosts", []):
            source = pathlib.Path(host["dir"]) / "log"
            if not source.is_dir():
                continue
            try:
                shutil.copytree(source, self.logs / ("libvirt-%s" % host["name"]),
                                dirs_exist_ok=True, ignore_dangling_symlinks=True)
            except (OSError, shutil.Error) as exc:
                self.say("%s's libvirt logs not kept: %s" % (host["name"], exc))

    def _stop_storage_daemon(self) -> None:
        """flotilla-volume leaves its qemu-storage-daemon serving while a
        volume is exported (it outlives a restart); at the end it goes."""
        pidfile = self.root / "state" / "volume-run" / "qsd.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        if _alive(pid):
            self.say("stopping qemu-storage-daemon %d (volumes were still exported)" % pid)
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False

"""RabbitMQ and PostgreSQL in containers for the integration tier, and faults.

Runs the services of ``compose.yaml`` with Debian's docker.io on a dockerd of
its own (its own data-root, exec-root, socket and pidfile, no iptables and no
default bridge, so it never touches another docker or the host's firewall),
started by ``up`` and stopped by ``down``. One such daemon per checkout: its
paths and the network's subnet derive from the checkout's path, so the lead's
tree and a helper's worktree can run side by side.

The image is built locally from Debian packages (``build-rootfs.sh`` with
mmdebstrap; no image registry needed). The root filesystem is cached in
``/var/cache/flotilla-containers`` and the image in the daemon's data-root,
both keyed by a hash of the recipe, so only the first run builds.

    ctl.py up       # start dockerd, build the image if needed, run both services
    ctl.py env      # shell exports pointing the integration tier at them
    ctl.py down     # remove the containers and network, stop dockerd
    ctl.py cut rabbitmq | restore rabbitmq | kill rabbitmq | start rabbitmq

Faults (also importable by tests): :func:`cut` drops every packet of a
service's network namespace except loopback (an nftables table entered with
``nsenter -n``), :func:`restore` removes it; :func:`kill` is SIGKILL;
:func:`start` and :func:`restart` wait until the service answers again.
Clients reach the services on 127.0.0.1 through docker's userland proxy, so a
cut behaves like a broker behind a load balancer: connecting still works, then
nothing answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
KEY = hashlib.sha256(ROOT.encode()).hexdigest()[:8]
RUN_DIR = os.environ.get("FLOTILLA_CONTAINERS_RUN", "/run/flotilla-ctr/" + KEY)
DATA_DIR = os.environ.get("FLOTILLA_CONTAINERS_DATA", "/var/lib/flotilla-ctr/" + KEY)
CACHE_DIR = os.environ.get("FLOTILLA_CONTAINERS_CACHE", "/var/cache/flotilla-containers")
SOCKET = os.path.join(RUN_DIR, "docker.sock")
PIDFILE = os.path.join(RUN_DIR, "docker.pid")
STATE = os.path.join(RUN_DIR, "state.json")
PROJECT = "flotilla-" + KEY
DOCKER = shutil.which("docker", path="/usr/bin:/usr/sbin:/bin") or "docker"
DOCKERD = shutil.which("dockerd", path="/usr/sbin:/usr/bin") or "dockerd"
NFT_TABLE = "flotilla_fault"
READY_TIMEOUT = 120


class ContainerError(RuntimeError):
    pass


# --- docker -------------------------------------------------------------------

def docker(*args: str, check: bool = True, timeout: float = 300) -> str:
    proc = subprocess.run([DOCKER, "-H", "unix://" + SOCKET, *args],
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise ContainerError("docker %s failed: %s" % (" ".join(args[:2]),
                                                        proc.stderr.strip()))
    return proc.stdout.strip()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def daemon_pid() -> int | None:
    try:
        with open(PIDFILE) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def start_daemon() -> None:
    """Start this checkout's dockerd unless it runs; wait until it answers."""
    if daemon_pid() and docker("version", "--format", "{{.Server.Version}}",
                               check=False, timeout=20):
        return
    os.makedirs(RUN_DIR, mode=0o700, exist_ok=True)
    os.makedirs(DATA_DIR, mode=0o700, exist_ok=True)
    log = open(os.path.join(RUN_DIR, "dockerd.log"), "ab")
    subprocess.Popen(
        [DOCKERD, "--data-root", DATA_DIR, "--exec-root", RUN_DIR,
         "-H", "unix://" + SOCKET, "--pidfile", PIDFILE, "--iptables=false",
         "--ip6tables=false", "--ip-masq=false", "--bridge=none",
         "--userland-proxy=true", "--log-level=warn"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if docker("version", "--format", "{{.Server.Version}}", check=False,
                  timeout=10):
            return
        time.sleep(0.3)
    raise ContainerError("dockerd did not answer within 60 s; see %s/dockerd.log"
                         % RUN_DIR)


def stop_daemon() -> None:
    pid = daemon_pid()
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.2)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


# --- the compose file ---------------------------------------------------------

def compose() -> dict:
    import yaml
    with open(os.path.join(HERE, "compose.yaml")) as f:
        return yaml.safe_load(f)


def recipe_hash() -> str:
    digest = hashlib.sha256()
    for name in ("build-rootfs.sh", "rootfs-hook.sh", "Containerfile"):
        with open(os.path.join(HERE, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read())
    return digest.hexdigest()[:16]


def ensure_image(tag: str) -> None:
    """Build ``tag`` from the cached Debian root filesystem unless the
    daemon already has it for this recipe."""
    recipe = recipe_hash()
    label = docker("image", "inspect", "--format",
                   '{{index .Config.Labels "flotilla.recipe"}}', tag, check=False)
    if label == recipe:
        return
    os.makedirs(CACHE_DIR, exist_ok=True)
    rootfs = os.path.join(CACHE_DIR, "rootfs-%s.tar" % recipe)
    if not os.path.exists(rootfs):
        print("ctl: building the root filesystem (mmdebstrap, about a minute)",
              file=sys.stderr, flush=True)
        subprocess.run([os.path.join(HERE, "build-rootfs.sh"), rootfs], check=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as context:
        os.link(rootfs, os.path.join(context, "rootfs.tar"))
        shutil.copy(os.path.join(HERE, "Containerfile"), context)
        print("ctl: building image %s" % tag, file=sys.stderr, flush=True)
        docker("build", "-q", "-t", tag, "--label", "flotilla.recipe=" + recipe,
               "-f", os.path.join(context, "Containerfile"), context, timeout=900)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _subnet() -> str:
    """A /24 for this checkout's network, clear of the host's routes."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True,
                            text=True).stdout
    base = int(KEY[:2], 16)
    for step in range(256):
        candidate = "10.213.%d.0/24" % ((base + step) % 256)
        if candidate not in routes:
            return candidate
    raise ContainerError("no free 10.213.x.0/24 subnet")


# --- services -----------------------------------------------------------------

def container(service: str) -> str:
    return "%s-%s" % (PROJECT, service)


def load_state() -> dict:
    try:
        with open(STATE) as f:
            return json.load(f)
    except FileNotFoundError:
        raise ContainerError("the test containers are not up (run tools/containers/"
                             "ctl.py up)") from None


def up() -> dict:
    """Start the daemon and every service of compose.yaml; return the state."""
    start_daemon()
    spec = compose()
    images = {svc.get("image") for svc in spec["services"].values()}
    for tag in images:
        ensure_image(tag)
    if not docker("network", "ls", "-q", "--filter", "name=^%s$" % PROJECT):
        docker("network", "create", "--driver", "bridge", "--subnet", _subnet(),
               "--opt", "com.docker.network.bridge.name=flt" + KEY, PROJECT)
    state = {"project": PROJECT, "socket": SOCKET, "services": {}}
    for name, svc in spec["services"].items():
        docker("rm", "-f", container(name), check=False)
        args = ["run", "-d", "--name", container(name), "--network", PROJECT,
                "--restart", "no"]
        if svc.get("hostname"):
            args += ["--hostname", svc["hostname"]]
        if svc.get("user"):
            args += ["--user", svc["user"]]
        for key, value in (svc.get("environment") or {}).items():
            args += ["-e", "%s=%s" % (key, value)]
        ports = {}
        for mapping in svc.get("ports") or []:
            host, _, inner = str(mapping).rpartition(":")
            address, _, port = host.rpartition(":") if ":" in host else ("", "", host)
            # A fixed host port (picked now when the file leaves it empty), so
            # the service keeps its address across restarts.
            port = port or str(_free_port())
            args += ["-p", "%s:%s:%s" % (address or "127.0.0.1", port, inner)]
            ports[inner] = int(port)
        args.append(svc["image"])
        args += list(svc.get("command") or [])
        docker(*args)
        state["services"][name] = {"container": container(name), "ports": ports}
    with open(STATE, "w") as f:
        json.dump(state, f)
    for name in state["services"]:
        wait_ready(name)
    return state


def down() -> None:
    if daemon_pid() is not None:
        for name in compose()["services"]:
            docker("rm", "-f", container(name), check=False)
        docker("network", "rm", PROJECT, check=False)
    stop_daemon()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(STATE)


def port(service: str) -> int:
    inner = {"rabbitmq": "5672", "postgresql": "5432"}[service]
    return load_state()["services"][service]["ports"][inner]


def env() -> dict[str, str]:
    """The variables that point the integration tier at the containers."""
    docker_cmd = "%s -H unix://%s exec %s" % (DOCKER, SOCKET, container("rabbitmq"))
    return {
        "FLOTILLA_TEST_RABBIT": "guest:guest@127.0.0.1:%d" % port("rabbitmq"),
        "FLOTILLA_TEST_RABBITMQCTL": docker_cmd + " rabbitmqctl",
        "FLOTILLA_TEST_POSTGRES": "postgresql://postgres@127.0.0.1:%d/postgres"
                                  % port("postgresql"),
        "FLOTILLA_TEST_CONTAINERS": STATE,
    }


def _answers(service: str) -> bool:
    """Whether the service speaks its protocol on its published port."""
    try:
        with socket.create_connection(("127.0.0.1", port(service)), timeout=2) as s:
            s.settimeout(2)
            if service == "rabbitmq":
                s.sendall(b"AMQP\x00\x00\x09\x01")
                return s.recv(1) == b"\x01"  # a method frame: Connection.Start
            s.sendall(struct.pack(">II", 8, 80877103))  # SSLRequest
            return s.recv(1) in (b"N", b"S")
    except OSError:
        return False


def wait_ready(service: str, timeout: float = READY_TIMEOUT) -> float:
    """Wait until ``service`` answers; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if _answers(service):
            return time.monotonic() - started
        if docker("inspect", "-f", "{{.State.Running}}", container(service),
                  check=False) != "true":
            break
        time.sleep(0.2)
    logs = docker("logs", "--tail", "20", container(service), check=False)
    raise ContainerError("%s did not answer within %ds: %s" % (service, timeout, logs[-2000:]))


# --- faults -------------------------------------------------------------------

def pid(service: str) -> int:
    value = int(docker("inspect", "-f", "{{.State.Pid}}", container(service)))
    if not value:
        raise ContainerError("%s is not running" % service)
    return value


def _nft(service: str, script: str) -> None:
    subprocess.run(["nsenter", "-t", str(pid(service)), "-n", "nft", "-f", "-"],
                   input=script, text=True, check=True, capture_output=True)


def cut(service: str) -> None:
    """Drop every packet in and out of the service's network namespace
    (loopback excepted, so the service itself keeps working)."""
    _nft(service, "table inet %s {\n"
                  " chain input { type filter hook input priority -10; policy drop;"
                  " iif lo accept; }\n"
                  " chain output { type filter hook output priority -10; policy drop;"
                  " oif lo accept; }\n}\n" % NFT_TABLE)


def restore(service: str) -> None:
    _nft(service, "delete table inet %s\n" % NFT_TABLE)


def kill(service: str) -> None:
    docker("kill", "-s", "KILL", container(service))


def start(service: str) -> float:
    docker("start", container(service))
    return wait_ready(service)


def restart(service: str) -> float:
    docker("restart", "-t", "10", container(service))
    return wait_ready(service)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, args = argv[0], argv[1:]
    if command == "up":
        up()
        for key, value in env().items():
            print("export %s=%s" % (key, _quote(value)))
    elif command == "env":
        for key, value in env().items():
            print("export %s=%s" % (key, _quote(value)))
    elif command == "down":
        down()
    elif command in ("cut", "restore", "kill", "start", "restart"):
        globals()[command](args[0])
    else:
        print("unknown command %s" % command, file=sys.stderr)
        return 2
    return 0


def _quote(value: str) -> str:
    import shlex
    return shlex.quote(value)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

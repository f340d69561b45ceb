"""The host rig: several libvirt "hosts" on one machine, for tests.

Each host is one ``libvirtd --listen`` and its own ``virtlogd`` in a private
mount namespace (``unshare -m --propagation private``) where /run,
/var/lib/libvirt, /etc/libvirt, /var/log/libvirt and /var/cache/libvirt are
bind mounts of the host's own directories under the rig root. Each listens
on plain TCP on 127.0.0.1 with no authentication (a loopback test rig;
production uses TLS) and has its own host_uuid (libvirt refuses to migrate
between equal UUIDs), migration port range and instances_path. Its
qemu.conf points ``nbd_tls_x509_cert_dir`` at ``<host dir>/pki/nbd``
(created empty): a test that attaches a ``tls='yes'`` NBD disk puts a
client's ca-cert.pem, client-cert.pem and client-key.pem there first; NBD
disks without ``tls`` are plain (qemu.conf's nbd_tls stays off).

A new host's libvirtd would spend seconds probing QEMU for its capabilities;
the rig keeps the probe's result in ``CAPABILITIES_CACHE`` (machine-wide, as
/var/cache/libvirt is on a real host) and seeds each new host's cache with
it. libvirtd checks each cached file against the QEMU binary, libvirt and
the kernel it runs with and probes again when one changed, so a stale copy
costs only the probe.

Commands (as root)::

    rig start N [--base-port P] [--root DIR]   # N hosts, idempotent
    rig status [--root DIR] [--json]
    rig stop [--root DIR]                      # leaves nothing behind
    rig restart-libvirtd NAME [--root DIR]     # crash + restart (tests)

``start`` writes ``<root>/rig.json``, which test fixtures and tools read::

    {"root": ..., "base_port": P, "hosts": [
      {"name": "host1", "uri": "qemu+tcp://127.0.0.1:P/system", "port": P,
       "dir": ..., "instances_path": ..., "host_uuid": ...,
       "migration_port_min": ..., "migration_port_max": ...,
       "nbd_tls_x509_cert_dir": ...,
       "libvirtd_pid": ..., "virtlogd_pid": ..., "mnt_ns": "mnt:[...]"}]}

Only the standard library is used, so the rig runs with any python3.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

DEFAULT_ROOT = "/var/tmp/flotilla-rig"
DEFAULT_BASE_PORT = 16610
MIGRATION_PORT_BASE = 49200
MIGRATION_PORTS_PER_HOST = 64
STATE_FILE = "rig.json"
PACKAGES = ["libvirt-daemon", "libvirt-daemon-driver-qemu", "libvirt-clients",
            "qemu-system-x86", "qemu-utils", "libvirt-dev", "pkg-config"]
# Directory of the host under its rig dir -> where it is mounted inside.
BIND_MOUNTS = {"run": "/run", "lib": "/var/lib/libvirt", "etc": "/etc/libvirt",
               "log": "/var/log/libvirt", "cache": "/var/cache/libvirt"}
START_TIMEOUT = 30
CAPABILITIES_CACHE = "/var/cache/flotilla-rig/qemu-capabilities"


def log(msg: str) -> None:
    print("rig: %s" % msg, file=sys.stderr, flush=True)


# --- prerequisites ------------------------------------------------------------

def ensure_packages() -> None:
    missing = [p for p in PACKAGES if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True,
        text=True).stdout.find("install ok installed") < 0]
    if missing:
        log("installing %s" % " ".join(missing))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q",
                        "--no-install-recommends", *missing], check=True,
                       env=env, stdout=subprocess.DEVNULL)
    # Debian's libvirtd expects this user even when QEMU runs as root.
    if subprocess.run(["id", "libvirt-qemu"], capture_output=True).returncode:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", "libvirt-qemu"], check=True)


# --- state --------------------------------------------------------------------

def state_path(root: str) -> str:
    return os.path.join(root, STATE_FILE)


def read_state(root: str) -> dict | None:
    try:
        with open(state_path(root)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def write_state(root: str, state: dict) -> None:
    tmp = state_path(root) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=2)
    os.replace(tmp, state_path(root))


def virsh(uri: str, *args: str, check: bool = False,
          timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-q", "-c", uri, *args], capture_output=True,
                          text=True, check=check, timeout=timeout)


def host_alive(host: dict) -> bool:
    try:
        return virsh(host["uri"], "version", timeout=5).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def mnt_ns(pid: int) -> str | None:
    try:
        return os.readlink("/proc/%d/ns/mnt" % pid)
    except OSError:
        return None


# --- config files -------------------------------------------------------------

def write_configs(host: dict) -> None:
    etc = os.path.join(host["dir"], "etc")
    os.makedirs(os.path.join(etc, "qemu"), exist_ok=True)
    with open(os.path.join(etc, "libvirtd.conf"), "w") as f:
        f.write('# flotilla rig host %s: loopback only, no auth (test rig)\n'
                'listen_tls = 0\nlisten_tcp = 1\nlisten_addr = "127.0.0.1"\n'
                'tcp_port = "%d"\nauth_tcp = "none"\nhost_uuid = "%s"\n'
                'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n'
                % (host["name"], host["port"], host["host_uuid"]))
    with open(os.path.join(etc, "qemu.conf"), "w") as f:
        f.write('user = "root"\ngroup = "root"\nsecurity_driver = "none"\n'
                'migration_port_min = %d\nmigration_port_max = %d\n'
                % (host["migration_port_min"], host["migration_port_max"]))
        tls_dir = host.get("nbd_tls_x509_cert_dir")
        if tls_dir:
            os.makedirs(tls_dir, mode=0o700, exist_ok=True)
            f.write('nbd_tls_x509_cert_dir = "%s"\n' % tls_dir)
    with open(os.path.join(etc, "virtlogd.conf"), "w") as f:
        f.write("log_level = 3\n")


# --- start --------------------------------------------------------------------

def new_host(root: str, index: int, base_port: int) -> dict:
    name = "host%d" % (index + 1)
    directory = os.path.join(root, name)
    port = base_port + index
    low = MIGRATION_PORT_BASE + index * MIGRATION_PORTS_PER_HOST
    return {"name": name, "uri": "qemu+tcp://127.0.0.1:%d/system" % port,
            "port": port, "dir": directory,
            "instances_path": os.path.join(directory, "instances"),
            "host_uuid": str(uuid.uuid4()),
            "migration_port_min": low,
            "migration_port_max": low + MIGRATION_PORTS_PER_HOST - 1,
            "nbd_tls_x509_cert_dir": os.path.join(directory, "pki", "nbd")}


def start_host(host: dict) -> None:
    for sub in list(BIND_MOUNTS) + ["instances"]:
        os.makedirs(os.path.join(host["dir"], sub), exist_ok=True)
    for target in BIND_MOUNTS.values():
        os.makedirs(target, exist_ok=True)  # mount points must exist
    write_configs(host)
    _seed_capabilities(host)
    mounts = "\n".join("mount --bind '%s' '%s'" % (os.path.join(host["dir"], src),
                                                   dst)
                       for src, dst in BIND_MOUNTS.items())
    script = "set -e\n%s\nvirtlogd -d\nexec libvirtd --listen -d\n" % mounts
    subprocess.run([*_on_first_cpu(), "unshare", "-m", "--propagation", "private",
                    "sh", "-c", script], check=True)
    run = os.path.join(host["dir"], "run")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        pid = read_pid(os.path.join(run, "libvirtd.pid"))
        if pid and host_alive(host):
            host["libvirtd_pid"] = pid
            host["virtlogd_pid"] = read_pid(os.path.join(run, "virtlogd.pid"))
            host["mnt_ns"] = mnt_ns(pid)
            _on_every_cpu(pid, host["virtlogd_pid"])
            _keep_capabilities(host)
            return
        time.sleep(0.1)
    raise RuntimeError("libvirtd of %s did not answer on %s within %ds; see %s"
                       % (host["name"], host["uri"], START_TIMEOUT,
                          os.path.join(host["dir"], "log", "libvirtd.log")))


def _on_first_cpu() -> list[str]:
    """The command prefix that runs on one CPU while libvirtd starts.
    libvirtd keeps its QEMU capabilities only while the host's CPUID reads
    the same, and CPUID differs from one CPU to the next (the APIC id):
    started on any CPU, a new libvirtd found the kept capabilities outdated
    half the time ("host cpuid changed") and probed QEMU again, about 7 s.
    (taskset, not a preexec_fn: hosts start from several threads.)"""
    return ["taskset", "-c", str(min(os.sched_getaffinity(0)))]


def _on_every_cpu(*pids: int | None) -> None:
    """Once libvirtd has read its capabilities: every thread of these
    processes back on every CPU the rig may use (its own affinity), so the
    guests it starts are not pinned."""
    cpus = os.sched_getaffinity(0)
    for pid in pids:
        if not pid:
            continue
        try:
            threads = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        for tid in threads:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), cpus)


def _host_capabilities(host: dict) -> str:
    return os.path.join(host["dir"], "cache", "qemu", "capabilities")


def _seed_capabilities(host: dict) -> None:
    if not os.path.isdir(CAPABILITIES_CACHE):
        return
    target = _host_capabilities(host)
    os.makedirs(target, exist_ok=True)
    try:
        for name in os.listdir(CAPABILITIES_CACHE):
            if name.endswith(".xml"):
                shutil.copy2(os.path.join(CAPABILITIES_CACHE, name), target)
    except OSError as exc:   # libvirtd probes what is missing
        log("capabilities cache not used for %s: %s" % (host["name"], exc))


def _keep_capabilities(host: dict) -> None:
    """Copy what this host's libvirtd probed (or kept) to the shared cache,
    each file replaced whole through a temporary file of its own (hosts
    start side by side, in threads and in other rigs). A cache that cannot
    be written costs the next start its probe, never this one."""
    source = _host_capabilities(host)
    if not os.path.isdir(source):
        return
    try:
        os.makedirs(CAPABILITIES_CACHE, exist_ok=True)
        for name in os.listdir(source):
            if not name.endswith(".xml"):
                continue
            fd, partial = tempfile.mkstemp(dir=CAPABILITIES_CACHE, prefix="." + name)
            try:
                with os.fdopen(fd, "wb") as out, \
                        open(os.path.join(source, name), "rb") as cached:
                    shutil.copyfileobj(cached, out)
                os.replace(partial, os.path.join(CAPABILITIES_CACHE, name))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(partial)
                raise
    except OSError as exc:
        log("capabilities of %s not kept: %s" % (host["name"], exc))


def start(count: int, base_port: int, root: str) -> dict:
    root = os.path.abspath(root)
    current = read_state(root)
    if current is not None:
        if (len(current["hosts"]) == count and current["base_port"] == base_port
                and all(host_alive(h) for h in current["hosts"])):
            log("%d hosts already running under %s" % (count, root))
            return current
        log("replacing the rig under %s" % root)
        stop(root)
    elif os.path.isdir(root) and any(n.startswith("host") for n in os.listdir(root)):
        stop(root)  # left-overs of an interrupted start
    ensure_packages()
    os.makedirs(root, exist_ok=True)
    state = {"root": root, "base_port": base_port,
             "hosts": [new_host(root, i, base_port) for i in range(count)]}
    write_state(root, state)  # so stop finds a half-started rig
    # In parallel: each libvirtd spends seconds probing QEMU's capabilities.
    errors: list[BaseException] = []

    def run(host: dict) -> None:
        try:
            start_host(host)
            log("%s up at %s" % (host["name"], host["uri"]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(h,)) for h in state["hosts"]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    write_state(root, state)
    if errors:
        stop(root)
        raise errors[0]
    return state


# --- stop ---------------------------------------------------------------------

def namespace_pids(namespace: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            if mnt_ns(int(entry)) == namespace:
                pids.append(int(entry))
    return pids


def kill_all(pids: list[int], timeout: float = 10) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [p for p in pids if os.path.exists("/proc/%d" % p)
                    and not _zombie(p)]
            if not pids:
                return
            time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def stop_host(host: dict) -> None:
    if host_alive(host):
        listed = virsh(host["uri"], "list", "--all", "--uuid").stdout.split()
        for dom in listed:
            virsh(host["uri"], "destroy", dom)
            virsh(host["uri"], "undefine", dom, "--managed-save",
                  "--snapshots-metadata")
    # Everything in the host's mount namespace: libvirtd, virtlogd, QEMU.
    pids = []
    namespace = host.get("mnt_ns")
    if namespace and namespace != mnt_ns(os.getpid()):
        pids = namespace_pids(namespace)
    for key in ("libvirtd_pid", "virtlogd_pid"):
        pid = host.get(key)
        if pid and pid not in pids and mnt_ns(pid) == namespace:
            pids.append(pid)
    kill_all(pids)
    shutil.rmtree(host["dir"], ignore_errors=True)


def stop(root: str) -> None:
    root = os.path.abspath(root)
    state = read_state(root) or {"hosts": []}
    for host in state["hosts"]:
        stop_host(host)
        log("%s stopped" % host["name"])
    if os.path.isdir(root):
        for name in os.listdir(root):
            if name.startswith("host") or name.startswith(STATE_FILE):
                path = os.path.join(root, name)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
        if not os.listdir(root):
            os.rmdir(root)


def _host(root: str, name: str) -> tuple[dict, dict]:
    state = read_state(os.path.abspath(root))
    host = next(h for h in (state or {"hosts": []})["hosts"] if h["name"] == name)
    return state, host


def kill_libvirtd(root: str, name: str) -> None:
    """Kill one host's libvirtd (SIGKILL, as a crash); its guests and
    virtlogd keep running. Returns once the process is gone."""
    _state, host = _host(root, name)
    kill_all([host["libvirtd_pid"]], timeout=5)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(host["dir"], "run", "libvirtd.pid"))


def start_libvirtd(root: str, name: str) -> dict:
    """Start a killed libvirtd again in its host's namespace and wait until
    it answers. Returns the updated host."""
    state, host = _host(root, name)
    subprocess.run([*_on_first_cpu(), "nsenter", "-t", str(host["virtlogd_pid"]), "-m",
                    "libvirtd", "--listen", "-d"], check=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        pid = read_pid(os.path.join(host["dir"], "run", "libvirtd.pid"))
        if pid and host_alive(host):
            _on_every_cpu(pid)
            host["libvirtd_pid"] = pid
            write_state(os.path.abspath(root), state)
            return host
        time.sleep(0.1)
    raise RuntimeError("libvirtd of %s did not come back" % name)


def restart_libvirtd(root: str, name: str, down_seconds: float = 0.0) -> dict:
    """Kill one host's libvirtd and start it again ``down_seconds`` later
    (guests keep running). For tests of reconnection. Returns the updated
    host."""
    kill_libvirtd(root, name)
    time.sleep(down_seconds)
    return start_libvirtd(root, name)


def status(root: str) -> dict:
    state = read_state(os.path.abspath(root)) or {"hosts": []}
    for host in state["hosts"]:
        host["alive"] = host_alive(host)
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rig", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start N libvirt hosts")
    p_start.add_argument("count", type=int)
    p_start.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT)
    p_start.add_argument("--root", default=DEFAULT_ROOT)
    p_stop = sub.add_parser("stop", help="stop every host, remove every file")
    p_stop.add_argument("--root", default=DEFAULT_ROOT)
    p_status = sub.add_parser("status", help="show the hosts")
    p_status.add_argument("--root", default=DEFAULT_ROOT)
    p_status.add_argument("--json", action="store_true")
    p_restart = sub.add_parser("restart-libvirtd",
                               help="kill one host's libvirtd and start it again")
    p_restart.add_argument("name")
    p_restart.add_argument("--root", default=DEFAULT_ROOT)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        log("must run as root")
        return 1
    if args.command == "start":
        if args.count < 1:
            parser.error("count must be at least 1")
        state = start(args.count, args.base_port, args.root)
        for host in state["hosts"]:
            print("%s %s %s" % (host["name"], host["uri"], host["instances_path"]))
    elif args.command == "stop":
        stop(args.root)
    elif args.command == "restart-libvirtd":
        print(restart_libvirtd(args.root, args.name)["libvirtd_pid"])
    else:
        state = status(args.root)
        if args.json:
            print(json.dumps(state, indent=2))
        else:
            for host in state["hosts"]:
                print("%s %s %s" % (host["name"], host["uri"],
                                    "up" if host["alive"] else "DOWN"))
        return 0 if state["hosts"] and all(h["alive"] for h in state["hosts"]) else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())

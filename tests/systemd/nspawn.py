"""A real systemd as PID 1: a Debian container booted with systemd-nspawn.

This machine's own PID 1 is not systemd, so the units are exercised in a
container (measured recipe: ../shared/SYSTEMD-FACTS.md):

* :func:`rootfs` builds a minimal Debian tree with mmdebstrap from the
  machine's own apt sources, once per machine: it is cached under
  ``$FLOTILLA_NSPAWN_CACHE`` (default /var/cache/flotilla-test/nspawn) in a
  directory named by a hash of the package list, suite and sources;
* :class:`Machine` copies it into a work directory, runs commands in it
  without booting (:meth:`Machine.run_offline`, for the install), boots it
  (:meth:`Machine.boot`) in a cgroup of its own and runs commands inside
  with nsenter (``systemctl -M`` and machinectl need a systemd on the host);
  :meth:`Machine.destroy` halts it and removes the cgroup and the work
  directory, whatever state it is in.

The container shares the host's network: the units reach the host's
RabbitMQ and PostgreSQL on 127.0.0.1 and the tests reach the API there.
What cannot work here raises :class:`Unavailable` naming what is missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable

PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "iproute2",
            # libvirt-python loads libvirt.so.0; procps gives ps and kill;
            # the image API checks every upload with qemu-img; the volume
            # service exports volumes through qemu-storage-daemon.
            "libvirt0", "procps", "qemu-utils", "qemu-system-common")
CACHE = pathlib.Path(os.environ.get("FLOTILLA_NSPAWN_CACHE",
                                    "/var/cache/flotilla-test/nspawn"))
# Host commands and the Debian packages that provide them.
HOST_TOOLS = {"systemd-nspawn": "systemd-container", "mmdebstrap": "mmdebstrap",
              "nsenter": "util-linux"}
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Unavailable(Exception):
    """The container cannot run here; the message says what is missing."""


def _run(cmd: list, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run([str(c) for c in cmd], timeout=timeout, **kwargs)


def ensure_host_tools(say: Callable[[str], None] = print) -> None:
    """Root, and systemd-nspawn, mmdebstrap and nsenter (apt-installed when
    missing); raises Unavailable naming what is not there."""
    if os.geteuid() != 0:
        raise Unavailable("systemd-nspawn and mmdebstrap need root")
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if not shutil.which(tool)})
    if missing:
        if not shutil.which("apt-get"):
            raise Unavailable("missing %s and no apt-get to install them" % ", ".join(missing))
        say("installing %s" % ", ".join(missing))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        update = _run(["apt-get", "update", "-q"], env=env)
        install = _run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                        *missing], env=env)
        if update.returncode or install.returncode:
            raise Unavailable("apt-get install %s failed: %s" % (
                " ".join(missing), (install.stderr or update.stderr).strip()[-1500:]))
    still = [tool for tool in HOST_TOOLS if not shutil.which(tool)]
    if still:
        raise Unavailable("still missing after apt-get install: %s" % ", ".join(still))


def apt_sources() -> list[pathlib.Path]:
    """The machine's own apt sources files (so no mirror is named here)."""
    files = []
    legacy = pathlib.Path("/etc/apt/sources.list")
    if legacy.exists() and any(line.strip() and not line.lstrip().startswith("#")
                               for line in legacy.read_text().splitlines()):
        files.append(legacy)
    parts = pathlib.Path("/etc/apt/sources.list.d")
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    if not files:
        raise Unavailable("no apt sources on this machine (/etc/apt/sources.list"
                          "[.d]): mmdebstrap needs a Debian mirror")
    return files


def suite() -> str:
    for line in pathlib.Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise Unavailable("/etc/os-release names no VERSION_CODENAME (not Debian?)")


def rootfs(say: Callable[[str], None] = print) -> pathlib.Path:
    """The cached Debian tree, built first if this machine has none."""
    sources = apt_sources()
    release = suite()
    key = hashlib.sha256("\n".join(
        [release, "minbase", *sorted(PACKAGES)]
        + [p.read_text() for p in sources]).encode()).hexdigest()[:16]
    tree = CACHE / ("rootfs-%s-%s" % (release, key))
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / (".lock-" + key), "w") as lock:
        # Two runs at once: one builds, the other waits and reuses it.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (tree / "usr/bin/python3").exists():
            _build_rootfs(tree, release, sources, say)
    _check_python(tree)
    return tree


def _build_rootfs(tree: pathlib.Path, release: str, sources: list[pathlib.Path],
                  say: Callable[[str], None]) -> None:
    partial = tree.with_name(tree.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(tree, ignore_errors=True)
    say("building the container tree %s with mmdebstrap (once per machine)" % tree)
    started = time.monotonic()
    result = _run(["mmdebstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
                   release, partial, *sources], timeout=1200)
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise Unavailable("mmdebstrap failed (%d): %s" % (
            result.returncode, (result.stderr or result.stdout).strip()[-2000:]))
    partial.rename(tree)
    say("container tree built in %.0f s" % (time.monotonic() - started))


def _check_python(tree: pathlib.Path) -> None:
    # The wheels are built by this Python: the container's must be the same
    # minor version (both 3.11 on bookworm).
    want = "python%d.%d" % sys.version_info[:2]
    if not (tree / "usr/lib" / want).is_dir():
        have = sorted(p.name for p in (tree / "usr/lib").glob("python3.*"))
        raise Unavailable("the container has %s, the wheels are built for %s (%s)"
                          % (", ".join(have) or "no python3", want, sys.executable))


def _own_cgroups(name: str) -> list[pathlib.Path]:
    """Where to put the container: a child ``name`` of this process's cgroup
    in the unified hierarchy and, on a hybrid or legacy host, in
    name=systemd (nspawn puts the payload under its own cgroup and leaves
    it behind; a cgroup per container keeps two runs apart)."""
    dirs = []
    unified = (pathlib.Path("/sys/fs/cgroup/unified")
               if pathlib.Path("/sys/fs/cgroup/unified/cgroup.procs").exists()
               else pathlib.Path("/sys/fs/cgroup"))
    for line in pathlib.Path("/proc/self/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and (unified / "cgroup.procs").exists():
            dirs.append(unified / path.lstrip("/") / name)
        elif controllers == "name=systemd":
            dirs.append(pathlib.Path("/sys/fs/cgroup/systemd") / path.lstrip("/") / name)
    if not dirs:
        raise Unavailable("no cgroup hierarchy for systemd under /sys/fs/cgroup")
    return dirs


class Machine:
    """One container: ``root`` is its tree, ``name`` its machine name."""

    def __init__(self, workdir: pathlib.Path, name: str) -> None:
        self.workdir = workdir
        self.name = name
        self.root = workdir / "root"
        self.console = workdir / "console.log"
        self.cgroups = _own_cgroups(name)
        self._nspawn: subprocess.Popen | None = None
        self._problems: list[str] = []
        self.leader: int | None = None

    # --- the tree ----------------------------------------------------------------

    def create(self, tree: pathlib.Path) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        result = _run(["cp", "-a", "--reflink=auto", tree, self.root])
        if result.returncode != 0:
            raise Unavailable("cannot copy %s: %s" % (tree, result.stderr.strip()))

    def _enter_cgroups(self) -> None:
        # In the child between fork and exec: nspawn starts in our cgroup.
        for cgroup in self.cgroups:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    def _nspawn_cmd(self, *args: str) -> list[str]:
        for cgroup in self.cgroups:
            cgroup.mkdir(exist_ok=True)
        return ["systemd-nspawn", "--quiet", "-D", str(self.root), "--register=no",
                "--keep-unit", "--machine=" + self.name, *args]

    def run_offline(self, *cmd: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run ``cmd`` in the tree without booting it."""
        return subprocess.run(self._nspawn_cmd("--", *cmd), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL,
                              preexec_fn=self._enter_cgroups)

    # --- booted ---------------------------------------------------------------------

    def boot(self, timeout: float = 90) -> None:
        """Boot it; return once systemd says ``running``."""
        env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
        with open(self.console, "wb") as console:
            self._nspawn = subprocess.Popen(
                self._nspawn_cmd("--boot"), stdin=subprocess.DEVNULL, stdout=console,
                stderr=subprocess.STDOUT, env=env, start_new_session=True,
                preexec_fn=self._enter_cgroups)
        deadline = time.monotonic() + timeout
        while self.leader is None:
            self.leader = self._find_leader()
            self._check_deadline(deadline, "the container's systemd did not appear")
        state = ""
        while state not in ("running", "degraded"):
            state = self.sh("systemctl", "is-system-running", check=False).stdout.strip()
            self._check_deadline(deadline, "systemd did not reach running (%s)" % state)
        if state == "degraded":
            failed = self.sh("systemctl", "--failed", "--no-legend", check=False).stdout
            raise Unavailable("the container booted degraded: %s\n%s"
                              % (failed.strip(), self.console_tail()))

    def _find_leader(self) -> int | None:
        pid = self._nspawn.pid
        try:
            children = pathlib.Path("/proc/%d/task/%d/children" % (pid, pid)).read_text()
            for child in children.split():
                if pathlib.Path("/proc/%s/comm" % child).read_text().strip() == "systemd":
                    return int(child)
        except (FileNotFoundError, ProcessLookupError):
            pass
        return None

    def _check_deadline(self, deadline: float, what: str) -> None:
        if self._nspawn.poll() is not None:
            raise Unavailable("systemd-nspawn exited with %s: %s"
                              % (self._nspawn.returncode, self.console_tail()))
        if time.monotonic() > deadline:
            raise Unavailable("%s; console:\n%s" % (what, self.console_tail()))
        time.sleep(0.05)

    def console_tail(self, lines: int = 30) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def sh(self, *cmd: str, check: bool = True, input: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``cmd`` inside the booted container (every namespace of its
        PID 1); with ``check``, a non-zero exit raises AssertionError."""
        assert self.leader is not None, "not booted"
        env = {"PATH": PATH, "LANG": "C.UTF-8", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
        # Its own session: a process-group-wide signal inside (kill 0) must
        # never reach the test process.
        result = subprocess.run(["nsenter", "-t", str(self.leader), "-a", *cmd],
                                capture_output=True, text=True, input=input,
                                timeout=timeout, env=env, start_new_session=True)
        if check and result.returncode != 0:
            raise AssertionError("in the container, %s exited %d:\n%s%s" % (
                " ".join(cmd), result.returncode, result.stdout, result.stderr))
        return result

    # --- the end ----------------------------------------------------------------------

    def halt(self, timeout: float = 30) -> None:
        """Halt the container (idempotent); its tree stays for reading."""
        if self._nspawn is None or self._nspawn.poll() is not None:
            return
        # nspawn turns SIGTERM into an orderly halt of the container.
        self._nspawn.send_signal(signal.SIGTERM)
        try:
            self._nspawn.wait(timeout)
        except subprocess.TimeoutExpired:
            self._problems.append("the container did not halt within %ss: killed" % timeout)
            self._kill_cgroups()
            self._nspawn.kill()
            self._nspawn.wait(10)

    def destroy(self) -> list[str]:
        """Halt it, remove its cgroups and work directory; the problems met
        (empty when all went)."""
        self.halt()
        problems, self._problems = self._problems, []
        for cgroup in self.cgroups:
            problems += _remove_cgroup(cgroup)
        with contextlib.suppress(FileNotFoundError):
            pathlib.Path("/run/systemd/nspawn/propagate", self.name).rmdir()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.workdir.exists():
            problems.append("%s could not be removed" % self.workdir)
        return problems

    def _kill_cgroups(self) -> None:
        for cgroup in self.cgroups:
            kill = cgroup / "cgroup.kill"
            if kill.exists():
                with contextlib.suppress(OSError):
                    kill.write_text("1")
                continue
            for procs in cgroup.rglob("cgroup.procs"):
                for pid in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)


def _remove_cgroup(cgroup: pathlib.Path, timeout: float = 10) -> list[str]:
    """rmdir the tree, deepest first (processes may take a moment to go)."""
    if not cgroup.exists():
        return []
    deadline = time.monotonic() + timeout
    while True:
        busy = []
        for path in sorted((p for p in cgroup.rglob("*") if p.is_dir()),
                           key=lambda p: len(p.parts), reverse=True) + [cgroup]:
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                busy.append("%s: %s" % (path, exc.strerror))
        if not busy:
            return []
        if time.monotonic() > deadline:
            return ["cgroup left: %s" % "; ".join(busy)]
        time.sleep(0.1)

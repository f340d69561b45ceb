"""The demo's steps that move servers between hosts without live migration's
single guest: a resize (a cold migration to a bigger flavor, confirmed), an
operator's drain of a whole host (every guest live-migrated off it) and the
evacuation of a server whose host went down (rebuilt on the other host).

Each takes the :class:`tools.demo.demo.Walkthrough` it runs in, prints its
progress as it goes and returns what it saw for the e2e test.
"""

from __future__ import annotations

import subprocess
import time

from flotilla.cli.host_drain import APIBackend
from flotilla.drain import Drainer

BIGGER = "m1.small"


class _Printer:
    """A file-like sink that indents the drain's lines as the demo's."""

    def __init__(self, say) -> None:
        self.say = say

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.say("    " + line)
        return len(text)

    def flush(self) -> None:
        pass


def _domstate(walk, host: str, server_id: str) -> str:
    rig = {h["name"]: h["uri"] for h in walk.cloud.state["rig_hosts"]}
    out = subprocess.run(["virsh", "-q", "-c", rig[host], "domstate", server_id],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else "no such domain"


def _memory_mib(walk, host: str, server_id: str) -> int:
    rig = {h["name"]: h["uri"] for h in walk.cloud.state["rig_hosts"]}
    out = subprocess.run(["virsh", "-q", "-c", rig[host], "dommemstat", server_id],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        if key == "actual":
            return int(value) // 1024
    return 0


def resize(walk, server, hosts: dict[str, str], say, step) -> dict:
    """Resize ``server`` to m1.small: it is powered off, its disk streamed
    to the other host through that host's libvirtd and booted there with the
    bigger flavor (VERIFY_RESIZE, both hosts keep a copy), then confirmed
    (the source copy removed)."""
    here = hosts[server.id]
    flavor = walk.tenant.compute.find_flavor(BIGGER)
    step("resize %s to %s (%d MiB, %d GiB disk): a cold move to the other host"
         % (server.name, BIGGER, flavor.ram, flavor.disk))
    started = time.monotonic()
    walk.tenant.compute.resize_server(server, flavor.id)
    now = walk.wait(server, "VERIFY_RESIZE", timeout=300)
    there = walk.admin.compute.get_server(server.id).compute_host
    say("    %s is VERIFY_RESIZE on %s with %s (%.1fs)"
        % (server.name, there, now.flavor["original_name"], time.monotonic() - started))
    on_dest, on_source = _domstate(walk, there, server.id), _domstate(walk, here, server.id)
    memory = _memory_mib(walk, there, server.id)
    say("    virsh on %s: %s, %d MiB" % (there, on_dest, memory))
    say("    virsh on %s: %s (kept until the resize is confirmed)" % (here, on_source))
    step("confirm the resize of %s" % server.name)
    walk.tenant.compute.confirm_server_resize(server)
    walk.wait(server, "ACTIVE")
    after = _domstate(walk, here, server.id)
    say("    confirmed: virsh on %s: %s" % (here, after))
    hosts[server.id] = there
    return {"source": here, "dest": there, "flavor": now.flavor["original_name"],
            "dest_state": on_dest, "source_state": on_source, "memory_mib": memory,
            "source_after": after}


def drain(walk, host: str, hosts: dict[str, str], say, step,
          keep_running: frozenset[str] = frozenset()) -> dict:
    """Drain ``host`` as an operator would (``flotilla host drain``): disable
    it, migrate its guests off two at a time with their progress (live, or
    cold and confirmed for a stopped one), then enable it again. One of its
    guests not in ``keep_running`` is stopped first, so the drain moves a
    stopped guest too; it stays stopped."""
    stopped = next((s for s, h in sorted(hosts.items())
                    if h == host and s not in keep_running), None)
    if stopped is not None:
        server = walk.tenant.compute.get_server(stopped)
        step("stop %s on %s: a drain moves stopped guests too" % (server.name, host))
        walk.tenant.compute.stop_server(server)
        walk.wait(server, "SHUTOFF")
    step("drain %s: disable it and migrate every guest off it, two at once" % host)
    started = time.monotonic()
    drainer = Drainer(APIBackend(walk.admin), max_concurrent=2, poll_interval=0.5,
                      out=_Printer(say))
    result = drainer.drain(host, "demo: maintenance")
    if not result.ok:
        raise RuntimeError("the drain of %s left %s" % (host, "; ".join(
            "%s: %s" % (g.name, why) for g, why in result.failed.values())))
    rig = {h["name"]: h["uri"] for h in walk.cloud.state["rig_hosts"]}
    running = subprocess.run(["virsh", "-q", "-c", rig[host], "list", "--all", "--name"],
                             capture_output=True, text=True).stdout.split()
    say("    %s drained in %.1fs; virsh on it lists %d domain(s)"
        % (host, time.monotonic() - started, len(running)))
    moved = [s for s, h in hosts.items() if h == host]
    for server_id in moved:
        hosts[server_id] = walk.admin.compute.get_server(server_id).compute_host
    if stopped is not None:
        server = walk.tenant.compute.get_server(stopped)
        say("    %s: %s on %s (cold-migrated and confirmed)"
            % (server.name, server.status, hosts[stopped]))
    service = next(s for s in walk.admin.compute.services()
                   if s.binary in ("nova-compute", "flotilla-compute") and s.host == host)
    walk.admin.compute.enable_service(service)
    say("    %s enabled again" % host)
    return {"host": host, "moved": len(moved), "left": len(running), "stopped": stopped,
            "hosts_after": sorted(set(hosts[s] for s in moved))}


def _service(walk, host: str):
    return next(s for s in walk.admin.compute.services()
                if s.binary in ("nova-compute", "flotilla-compute") and s.host == host)


def _wait_service(walk, host: str, state: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while _service(walk, host).state != state:
        if time.monotonic() > deadline:
            raise RuntimeError("the compute service of %s is not %s after %ss"
                               % (host, state, timeout))
        time.sleep(0.5)


def _domains(walk, host: str) -> set[str]:
    rig = {h["name"]: h["uri"] for h in walk.cloud.state["rig_hosts"]}
    return set(subprocess.run(["virsh", "-q", "-c", rig[host], "list", "--all", "--uuid"],
                              capture_output=True, text=True).stdout.split())


def evacuate(walk, server, hosts: dict[str, str], say, step) -> dict:
    """Evacuate ``server`` as an operator whose host died would: its host's
    agent is stopped and the service forced down (Nova's "the host is
    fenced" signal), then ``evacuate`` rebuilds it from its image on the
    other host. When the agent comes back it removes its stale copy."""
    dead = hosts[server.id]
    daemon = "flotilla-compute@%s" % dead
    step("evacuate %s: %s's agent stopped, its service forced down" % (server.name, dead))
    walk.cloud.stop_daemon(daemon)
    service = _service(walk, dead)
    back = False
    try:
        walk.admin.compute.update_service_forced_down(service, dead, service.binary, True)
        _wait_service(walk, dead, "down")
        say("    %s: compute service down (forced)" % dead)
        fenced = walk.admin.compute.get_server(server.id).host_status
        say("    %s's host_status, as an admin sees it: %s" % (server.name, fenced))
        started = time.monotonic()
        walk.admin.compute.evacuate_server(server)
        deadline = time.monotonic() + 300
        while True:
            now = walk.admin.compute.get_server(server.id)
            if now.status != "REBUILD" and not now.task_state:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the evacuation of %s is still running" % server.name)
            time.sleep(0.5)
        if now.status != "ACTIVE":
            raise RuntimeError("the evacuation of %s ended %s" % (server.name, now.status))
        there = now.compute_host
        on_dest = _domstate(walk, there, server.id)
        say("    %s rebuilt from its image on %s in %.1fs; virsh there: %s"
            % (server.name, there, time.monotonic() - started, on_dest))
        stale = server.id in _domains(walk, dead)
        say("    %s's libvirt still has its stale copy: %s"
            % (dead, "yes" if stale else "no"))
        step("bring %s back: its agent removes the evacuated guest's stale copy" % dead)
        walk.admin.compute.update_service_forced_down(service, dead, service.binary, False)
        walk.cloud.start_compute(dead)
        back = True
    finally:
        if not back:      # the cloud stays usable (KEEP=1) whatever failed
            walk.admin.compute.update_service_forced_down(service, dead, service.binary,
                                                          False)
            walk.cloud.start_compute(dead)
    _wait_service(walk, dead, "up")
    deadline = time.monotonic() + 120
    while server.id in _domains(walk, dead):
        if time.monotonic() > deadline:
            raise RuntimeError("%s kept the stale copy of %s" % (dead, server.name))
        time.sleep(0.5)
    say("    %s is up; virsh on it no longer lists %s" % (dead, server.name))
    hosts[server.id] = there
    return {"source": dead, "dest": there, "dest_state": on_dest, "host_status": fenced,
            "stale_before": stale, "stale_after": server.id in _domains(walk, dead)}

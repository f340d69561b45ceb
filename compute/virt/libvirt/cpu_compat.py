"""Can this host run a guest that runs elsewhere? The live migration
destination's check (compute/virt/libvirt/migration.py).

The source describes its guest from the domain's XML (:func:`guest_facts`):
the virt type (``<domain type>``), the architecture and machine type
(``<os><type arch machine>``) and, when the guest was given one, its CPU
(``<cpu>`` of the persistent definition: host-model or a custom model; a
guest without one runs QEMU's default model, which every host of the same
virt type runs). The destination compares them with its own
capabilities (``getCapabilities``) and, for a CPU, asks its hypervisor
(``compareHypervisorCPU``, else ``compareCPU``) whether the guest's CPU
runs here (:func:`refusal`). A guest that cannot run here is refused
before anything is prepared, with the reason, rather than left to fail
inside libvirt's job.

Facts missing (a source agent older than this check) are not compared:
the old check (the virt type's default CPU) still applies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import libvirt
from lxml import etree

LOG = logging.getLogger(__name__)

# CPU modes whose definition names a CPU the destination must provide.
_COMPARED_MODES = ("host-model", "custom")


def guest_facts(live: etree._Element, persistent: etree._Element | None) -> dict[str, str]:
    """What the destination checks, from the domain's live XML (virt type,
    arch and machine as libvirt expanded them) and its persistent XML (the
    CPU the guest was defined with)."""
    os_type = live.find("os/type")
    facts = {"virt_type": live.get("type") or "",
             "arch": os_type.get("arch", "") if os_type is not None else "",
             "machine": os_type.get("machine", "") if os_type is not None else "",
             "cpu_mode": "", "cpu_xml": ""}
    cpu = (persistent if persistent is not None else live).find("cpu")
    if cpu is not None:
        mode = cpu.get("mode") or ("custom" if cpu.find("model") is not None else "")
        facts["cpu_mode"] = mode
        if mode in _COMPARED_MODES:
            facts["cpu_xml"] = etree.tostring(cpu, encoding="unicode")
    return facts


def _machines_and_domains(caps: etree._Element, arch: str) -> tuple[set[str], set[str]]:
    machines: set[str] = set()
    domains: set[str] = set()
    for guest in caps.findall("guest"):
        if (guest.findtext("os_type") or "hvm") != "hvm":
            continue
        for node in guest.findall("arch"):
            if node.get("name") != arch:
                continue
            for machine in node.iter("machine"):
                machines.update(m for m in (machine.text, machine.get("canonical")) if m)
            domains.update(d.get("type") for d in node.findall("domain") if d.get("type"))
    return machines, domains


def refusal(facts: dict[str, Any], capabilities: str, virt_type: str, host: str,
            compare: Callable[[str, dict[str, Any]], int] | None = None) -> str | None:
    """Why host ``host`` (its ``getCapabilities`` XML, its ``[libvirt]
    virt_type``) cannot run the guest of ``facts``, or None if it can.

    ``compare(cpu_xml, facts)`` answers as virConnectCompareCPU (an
    ``VIR_CPU_COMPARE_*`` value); it raises libvirtError when the
    hypervisor cannot compare (then the CPU is not judged here, and
    libvirt's own check at migration time decides)."""
    if not facts:
        return None
    guest_type = facts.get("virt_type") or ""
    if guest_type and guest_type != virt_type:
        return ("it runs as a %s guest and host %s runs %s guests"
                % (guest_type, host, virt_type))
    arch = facts.get("arch") or ""
    if arch:
        caps = etree.fromstring(capabilities.encode())
        machines, domains = _machines_and_domains(caps, arch)
        if not domains:
            return ("its architecture %s is not one host %s runs (%s)"
                    % (arch, host, ", ".join(sorted({
                        a.get("name") for a in caps.findall("guest/arch")
                        if a.get("name")})) or "none"))
        if guest_type and guest_type not in domains:
            return ("host %s cannot run %s guests of architecture %s (only %s)"
                    % (host, guest_type, arch, ", ".join(sorted(domains))))
        machine = facts.get("machine") or ""
        if machine and machines and machine not in machines:
            return ("its machine type %s is not one host %s provides for %s"
                    % (machine, host, arch))
    cpu_xml = facts.get("cpu_xml") or ""
    if cpu_xml and compare is not None:
        try:
            result = compare(cpu_xml, facts)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                LOG.warning("host %s cannot compare CPUs: the guest's %s CPU is left to "
                            "libvirt's check", host, facts.get("cpu_mode"))
                return None
            return ("its %s CPU cannot be checked against host %s: %s"
                    % (facts.get("cpu_mode"), host, exc.get_error_message()))
        if result == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
            return ("its %s CPU is not compatible with the CPU of host %s"
                    % (facts.get("cpu_mode"), host))
        if result == libvirt.VIR_CPU_COMPARE_ERROR:
            return ("its %s CPU could not be compared with the CPU of host %s"
                    % (facts.get("cpu_mode"), host))
    return None


def comparer(conn) -> Callable[[str, dict[str, Any]], int]:
    """``compare`` for :func:`refusal` on connection ``conn``: the
    hypervisor's view (compareHypervisorCPU: what QEMU can give a guest of
    that arch, machine and virt type), else the host CPU's (compareCPU)."""
    def compare(cpu_xml: str, facts: dict[str, Any]) -> int:
        try:
            return conn.compareHypervisorCPU(
                None, facts.get("arch") or None, facts.get("machine") or None,
                facts.get("virt_type") or None, cpu_xml, 0)
        except (AttributeError, libvirt.libvirtError) as exc:
            if isinstance(exc, libvirt.libvirtError) \
                    and exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise
        return conn.compareCPU(cpu_xml, 0)
    return compare

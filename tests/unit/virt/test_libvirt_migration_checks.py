"""The live migration destination's check in the libvirt driver
(compute/virt/libvirt/cpu_compat.py through migration.py): a guest whose
virt type, architecture, machine type or CPU the destination cannot
provide is refused with the reason (MigrationPreCheckError), before
anything is prepared; with stub connections."""

from __future__ import annotations

import libvirt
import pytest
from lxml import etree

from compute.virt.libvirt import cpu_compat
from compute.virt.migration import MigrateData
from flotilla import exception
from tests.unit.virt.libvirt_stubs import (
    CAPS_AARCH64_TCG,
    CAPS_X86,
    StubConnection,
    StubDomain,
    domain_xml,
    error,
    stub_driver,
)

UUID = "11111111-2222-4333-8444-555555555555"
INSTANCE = {"uuid": UUID, "flavor": {"memory_mb": 64, "vcpus": 1, "root_gb": 1}}
HOST_MODEL = "<cpu mode='host-model' check='partial'/>"
CUSTOM = "<cpu mode='custom' match='exact'><model fallback='forbid'>EPYC-Genoa</model></cpu>"


def _facts(live: str, persistent: str | None = None) -> dict:
    return cpu_compat.guest_facts(etree.fromstring(live.encode()),
                                  etree.fromstring((persistent or live).encode()))


def _source_data(conf, live: str, persistent: str | None = None) -> MigrateData:
    """What the source's check sends, from a stub domain with that XML."""
    source = stub_driver(conf, "host1", StubConnection(),
                         {UUID: StubDomain(UUID, live, persistent)})
    return source.check_can_migrate_source(INSTANCE, True)


def test_the_source_describes_its_guest(conf):
    data = _source_data(conf, domain_xml(cpu=CUSTOM), domain_xml(cpu=CUSTOM))
    assert data.guest["virt_type"] == "qemu" and data.guest["arch"] == "x86_64"
    assert data.guest["machine"] == "pc-i440fx-8.2"
    assert data.guest["cpu_mode"] == "custom" and "EPYC-Genoa" in data.guest["cpu_xml"]
    # It crosses as a dict and comes back whole.
    assert MigrateData.from_dict(data.to_dict()).guest == data.guest


def test_the_cpu_a_guest_was_defined_with_is_the_persistent_one(conf):
    # The live XML of a host-model guest names the expanded model; the
    # definition (host-model) is what the destination must provide.
    data = _source_data(conf, domain_xml(cpu=CUSTOM), domain_xml(cpu=HOST_MODEL))
    assert data.guest["cpu_mode"] == "host-model"


def test_a_guest_without_a_cpu_element_is_not_compared(conf):
    data = _source_data(conf, domain_xml())
    assert data.guest["cpu_mode"] == "" and data.guest["cpu_xml"] == ""
    conn = StubConnection(compare=libvirt.VIR_CPU_COMPARE_INCOMPATIBLE)
    dest = stub_driver(conf, "host2", conn)
    checked = dest.check_can_migrate_destination(INSTANCE, data)
    assert checked.dest_host == "host2" and conn.compared == []


@pytest.mark.parametrize("live, caps, virt_type, words", [
    (domain_xml(virt_type="kvm"), CAPS_X86, "qemu",
     "it runs as a kvm guest and host host2 runs qemu guests"),
    (domain_xml(arch="x86_64"), CAPS_AARCH64_TCG, "qemu",
     "its architecture x86_64 is not one host host2 runs (aarch64)"),
    (domain_xml(virt_type="kvm", arch="i686"), CAPS_X86, "kvm",
     "host host2 cannot run kvm guests of architecture i686 (only qemu)"),
    (domain_xml(machine="pc-q35-9.1"), CAPS_X86, "qemu",
     "its machine type pc-q35-9.1 is not one host host2 provides for x86_64"),
])
def test_an_incompatible_guest_is_refused_naming_why(conf, live, caps, virt_type, words):
    data = _source_data(conf, live)
    conf.set_override("virt_type", virt_type, "libvirt")
    dest = stub_driver(conf, "host2", StubConnection(capabilities=caps))
    with pytest.raises(exception.MigrationPreCheckError) as caught:
        dest.check_can_migrate_destination(INSTANCE, data)
    assert words in str(caught.value)


@pytest.mark.parametrize("machine", ["pc-q35-8.2", "q35", "pc"])
def test_a_machine_type_the_destination_lists_is_accepted(conf, machine):
    data = _source_data(conf, domain_xml(machine=machine))
    dest = stub_driver(conf, "host2", StubConnection())
    assert dest.check_can_migrate_destination(INSTANCE, data).dest_uri


@pytest.mark.parametrize("cpu", [HOST_MODEL, CUSTOM])
def test_a_cpu_the_destination_cannot_run_is_refused(conf, cpu):
    data = _source_data(conf, domain_xml(cpu=cpu))
    conn = StubConnection(compare=libvirt.VIR_CPU_COMPARE_INCOMPATIBLE)
    dest = stub_driver(conf, "host2", conn)
    with pytest.raises(exception.MigrationPreCheckError) as caught:
        dest.check_can_migrate_destination(INSTANCE, data)
    mode = "host-model" if cpu == HOST_MODEL else "custom"
    assert "its %s CPU is not compatible with the CPU of host host2" % mode \
        in str(caught.value)
    # The hypervisor's view, for the guest's arch, machine and virt type.
    [(kind, (arch, machine, virttype, xml))] = conn.compared
    assert (kind, arch, machine, virttype) == ("hypervisor", "x86_64", "pc-i440fx-8.2",
                                               "qemu")
    assert etree.fromstring(xml.encode()).get("mode") == mode


@pytest.mark.parametrize("answer", [libvirt.VIR_CPU_COMPARE_IDENTICAL,
                                    libvirt.VIR_CPU_COMPARE_SUPERSET])
def test_a_compatible_cpu_passes(conf, answer):
    data = _source_data(conf, domain_xml(cpu=CUSTOM))
    conn = StubConnection(compare=answer)
    assert stub_driver(conf, "host2", conn).check_can_migrate_destination(
        INSTANCE, data).dest_host == "host2"
    assert len(conn.compared) == 1


def test_without_compare_hypervisor_cpu_the_host_cpu_is_compared(conf):
    data = _source_data(conf, domain_xml(cpu=CUSTOM))
    conn = StubConnection(compare=libvirt.VIR_CPU_COMPARE_INCOMPATIBLE,
                          hypervisor_compare=False)
    with pytest.raises(exception.MigrationPreCheckError, match="not compatible"):
        stub_driver(conf, "host2", conn).check_can_migrate_destination(INSTANCE, data)
    assert [kind for kind, _ in conn.compared] == ["host"]


def test_a_comparison_libvirt_fails_is_refused_with_its_message(conf):
    data = _source_data(conf, domain_xml(cpu=CUSTOM))
    conn = StubConnection(compare=error(libvirt.VIR_ERR_INVALID_ARG,
                                        "unknown CPU model EPYC-Genoa"))
    with pytest.raises(exception.MigrationPreCheckError,
                       match="cannot be checked against host host2: unknown CPU model"):
        stub_driver(conf, "host2", conn).check_can_migrate_destination(INSTANCE, data)


def test_a_hypervisor_that_cannot_compare_leaves_it_to_libvirt(conf):
    data = _source_data(conf, domain_xml(cpu=CUSTOM))
    conn = StubConnection(compare=error(libvirt.VIR_ERR_NO_SUPPORT, "not supported"),
                          hypervisor_compare=False)
    assert stub_driver(conf, "host2", conn).check_can_migrate_destination(
        INSTANCE, data).dest_host == "host2"


def test_an_older_source_without_facts_is_checked_as_before(conf):
    data = MigrateData(live=True, source_host="host1", guest_cpu="qemu/default")
    conn = StubConnection(capabilities=CAPS_AARCH64_TCG)
    assert stub_driver(conf, "host2", conn).check_can_migrate_destination(
        INSTANCE, data).dest_host == "host2"


def test_facts_come_from_the_domain_xml():
    facts = _facts(domain_xml(virt_type="kvm", arch="aarch64", machine="virt-8.2"))
    assert facts == {"virt_type": "kvm", "arch": "aarch64", "machine": "virt-8.2",
                     "cpu_mode": "", "cpu_xml": ""}
    # host-passthrough names no model to compare: libvirt requires the
    # same host CPU itself.
    assert _facts(domain_xml(cpu="<cpu mode='host-passthrough'/>"))["cpu_xml"] == ""

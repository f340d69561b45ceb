"""Stub libvirt connection and domain objects for the libvirt driver's
migration code: they answer from what the test gives them and record what
the driver asks (flags, params, downtime limits), so the driver's own
decisions are checked without a hypervisor."""

from __future__ import annotations

import threading

import libvirt

from compute.virt.libvirt.driver import QEMU_CAPABILITIES, LibvirtDriver

CAPS_X86 = """<capabilities><host><cpu><arch>x86_64</arch><model>Skylake</model></cpu></host>
<guest><os_type>hvm</os_type><arch name='x86_64'><wordsize>64</wordsize>
<machine canonical='pc-i440fx-8.2'>pc</machine><machine>pc-i440fx-8.2</machine>
<machine canonical='pc-q35-8.2'>q35</machine><machine>pc-q35-8.2</machine>
<domain type='qemu'/><domain type='kvm'/></arch></guest>
<guest><os_type>hvm</os_type><arch name='i686'><wordsize>32</wordsize>
<machine>pc-i440fx-8.2</machine><domain type='qemu'/></arch></guest>
</capabilities>"""

CAPS_AARCH64_TCG = """<capabilities><host><cpu><arch>aarch64</arch></cpu></host>
<guest><os_type>hvm</os_type><arch name='aarch64'><machine>virt-8.2</machine>
<domain type='qemu'/></arch></guest></capabilities>"""


def domain_xml(virt_type: str = "qemu", arch: str = "x86_64",
               machine: str = "pc-i440fx-8.2", cpu: str = "") -> str:
    return ("<domain type='%s'><name>vm</name><os><type arch='%s' machine='%s'>hvm"
            "</type></os>%s<devices><disk type='file' device='disk'>"
            "<source file='/x/disk'/><target dev='vda' bus='virtio'/></disk>"
            "</devices></domain>" % (virt_type, arch, machine, cpu))


def _error(code: int, message: str) -> libvirt.libvirtError:
    err = libvirt.libvirtError(message)
    err.err = (code, 0, message, 0, "", "", "", 0, 0)
    return err


class StubDomain:
    """A running domain; XMLDesc answers ``live`` (or ``persistent`` for an
    inactive description); the migration job records its arguments."""

    def __init__(self, uuid: str, live: str, persistent: str | None = None,
                 job_error: libvirt.libvirtError | None = None) -> None:
        self.uuid = uuid
        self.live, self.persistent = live, persistent or live
        self.job_error = job_error
        self.migrations: list[tuple[str, dict, int]] = []
        self.downtimes: list[int] = []
        self.job_running = threading.Event()
        self.release = threading.Event()

    def XMLDesc(self, flags: int = 0) -> str:
        return self.persistent if flags & libvirt.VIR_DOMAIN_XML_INACTIVE else self.live

    def UUIDString(self) -> str:
        return self.uuid

    def state(self, flags: int = 0):
        return [libvirt.VIR_DOMAIN_RUNNING, 1]

    def hasManagedSaveImage(self, flags: int = 0) -> int:
        return 0

    def jobStats(self, flags: int = 0) -> dict:
        if self.job_running.is_set() and not self.release.is_set():
            return {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED,
                    "operation": libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT}
        return {"type": libvirt.VIR_DOMAIN_JOB_NONE}

    def migrateToURI3(self, uri: str, params: dict, flags: int) -> int:
        self.migrations.append((uri, dict(params), flags))
        self.job_running.set()
        self.release.wait(10)
        if self.job_error is not None:
            raise self.job_error
        return 0

    def migrateSetMaxDowntime(self, ms: int, flags: int = 0) -> int:
        self.downtimes.append(ms)
        if len(self.downtimes) >= 1:
            self.release.set()      # one limit set is all a test waits for
        return 0

    def abortJob(self) -> int:
        self.release.set()
        return 0


class StubConnection:
    """getCapabilities from the test; the CPU comparisons answer
    ``compare`` (an int, or a libvirtError to raise) and are recorded."""

    def __init__(self, capabilities: str = CAPS_X86,
                 compare: int | libvirt.libvirtError = libvirt.VIR_CPU_COMPARE_IDENTICAL,
                 hypervisor_compare: bool = True) -> None:
        self.capabilities = capabilities
        self.compare = compare
        self.hypervisor_compare = hypervisor_compare
        self.compared: list[tuple[str, tuple]] = []

    def getCapabilities(self) -> str:
        return self.capabilities

    def _answer(self) -> int:
        if isinstance(self.compare, libvirt.libvirtError):
            raise self.compare
        return self.compare

    def compareHypervisorCPU(self, emulator, arch, machine, virttype, xml, flags):
        if not self.hypervisor_compare:
            raise _error(libvirt.VIR_ERR_NO_SUPPORT, "not supported: "
                         "virConnectCompareHypervisorCPU")
        self.compared.append(("hypervisor", (arch, machine, virttype, xml)))
        return self._answer()

    def compareCPU(self, xml: str, flags: int) -> int:
        self.compared.append(("host", (xml,)))
        return self._answer()


class StubHost:
    """What the driver's migration code uses of its Host."""

    uri = "qemu:///system"
    is_test_driver = False

    def __init__(self, conn: StubConnection, domains: dict[str, StubDomain]) -> None:
        self.conn, self.domains = conn, domains

    def call(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)

    def with_connection(self, fn, retry: bool = True):
        return fn(self.conn)

    def get_connection(self):
        return self.conn

    def lookup(self, uuid: str):
        return self.domains.get(uuid)


def stub_driver(conf, host_name: str, conn: StubConnection,
                domains: dict[str, StubDomain] | None = None) -> LibvirtDriver:
    """A LibvirtDriver (QEMU's capabilities) whose Host is a StubHost."""
    conf.set_override("connection_uri", "test:///default", "libvirt")
    drv = LibvirtDriver(conf)
    drv.host = StubHost(conn, domains or {})
    drv.capabilities = QEMU_CAPABILITIES
    drv.host_name = host_name
    return drv


error = _error

"""The libvirt driver's live migration job (compute/virt/libvirt/migration.py,
live_migration): the flags and parameters it gives migrateToURI3 and the
downtime limit it sets once the job runs, with the [libvirt] options
live_migration_auto_converge, live_migration_permit_post_copy,
live_migration_bandwidth and live_migration_downtime(_steps) on and off;
on a stub domain that records them."""

from __future__ import annotations

import threading

import libvirt
import pytest
from lxml import etree

from compute.virt.libvirt.migration import downtime_steps
from compute.virt.migration import MigrateData
from flotilla import exception
from tests.unit.virt.libvirt_stubs import StubConnection, StubDomain, domain_xml, error, stub_driver

UUID = "11111111-2222-4333-8444-555555555555"
INSTANCE = {"uuid": UUID, "flavor": {"memory_mb": 1024, "vcpus": 1, "root_gb": 1}}
BASE = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
        | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
DEST_XML = "<domain type='qemu'><name>vm</name></domain>"


def _data(local_disks=("vda",)) -> MigrateData:
    return MigrateData(live=True, source_host="host1", dest_host="host2",
                       dest_uri="qemu+tcp://host2/system", dest_config=DEST_XML,
                       local_disks=tuple(local_disks))


def _run(conf, data: MigrateData | None = None, **options) -> StubDomain:
    for name, value in options.items():
        conf.set_override(name, value, "libvirt")
    domain = StubDomain(UUID, domain_xml())
    drv = stub_driver(conf, "host1", StubConnection(), {UUID: domain})
    drv.live_migration(INSTANCE, data or _data())
    return domain


def test_defaults_a_live_incremental_copy_of_the_local_disks(conf):
    domain = _run(conf)
    [(uri, params, flags)] = domain.migrations
    assert uri == "qemu+tcp://host2/system"
    assert flags == BASE | libvirt.VIR_MIGRATE_NON_SHARED_INC
    assert not flags & libvirt.VIR_MIGRATE_AUTO_CONVERGE
    assert not flags & libvirt.VIR_MIGRATE_POSTCOPY
    # The destination's XML as prepared (re-serialised: the source's device
    # addresses are copied into it, xml.keep_device_addresses).
    sent = dict(params)
    assert etree.tostring(etree.fromstring(sent.pop(libvirt.VIR_MIGRATE_PARAM_DEST_XML))) \
        == etree.tostring(etree.fromstring(DEST_XML))
    # The definition left on the destination is that XML too, not the source's.
    assert etree.tostring(etree.fromstring(sent.pop(libvirt.VIR_MIGRATE_PARAM_PERSIST_XML))) \
        == etree.tostring(etree.fromstring(DEST_XML))
    assert sent == {libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vda"]}
    # The first downtime limit: a tenth of live_migration_downtime (500 ms).
    assert domain.downtimes[0] == 50


@pytest.mark.parametrize("option, flag", [
    ("live_migration_auto_converge", libvirt.VIR_MIGRATE_AUTO_CONVERGE),
    ("live_migration_permit_post_copy", libvirt.VIR_MIGRATE_POSTCOPY)])
def test_an_option_on_adds_its_flag_alone(conf, option, flag):
    [(_uri, _params, flags)] = _run(conf, **{option: True}).migrations
    assert flags == BASE | libvirt.VIR_MIGRATE_NON_SHARED_INC | flag


def test_both_options_on(conf):
    [(_uri, _params, flags)] = _run(conf, live_migration_auto_converge=True,
                                    live_migration_permit_post_copy=True).migrations
    assert flags & libvirt.VIR_MIGRATE_AUTO_CONVERGE
    assert flags & libvirt.VIR_MIGRATE_POSTCOPY


@pytest.mark.parametrize("bandwidth, expected", [(0, None), (120, 120)])
def test_the_bandwidth_limit_goes_with_the_job_only_when_set(conf, bandwidth, expected):
    [(_uri, params, _flags)] = _run(conf, live_migration_bandwidth=bandwidth).migrations
    assert params.get(libvirt.VIR_MIGRATE_PARAM_BANDWIDTH) == expected


def test_the_downtime_limit_follows_the_options(conf):
    domain = _run(conf, live_migration_downtime=300, live_migration_downtime_steps=3)
    assert domain.downtimes[0] == 100
    assert domain.downtimes[0] == downtime_steps(conf.libvirt, 1.0)[0][1]
    # Set with the job's API, flags 0, while the job ran (the stub ends
    # the job once a limit is set, so one was set before the job ended).
    assert domain.migrations and domain.release.is_set()


def test_a_guest_without_local_disks_copies_no_disk(conf):
    """A server booted from a volume: no NON_SHARED_INC and no disk list
    (an absent list would mean every disk, volumes included)."""
    [(_uri, params, flags)] = _run(conf, _data(local_disks=())).migrations
    assert flags == BASE
    assert libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS not in params


def test_a_failed_job_is_a_migration_error_with_libvirt_reason(conf):
    domain = StubDomain(UUID, domain_xml(), job_error=error(
        libvirt.VIR_ERR_OPERATION_FAILED, "unable to connect to server"))
    drv = stub_driver(conf, "host1", StubConnection(), {UUID: domain})
    with pytest.raises(exception.MigrationError, match="unable to connect to server"):
        drv.live_migration(INSTANCE, _data())
    # The job is forgotten: another one may start.
    assert drv._migration_jobs == {}


class CappingDomain(StubDomain):
    """A job under a bandwidth cap whose disks are copied first: as
    libvirt does, the job's own cap is set again when the memory copy
    starts, i.e. right after a force-complete that came during the disks'
    copy. The job ends only once it runs uncapped."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.speed = 0
        self.speeds: list[int] = []
        self.suspended = False

    def migrateToURI3(self, uri: str, params: dict, flags: int) -> int:
        self.speed = params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH]
        self.migrations.append((uri, dict(params), flags))
        self.job_running.set()
        if not self.release.wait(10):
            raise error(libvirt.VIR_ERR_OPERATION_FAILED, "still capped")
        return 0

    def migrateSetMaxDowntime(self, ms: int, flags: int = 0) -> int:
        self.downtimes.append(ms)
        return 0

    def migrateGetMaxSpeed(self, flags: int = 0) -> int:
        return self.speed

    def migrateSetMaxSpeed(self, speed: int, flags: int = 0) -> int:
        self.speeds.append(speed)
        if len(self.speeds) == 1:
            return 0        # the memory copy starts: the job's cap again
        self.speed = speed
        self.release.set()
        return 0

    def state(self, flags: int = 0):
        return [libvirt.VIR_DOMAIN_PAUSED if self.suspended else libvirt.VIR_DOMAIN_RUNNING, 1]

    def suspend(self) -> int:
        self.suspended = True
        return 0

    def resume(self) -> int:
        self.suspended = False
        return 0


def test_a_force_complete_during_the_disk_copy_stays_uncapped(conf):
    conf.set_override("live_migration_bandwidth", 1, "libvirt")
    domain = CappingDomain(UUID, domain_xml())
    drv = stub_driver(conf, "host1", StubConnection(), {UUID: domain})
    outcome = {}

    def migrate():
        try:
            drv.live_migration(INSTANCE, _data())
            outcome["result"] = "completed"
        except exception.MigrationError as exc:
            outcome["error"] = exc
    job = threading.Thread(target=migrate)
    job.start()
    assert domain.job_running.wait(5)
    drv.live_migration_force_complete(INSTANCE)
    job.join(15)
    assert outcome == {"result": "completed"}, outcome
    assert domain.speeds[:2] == [8192, 8192] and domain.speed == 8192


class _ScriptedJobDomain(StubDomain):
    """A domain whose job statistics are read from a script, one reading
    (or a libvirtError) a query; once the script is done the job is over
    and the guest has left (the domain is gone)."""

    def __init__(self, readings: list, domains: dict) -> None:
        super().__init__(UUID, domain_xml())
        self.readings, self.domains = list(readings), domains

    def jobStats(self, flags: int = 0) -> dict:
        if not self.readings:
            self.domains.pop(UUID, None)
            return {"type": libvirt.VIR_DOMAIN_JOB_NONE}
        reading = self.readings.pop(0)
        if isinstance(reading, libvirt.libvirtError):
            raise reading
        return reading


def test_an_agent_back_mid_migration_takes_no_single_reading_for_the_jobs_end(conf):
    """A stray reading of no job, or a query that fails, while libvirtd still
    runs the job: the restarted agent watches on (it took such a reading as
    the end once, and the flow rolled back the destination under the
    running job); the job's real end is reported, here the guest gone."""
    out = {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED,
           "operation": libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT}
    domains: dict = {}
    domain = domains[UUID] = _ScriptedJobDomain(
        [out, {"type": libvirt.VIR_DOMAIN_JOB_NONE}, out,
         error(libvirt.VIR_ERR_OPERATION_FAILED, "job busy"), out], domains)
    drv = stub_driver(conf, "host1", StubConnection(), domains)
    drv.live_migration_recover(INSTANCE)      # the guest left: no error
    assert not domain.readings and UUID not in domains


class _FailedJobDomain(StubDomain):
    """No job runs; libvirt kept the last one's failure."""

    def jobStats(self, flags: int = 0) -> dict:
        if flags & libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED:
            return {"type": libvirt.VIR_DOMAIN_JOB_FAILED,
                    "errmsg": "operation failed: job 'migration out' failed"}
        return {"type": libvirt.VIR_DOMAIN_JOB_NONE}


def test_a_job_that_failed_while_the_agent_was_down_is_reported_with_libvirts_reason(conf):
    domains: dict = {}
    domains[UUID] = _FailedJobDomain(UUID, domain_xml())
    drv = stub_driver(conf, "host1", StubConnection(), domains)
    with pytest.raises(exception.MigrationError,
                       match=r"while the source's compute agent was down \(libvirt: "
                             r"operation failed: job 'migration out' failed\); the guest "
                             r"runs there"):
        drv.live_migration_recover(INSTANCE)

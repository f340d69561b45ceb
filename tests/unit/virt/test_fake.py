"""What is particular to the fake driver: its knobs, and that what it keeps
in memory travels (disk data in snapshots and migrations, device names).
The driver contract (contract.py, run by test_contract_fake.py) covers what
every driver does."""

from __future__ import annotations

import subprocess

import pytest

from compute.virt import events, power_state
from compute.virt.fake import FakeDriver, fake_disk
from compute.virt.fake_migration import FakeFabric
from compute.virt.loader import load_driver
from compute.virt.migration import MigrateData
from flotilla import exception
from flotilla.objects import ImageMeta
from tests.unit.virt.conftest import make_instance
from tests.unit.virt.contract import EventLog, a_volume

IMAGE = ImageMeta(id="img-1", source="/nonexistent")


@pytest.fixture
def pair():
    fabric = FakeFabric()
    hosts = []
    for name in ("h1", "h2"):
        drv = FakeDriver(fabric=fabric)
        drv.init_host(name)
        hosts.append(drv)
    return hosts


def test_injected_failures_are_one_shot():
    drv = FakeDriver()
    a, b = make_instance(), make_instance()
    drv.inject_spawn_failure(a.uuid)
    drv.spawn(b, None)
    with pytest.raises(exception.InstanceDeployFailure):
        drv.spawn(a, None)
    drv.spawn(a, None)
    drv.inject_spawn_failure(exc=exception.ImageChecksumMismatch(
        image_id="i", actual="x", expected="y"))
    with pytest.raises(exception.ImageChecksumMismatch):
        drv.spawn(make_instance(), None)
    drv.inject_failure("power_off", exception.HypervisorUnavailable(
        uri="fake://", reason="down"))
    with pytest.raises(exception.HypervisorUnavailable):
        drv.power_off(a)
    assert drv.power_off(a) is True
    drv.inject_failure("live_migration", exception.MigrationError(
        instance_uuid=b.uuid, reason="injected"), b.uuid)
    with pytest.raises(exception.MigrationError, match="injected"):
        drv.live_migration(b, MigrateData(dest_host="nowhere"))
    assert ("spawn", a.uuid) in drv.calls and ("live_migration", b.uuid) in drv.calls


def test_external_transition_reports_or_not():
    drv = FakeDriver()
    log = EventLog()
    drv.register_event_listener(log)
    inst = make_instance()
    drv.spawn(inst, None)
    drv.external_transition(inst.uuid, events.STOPPED)
    assert drv.get_info(inst).power_state == power_state.SHUTDOWN
    drv.external_transition(inst.uuid, events.CRASHED, emit=False)
    assert drv.get_info(inst).power_state == power_state.CRASHED
    assert log.transitions(inst.uuid) == [events.STARTED, events.STOPPED]


def test_held_detach_waits_for_the_guest():
    drv = FakeDriver()
    log = EventLog()
    drv.register_event_listener(log)
    inst = make_instance()
    drv.spawn(inst, None)
    volume = a_volume()
    drv.attach_volume(inst, volume)
    drv.hold_detach(inst.uuid)
    assert drv.detach_volume(inst, volume.volume_id) is True
    assert drv.detach_volume(inst, volume.volume_id) is True   # asking again
    assert log.removed(inst.uuid) == []
    assert drv.get_volume_devices(inst) == {volume.volume_id: "vdb"}
    drv.hold_detach(inst.uuid, False)
    assert log.removed(inst.uuid) == [(volume.volume_id, "vdb")]
    assert drv.get_volume_devices(inst) == {}


def test_snapshot_holds_the_guest_disk(tmp_path):
    drv = FakeDriver()
    inst = make_instance()
    drv.spawn(inst, IMAGE)
    target = tmp_path / "snap.qcow2"
    drv.snapshot(inst, str(target))
    raw = tmp_path / "snap.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(target), str(raw)],
                   check=True)
    expected = fake_disk(IMAGE, inst)
    with open(raw, "rb") as f:
        assert f.read(len(expected) + 16) == expected + b"\0" * 16


def test_migrations_carry_the_disk_and_volume_names(pair):
    src, dst = pair
    inst = make_instance()
    src.spawn(inst, IMAGE)
    v1, v2 = a_volume(), a_volume()
    src.attach_volume(inst, v1, "vdc")
    src.attach_volume(inst, v2)
    data = dst.check_can_migrate_destination(inst, src.check_can_migrate_source(inst, True))
    assert data.volume_ids == tuple(sorted([v1.volume_id, v2.volume_id]))
    data = dst.pre_live_migration(inst, IMAGE, [v1, v2], data)
    src.live_migration(inst, data)
    dst.post_live_migration_at_destination(inst, data)
    src.post_live_migration(inst, data)
    assert dst.guests[inst.uuid].disk == fake_disk(IMAGE, inst)
    assert dst.get_volume_devices(inst) == {v1.volume_id: "vdc", v2.volume_id: "vdb"}
    # Cold back, without the second volume.
    data = src.check_can_migrate_destination(inst, dst.check_can_migrate_source(inst, False))
    dst.migrate_disk_and_power_off(inst, data)
    src.finish_migration(inst, IMAGE, [v1], data)
    assert src.guests[inst.uuid].disk == fake_disk(IMAGE, inst)
    assert src.get_volume_devices(inst) == {v1.volume_id: "vdc"}


def test_migration_to_an_unknown_host_fails_and_keeps_the_guest(pair):
    src, dst = pair
    inst = make_instance()
    src.spawn(inst, IMAGE)
    data = dst.check_can_migrate_destination(inst, src.check_can_migrate_source(inst, True))
    dst.pre_live_migration(inst, IMAGE, [], data)
    dst.cleanup_host()   # the destination went away
    with pytest.raises(exception.MigrationError, match="cannot be reached"):
        src.live_migration(inst, data)
    assert src.get_info(inst).power_state == power_state.RUNNING


def test_live_migration_refuses_an_unprepared_destination(pair):
    src, dst = pair
    inst = make_instance()
    src.spawn(inst, IMAGE)
    data = dst.check_can_migrate_destination(inst, src.check_can_migrate_source(inst, True))
    with pytest.raises(exception.MigrationError, match="not prepared"):
        src.live_migration(inst, data)
    assert src.find_guest(inst).running and not dst.find_guest(inst).defined


def test_cpu_mismatch_is_refused():
    fabric = FakeFabric()
    src, dst = FakeDriver(fabric=fabric), FakeDriver(fabric=fabric, cpu_model="other")
    src.init_host("h1")
    dst.init_host("h2")
    inst = make_instance()
    src.spawn(inst, IMAGE)
    data = src.check_can_migrate_source(inst, True)
    with pytest.raises(exception.MigrationPreCheckError, match="CPU"):
        dst.check_can_migrate_destination(inst, data)
    cold = src.check_can_migrate_source(inst, False)   # cold: any CPU will do
    assert dst.check_can_migrate_destination(inst, cold).dest_host == "h2"


def test_loader_sizes_the_fake_host_from_its_options(conf):
    conf.set_override("compute_driver", "fake", "compute")
    conf.set_override("memory_mb", 1600, "fake_driver")
    conf.set_override("vcpus", 32, "fake_driver")
    drv = load_driver(conf)
    drv.init_host("sized")
    resources = drv.get_available_resource()
    assert (resources["memory_mb"], resources["vcpus"], resources["disk_gb"]) == (1600, 32, 100)
    assert FakeDriver(memory_mb=512).get_available_resource()["memory_mb"] == 512
    drv.cleanup_host()

"""The driver contract (compute/virt/driver.py) as one reusable test class.

Every driver runs the same tests: the fake driver (test_contract_fake.py),
libvirt on ``test:///default`` (test_contract_libvirt.py) and libvirt on a
rig libvirtd with QEMU (tests/integration/virt/test_contract_rig.py).
Where a driver's capabilities say it cannot do something, the test checks
that every method of that feature raises NotSupported, and that is what the
test asserts for that driver: nothing is skipped.

Runners subclass :class:`DriverContract` and provide the fixtures

* ``driver``: a driver whose ``init_host`` ran; every guest it holds is
  destroyed after the test;
* ``image``: what ``spawn`` boots from (None where the driver needs none);
* ``console_marker``: ``f(driver, instance) -> str``, a text the guest's
  console output must contain (only for drivers with a console log);

and, only for drivers whose capabilities say they do these:

* ``peer_driver``: a driver on a second host that ``driver`` can migrate
  to and from;
* ``volume_connection``: ``f() -> VolumeConnection`` of a fresh volume the
  driver can attach;
* ``hold_migrations``: ``f(driver)``, a context manager in which live
  migrations from ``driver`` copy without ever converging;
* ``volume_host``: ``f(driver)``, the server of the volumes a driver that
  extends volumes or resumes guests after a volume's I/O error attaches:
  ``connection()`` a fresh volume; ``grow(volume_id, size_bytes)`` serves
  it at the larger size (what the volume host does before extend_volume);
  ``stop_serving(volume_id)`` its export goes away, and a running guest it
  was attached to just before makes a request (the tiny real guest writes
  its marker on a new disk), which pauses it; ``serve_again(volume_id)``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import threading
import uuid as uuidlib
from collections.abc import Callable

import pytest

from compute.virt import block_device, events, migration, power_state
from compute.virt.block_device import VolumeConnection
from compute.virt.driver import CAPABILITY_METHODS, ComputeDriver
from compute.virt.migration import MigrateData
from flotilla import exception
from flotilla.objects import BlockDeviceMapping, Instance
from tests.fixtures.waiting import wait_until

TIMEOUT = 30.0


def new_instance(uuid: str | None = None, memory_mb: int = 64, root_gb: int = 1,
                 **flavor) -> Instance:
    return Instance.from_record({
        "uuid": uuid or str(uuidlib.uuid4()), "name": "contract", "project_id": "p",
        "user_id": "u", "image_ref": "img",
        "flavor": dict(name="contract", memory_mb=memory_mb, vcpus=1,
                       root_gb=root_gb, **flavor)})


def a_volume(volume_id: str | None = None) -> VolumeConnection:
    return VolumeConnection(volume_id=volume_id or str(uuidlib.uuid4()),
                            export="contract", host="127.0.0.1", port=10809)


class EventLog:
    """A listener that keeps every event and lets a test wait for one."""

    def __init__(self) -> None:
        self.received: list[events.Event] = []
        self._cond = threading.Condition()

    def __call__(self, event: events.Event) -> None:
        with self._cond:
            self.received.append(event)
            self._cond.notify_all()

    def transitions(self, uuid: str) -> list[str]:
        with self._cond:
            return [e.transition for e in self.received
                    if isinstance(e, events.LifecycleEvent) and e.instance_uuid == uuid]

    def removed(self, uuid: str) -> list[tuple[str, str]]:
        with self._cond:
            return [(e.volume_id, e.device) for e in self.received
                    if isinstance(e, events.DeviceRemovedEvent)
                    and e.instance_uuid == uuid]

    def wait_for(self, predicate: Callable[[EventLog], bool], what: str,
                 timeout: float = TIMEOUT) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self), timeout):
                pytest.fail("timed out after %ss waiting for %s; received %s"
                            % (timeout, what, self.received))


def is_subsequence(want: list, seen: list) -> bool:
    remaining = iter(seen)
    return all(item in remaining for item in want)


def qemu_img(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True,
                          timeout=60)


# How to call each feature method when only NotSupported may come out: the
# instance does not exist, so NotSupported must come before that check.
def _feature_calls(inst: Instance) -> dict[str, Callable[[ComputeDriver], object]]:
    data = MigrateData(source_host="a", dest_host="b")
    return {
        "pause": lambda d: d.pause(inst),
        "unpause": lambda d: d.unpause(inst),
        "suspend": lambda d: d.suspend(inst),
        "resume": lambda d: d.resume(inst),
        "get_console_output": lambda d: d.get_console_output(inst),
        "attach_volume": lambda d: d.attach_volume(inst, a_volume()),
        "detach_volume": lambda d: d.detach_volume(inst, "v"),
        "get_volume_devices": lambda d: d.get_volume_devices(inst),
        "get_disk_devices": lambda d: d.get_disk_devices(inst),
        "extend_volume": lambda d: d.extend_volume(inst, "v", 2 ** 30),
    "resume_after_io_error": lambda d: d.resume_after_io_error(inst),
        "snapshot": lambda d: d.snapshot(inst, "/nonexistent/snapshot.qcow2"),
        "recover_snapshot": lambda d: d.recover_snapshot(inst),
        "pre_live_migration": lambda d: d.pre_live_migration(inst, None, [], data),
        "live_migration": lambda d: d.live_migration(inst, data),
        "live_migration_progress": lambda d: d.live_migration_progress(inst),
        "live_migration_abort": lambda d: d.live_migration_abort(inst),
        "live_migration_force_complete": lambda d: d.live_migration_force_complete(inst),
        "post_live_migration_at_destination":
            lambda d: d.post_live_migration_at_destination(inst, data),
        "post_live_migration": lambda d: d.post_live_migration(inst, data),
        "rollback_live_migration_at_destination":
            lambda d: d.rollback_live_migration_at_destination(inst, data),
        "migrate_disk_and_power_off": lambda d: d.migrate_disk_and_power_off(inst, data),
        "finish_migration": lambda d: d.finish_migration(inst, None, [], data),
        "confirm_migration": lambda d: d.confirm_migration(inst, data),
        "finish_revert_migration": lambda d: d.finish_revert_migration(inst, [], data),
        # The checks serve both kinds of migration: each kind's flag governs
        # them with its own ``live`` value.
        "check_can_migrate_source(live)": lambda d: d.check_can_migrate_source(inst, True),
        "check_can_migrate_destination(live)":
            lambda d: d.check_can_migrate_destination(inst, MigrateData(live=True)),
        "check_can_migrate_source(cold)": lambda d: d.check_can_migrate_source(inst, False),
        "check_can_migrate_destination(cold)":
            lambda d: d.check_can_migrate_destination(inst, MigrateData(live=False)),
    }


_CHECKS = {
    "supports_live_migration": ("check_can_migrate_source(live)",
                                "check_can_migrate_destination(live)"),
    "supports_cold_migration": ("check_can_migrate_source(cold)",
                                "check_can_migrate_destination(cold)"),
}


class DriverContract:
    """Each test gets a fresh driver (and peer) from the runner."""

    @pytest.fixture
    def event_log(self, driver):
        log = EventLog()
        driver.register_event_listener(log)
        yield log
        driver.register_event_listener(None)

    def unsupported(self, driver: ComputeDriver, flag: str) -> bool:
        """True, after checking that every method of the feature raises
        NotSupported, when ``driver`` says it lacks ``flag``."""
        if getattr(driver.capabilities, flag):
            return False
        calls = _feature_calls(new_instance())
        for name in CAPABILITY_METHODS[flag] + _CHECKS.get(flag, ()):
            with pytest.raises(exception.NotSupported):
                calls[name](driver)
        return True

    def spawn(self, driver, image, **flavor) -> Instance:
        inst = new_instance(**flavor)
        driver.spawn(inst, image)
        return inst

    @staticmethod
    def state(driver, inst) -> int:
        return driver.get_info(inst).power_state

    # --- capabilities ---------------------------------------------------------------

    @pytest.mark.parametrize("flag", sorted(CAPABILITY_METHODS))
    def test_capability_is_honest(self, driver, flag):
        """A feature a driver lacks raises NotSupported from every method,
        before any other check; one it has, it implements itself."""
        if self.unsupported(driver, flag):
            return
        for name in CAPABILITY_METHODS[flag]:
            mine = getattr(type(driver), name)
            assert mine is not getattr(ComputeDriver, name), \
                "%s says %s but inherits %s" % (type(driver).__name__, flag, name)

    # --- lifecycle ------------------------------------------------------------------

    def test_spawn_and_destroy(self, driver, image):
        inst = self.spawn(driver, image, memory_mb=96)
        info = driver.get_info(inst)
        assert info.power_state == power_state.RUNNING
        assert info.memory_mb == 96 and info.vcpus == 1
        assert inst.uuid in driver.list_instances()
        assert driver.find_guest(inst) == migration.GuestPresence(
            True, power_state.RUNNING, "")
        driver.destroy(inst)
        assert inst.uuid not in driver.list_instances()
        with pytest.raises(exception.InstanceNotFound):
            driver.get_info(inst)
        assert driver.find_guest(inst) == migration.GuestPresence(False)
        driver.destroy(inst)                 # idempotent
        driver.destroy(new_instance())       # never existed

    def test_recovering_a_migration_whose_job_is_gone(self, driver, image):
        """After an agent restart, a guest still running here with no job
        did not move: live_migration_recover says so."""
        inst = self.spawn(driver, image)
        if driver.capabilities.supports_live_migration:
            with pytest.raises(exception.MigrationError):
                driver.live_migration_recover(inst)
            assert driver.get_info(inst).power_state == power_state.RUNNING
        else:
            with pytest.raises(exception.NotSupported):
                driver.live_migration_recover(inst)
        driver.destroy(inst)

    def test_spawn_of_an_existing_uuid_is_refused(self, driver, image):
        inst = self.spawn(driver, image)
        with pytest.raises(exception.InstanceDeployFailure, match="exists"):
            driver.spawn(inst, image)
        assert self.state(driver, inst) == power_state.RUNNING

    def test_power_off_on_and_reboot(self, driver, image):
        inst = self.spawn(driver, image)
        assert driver.power_off(inst, timeout=0) is False   # plug pulled
        assert self.state(driver, inst) == power_state.SHUTDOWN
        assert driver.find_guest(inst) == migration.GuestPresence(
            True, power_state.SHUTDOWN, "")
        assert driver.power_off(inst) is False               # already off
        driver.power_on(inst)
        assert self.state(driver, inst) == power_state.RUNNING
        driver.power_on(inst)                                # already on
        for reboot_type in ("HARD", "SOFT"):
            driver.reboot(inst, reboot_type)
            assert self.state(driver, inst) == power_state.RUNNING
        driver.power_off(inst, timeout=0)
        driver.reboot(inst, "SOFT")                          # a stopped guest starts
        assert self.state(driver, inst) == power_state.RUNNING
        with pytest.raises(exception.Invalid):
            driver.reboot(inst, "GENTLE")

    def test_pause_and_suspend(self, driver, image):
        inst = self.spawn(driver, image)
        if not self.unsupported(driver, "supports_pause"):
            driver.pause(inst)
            assert self.state(driver, inst) == power_state.PAUSED
            driver.unpause(inst)
            assert self.state(driver, inst) == power_state.RUNNING
        if not self.unsupported(driver, "supports_suspend"):
            driver.suspend(inst)
            assert self.state(driver, inst) == power_state.SUSPENDED
            driver.suspend(inst)                             # already suspended
            driver.resume(inst)
            assert self.state(driver, inst) == power_state.RUNNING
            driver.power_off(inst, timeout=0)
            with pytest.raises(exception.Conflict):
                driver.suspend(inst)

    def test_lifecycle_events_in_order(self, driver, image, event_log):
        inst = self.spawn(driver, image)
        driver.pause(inst)
        driver.unpause(inst)
        driver.power_off(inst, timeout=0)
        want = [events.STARTED, events.PAUSED, events.RESUMED,
                events.STOPPED]
        event_log.wait_for(lambda log: is_subsequence(want, log.transitions(inst.uuid))
                        and log.transitions(inst.uuid)[-1] == events.STOPPED,
                        "events %s for %s" % (want, inst.uuid))

    def test_operations_on_a_missing_instance(self, driver):
        """What each method does for a guest this host does not have."""
        inst = new_instance()
        caps = driver.capabilities
        calls = _feature_calls(inst)
        not_found = [lambda d: d.reboot(inst), lambda d: d.power_off(inst),
                     lambda d: d.power_on(inst), lambda d: d.get_info(inst),
                     lambda d: d.get_diagnostics(inst)]
        features = {
            "supports_pause": ["pause", "unpause"],
            "supports_suspend": ["suspend", "resume"],
            "supports_console_log": ["get_console_output"],
            "supports_attach": ["attach_volume", "detach_volume", "get_volume_devices",
                                "get_disk_devices"],
            "supports_extend_volume": ["extend_volume"],
            "supports_volume_io_error_resume": ["resume_after_io_error"],
            "supports_snapshots": ["snapshot"],
            "supports_live_migration": ["check_can_migrate_source(live)", "live_migration",
                                        "post_live_migration_at_destination"],
            "supports_cold_migration": ["check_can_migrate_source(cold)",
                                        "migrate_disk_and_power_off",
                                        "finish_revert_migration"],
        }
        for flag, names in features.items():
            if getattr(caps, flag):
                not_found.extend(calls[name] for name in names)
        for call in not_found:
            with pytest.raises(exception.InstanceNotFound):
                call(driver)
        if caps.supports_live_migration:
            assert driver.live_migration_progress(inst) is None
            for name in ("live_migration_abort", "live_migration_force_complete"):
                with pytest.raises(exception.NoMigrationInProgress):
                    calls[name](driver)
            data = MigrateData(source_host="elsewhere")
            driver.post_live_migration(inst, data)              # idempotent
            driver.rollback_live_migration_at_destination(inst, data)
            # After an agent restart: a guest that is not here has left.
            driver.live_migration_recover(inst)
        if caps.supports_cold_migration:
            driver.confirm_migration(inst, MigrateData(live=False))  # idempotent
            with pytest.raises(exception.MigrationError):
                driver.finish_migration(inst, None, [], MigrateData(live=False))

    # --- inspection -----------------------------------------------------------------

    def test_console_output(self, driver, image, request):
        inst = self.spawn(driver, image)
        if self.unsupported(driver, "supports_console_log"):
            return
        marker = request.getfixturevalue("console_marker")(driver, inst)
        wait_until(lambda: marker in driver.get_console_output(inst), TIMEOUT,
                   "%r in the console output" % marker)

    def test_diagnostics_and_resources(self, driver, image):
        inst = self.spawn(driver, image)
        diag = driver.get_diagnostics(inst)
        assert diag["state"] == "running" and diag["vcpus"] == 1
        assert set(diag) >= {"cpu_time_ns", "memory_kb", "disks", "interfaces", "memory"}
        if driver.capabilities.supports_diagnostics:
            assert set(diag["disks"]["vda"]) >= {"read_bytes", "write_bytes",
                                                 "read_requests", "write_requests"}
        res = driver.get_available_resource()
        for key in ("vcpus", "memory_mb", "disk_gb", "vcpus_used", "memory_mb_used",
                    "disk_gb_used", "hypervisor_version"):
            assert isinstance(res[key], int) and res[key] >= 0, key
        assert res["vcpus_used"] >= 1 and res["memory_mb_used"] >= 64
        for key in ("hypervisor_type", "hypervisor_hostname", "cpu_arch"):
            assert isinstance(res[key], str) and res[key], key
        removed = driver.manage_image_cache()
        assert all(isinstance(path, str) for path in removed)

    # --- volumes --------------------------------------------------------------------

    def test_attach_and_detach_volumes(self, driver, image, event_log, request):
        if self.unsupported(driver, "supports_attach"):
            return
        make_volume = request.getfixturevalue("volume_connection")
        inst = self.spawn(driver, image)
        v1, v2, v3 = make_volume(), make_volume(), make_volume()
        assert driver.attach_volume(inst, v1) == "vdb"
        assert driver.attach_volume(inst, v1) == "vdb"       # idempotent
        assert driver.attach_volume(inst, v2, "vdd") == "vdd"
        assert driver.attach_volume(inst, v3) == "vdc"
        with pytest.raises(exception.DeviceNameUnavailable):
            driver.attach_volume(inst, make_volume(), "vdb")
        assert driver.get_volume_devices(inst) == {
            v1.volume_id: "vdb", v2.volume_id: "vdd", v3.volume_id: "vdc"}
        # Every disk's name, the root's too: what a reserved name avoids.
        taken = driver.get_disk_devices(inst)
        assert {"vda", "vdb", "vdc", "vdd"} <= taken and "vde" not in taken

        assert driver.detach_volume(inst, v1.volume_id) is True
        event_log.wait_for(lambda log: (v1.volume_id, "vdb") in log.removed(inst.uuid),
                        "the removal of vdb")
        assert driver.get_volume_devices(inst) == {v2.volume_id: "vdd",
                                                   v3.volume_id: "vdc"}
        assert driver.detach_volume(inst, v1.volume_id) is False  # gone already
        assert driver.attach_volume(inst, v1) == "vdb"       # the name is free again

        # A guest that does not run lets go at once, and says so.
        driver.power_off(inst, timeout=0)
        assert driver.detach_volume(inst, v2.volume_id) is True
        event_log.wait_for(lambda log: (v2.volume_id, "vdd") in log.removed(inst.uuid),
                        "the removal of vdd from a stopped guest")
        driver.power_on(inst)
        assert driver.get_volume_devices(inst) == {v1.volume_id: "vdb",
                                                   v3.volume_id: "vdc"}
        assert self.state(driver, inst) == power_state.RUNNING

    def test_extend_volume(self, driver, image, request):
        if self.unsupported(driver, "supports_extend_volume"):
            return
        host = request.getfixturevalue("volume_host")(driver)
        volume = host.connection()
        inst = self.spawn(driver, image)
        with pytest.raises(exception.VolumeAttachFailed):
            driver.extend_volume(inst, volume.volume_id, 2 * 2 ** 30)
        driver.attach_volume(inst, volume)
        host.grow(volume.volume_id, 2 * 2 ** 30)
        driver.extend_volume(inst, volume.volume_id, 2 * 2 ** 30)
        self.after_extend(driver, inst, volume, 2 * 2 ** 30)
        driver.extend_volume(inst, volume.volume_id, 2 * 2 ** 30)   # idempotent
        with pytest.raises(exception.Invalid):
            driver.extend_volume(inst, volume.volume_id, 2 ** 30)
        assert self.state(driver, inst) == power_state.RUNNING
        # A stopped guest takes the size when it starts: nothing to do now.
        driver.power_off(inst, timeout=0)
        host.grow(volume.volume_id, 3 * 2 ** 30)
        driver.extend_volume(inst, volume.volume_id, 3 * 2 ** 30)
        with pytest.raises(exception.VolumeAttachFailed):
            driver.extend_volume(inst, str(uuidlib.uuid4()), 3 * 2 ** 30)

    def after_extend(self, driver, inst, volume, size_bytes) -> None:
        """A runner whose guest has an OS checks here that it saw the size."""

    def test_resume_after_io_error(self, driver, image, event_log, request):
        if self.unsupported(driver, "supports_volume_io_error_resume"):
            return
        host = request.getfixturevalue("volume_host")(driver)
        inst = self.spawn(driver, image)
        assert driver.resume_after_io_error(inst) is False      # running
        volume = host.connection()
        driver.attach_volume(inst, volume)
        host.stop_serving(volume.volume_id)
        wait_until(lambda: self.state(driver, inst) == power_state.PAUSED, 60,
                   "the guest's pause on the volume's I/O error")
        event_log.wait_for(lambda log: any(
            isinstance(e, events.VolumeIOErrorEvent) and e.instance_uuid == inst.uuid
            and e.volume_id == volume.volume_id for e in log.received),
            "the volume's I/O error event")
        with pytest.raises(block_device.VolumeUnreachable):
            driver.resume_after_io_error(inst)
        assert self.state(driver, inst) == power_state.PAUSED
        host.serve_again(volume.volume_id)

        def resumed() -> bool:
            try:
                return driver.resume_after_io_error(inst)
            except block_device.VolumeUnreachable:
                return False       # its client connects on its own schedule
        wait_until(resumed, 60, "a resume once the volume answers")
        assert self.state(driver, inst) == power_state.RUNNING
        # A guest its user paused is never resumed here.
        driver.pause(inst)
        assert driver.resume_after_io_error(inst) is False
        assert self.state(driver, inst) == power_state.PAUSED
        driver.unpause(inst)

    # --- snapshot -------------------------------------------------------------------

    def assert_standalone_qcow2(self, result, path: str, virtual_size: int) -> None:
        assert result.path == path and result.disk_format == "qcow2"
        info = json.loads(qemu_img("info", "--output=json", path).stdout)
        assert info["format"] == "qcow2"
        assert "backing-filename" not in info and "full-backing-filename" not in info
        assert info["virtual-size"] == result.virtual_size_bytes == virtual_size
        assert result.size_bytes == os.path.getsize(path)
        check = qemu_img("check", path)
        assert check.returncode == 0, check.stdout + check.stderr

    def test_snapshot_running_and_stopped_guest(self, driver, image, event_log, tmp_path):
        if self.unsupported(driver, "supports_snapshots"):
            return
        inst = self.spawn(driver, image, root_gb=1)
        event_log.wait_for(lambda log: events.STARTED in log.transitions(inst.uuid),
                        "the guest's start")
        seen_before = len(event_log.transitions(inst.uuid))
        target = str(tmp_path / "running.qcow2")
        copied: list[int] = []
        result = driver.snapshot(inst, target,
                                 on_copied=lambda: copied.append(self.state(driver, inst)))
        self.assert_standalone_qcow2(result, target, 2 ** 30)
        assert copied == [power_state.RUNNING]      # once, the guest running
        assert self.state(driver, inst) == power_state.RUNNING
        # The guest was never paused: any PAUSED event of the snapshot comes
        # before the STOPPED of this power off.
        driver.power_off(inst, timeout=0)
        event_log.wait_for(lambda log: events.STOPPED in log.transitions(inst.uuid),
                        "the guest's stop")
        during = event_log.transitions(inst.uuid)[seen_before:]
        assert events.PAUSED not in during, during

        with pytest.raises(exception.Invalid):
            driver.snapshot(inst, target)                    # exists
        with pytest.raises(exception.Invalid):
            driver.snapshot(inst, str(tmp_path / "no" / "dir.qcow2"))
        stopped = str(tmp_path / "stopped.qcow2")
        self.assert_standalone_qcow2(driver.snapshot(inst, stopped), stopped, 2 ** 30)
        assert self.state(driver, inst) == power_state.SHUTDOWN
        assert sorted(os.listdir(tmp_path)) == ["running.qcow2", "stopped.qcow2"]
        # Nothing of a snapshot outlives it; recovering finds nothing to do.
        driver.recover_snapshot(inst)
        driver.recover_snapshot(new_instance())          # no such guest: no error
        assert self.state(driver, inst) == power_state.SHUTDOWN

    def test_snapshot_paused_and_suspended_guest(self, driver, image, tmp_path):
        if self.unsupported(driver, "supports_snapshots"):
            return
        inst = self.spawn(driver, image, root_gb=1)
        for name, enter, power in (("paused", driver.pause, power_state.PAUSED),
                                   ("suspended", driver.suspend, power_state.SUSPENDED)):
            if name == "suspended":
                driver.unpause(inst)
            enter(inst)
            target = str(tmp_path / ("%s.qcow2" % name))
            self.assert_standalone_qcow2(driver.snapshot(inst, target), target, 2 ** 30)
            assert self.state(driver, inst) == power, name
        driver.resume(inst)
        assert self.state(driver, inst) == power_state.RUNNING

    # --- rebuild --------------------------------------------------------------------

    def test_rebuild(self, driver, image):
        inst = self.spawn(driver, image)
        driver.rebuild(inst, image)
        assert self.state(driver, inst) == power_state.RUNNING
        driver.rebuild(inst, image, power_on=False)
        assert self.state(driver, inst) == power_state.SHUTDOWN
        driver.rebuild(inst, image)                      # a stopped guest starts
        assert self.state(driver, inst) == power_state.RUNNING
        assert driver.list_instances().count(inst.uuid) == 1
        ghost = new_instance()                           # its guest vanished: built anew
        driver.rebuild(ghost, image)
        assert self.state(driver, ghost) == power_state.RUNNING

    def test_rebuild_of_a_guest_booted_from_a_volume(self, driver, image, request):
        """A volume-backed rebuild (its root volume re-imaged by the volume
        host while the guest was off): no image, the same domain defined
        again around the same volumes, started unless asked not to."""
        if self.unsupported(driver, "supports_attach"):
            return
        make_volume = request.getfixturevalue("volume_connection")
        root = make_volume()
        bdm = [BlockDeviceMapping(source_type="volume", destination_type="volume",
                                  boot_index=0, volume_id=root.volume_id,
                                  device_name="vda", connection_info=root.to_dict())]
        inst = new_instance(root_gb=0)
        driver.spawn(inst, None, block_device_info=bdm)
        driver.power_off(inst, timeout=0)
        driver.rebuild(inst, None, power_on=True, block_device_info=bdm)
        assert self.state(driver, inst) == power_state.RUNNING
        assert driver.get_volume_devices(inst) == {root.volume_id: "vda"}
        driver.rebuild(inst, None, power_on=False, block_device_info=bdm)
        assert self.state(driver, inst) == power_state.SHUTDOWN
        assert driver.list_instances().count(inst.uuid) == 1

    # --- live migration -------------------------------------------------------------

    def migrate_checks(self, source, dest, inst, live: bool) -> MigrateData:
        data = source.check_can_migrate_source(inst, live)
        assert data.live is live and data.source_host and data.local_disks
        data = dest.check_can_migrate_destination(inst, data)
        assert data.dest_host and data.dest_host != data.source_host and data.dest_uri
        return data

    def test_live_migration_there_and_back(self, driver, image, event_log, request):
        if self.unsupported(driver, "supports_live_migration"):
            return
        peer = request.getfixturevalue("peer_driver")
        inst = self.spawn(driver, image)
        for source, dest in ((driver, peer), (peer, driver)):
            data = self.migrate_checks(source, dest, inst, live=True)
            data = dest.pre_live_migration(inst, image, [], data)
            assert data.dest_config
            source.live_migration(inst, data)
            dest.post_live_migration_at_destination(inst, data)
            dest.post_live_migration_at_destination(inst, data)   # idempotent
            source.post_live_migration(inst, data)
            source.post_live_migration(inst, data)                # idempotent
            assert source.find_guest(inst) == migration.GuestPresence(False)
            assert dest.find_guest(inst) == migration.GuestPresence(
                True, power_state.RUNNING, "")
            assert inst.uuid not in source.list_instances()
            assert inst.uuid in dest.list_instances()
            with pytest.raises(exception.Conflict):  # it arrived: never rolled back
                dest.rollback_live_migration_at_destination(inst, data)
        event_log.wait_for(lambda log: events.STOPPED in log.transitions(inst.uuid),
                        "the source's stop event")

    def test_live_migration_prechecks(self, driver, image, request):
        if self.unsupported(driver, "supports_live_migration"):
            return
        peer = request.getfixturevalue("peer_driver")
        inst = self.spawn(driver, image)
        data = driver.check_can_migrate_source(inst, True)
        with pytest.raises(exception.MigrationPreCheckError):
            driver.check_can_migrate_destination(inst, data)     # its own host
        driver.power_off(inst, timeout=0)
        with pytest.raises(exception.MigrationPreCheckError):
            driver.check_can_migrate_source(inst, True)          # not running
        other = self.spawn(peer, image)
        data = MigrateData(live=True, source_host="elsewhere",
                           guest_cpu=data.guest_cpu)
        with pytest.raises(exception.MigrationPreCheckError):
            peer.check_can_migrate_destination(other, data)      # there already

    def test_live_migration_of_a_guest_of_another_arch_is_refused(self, driver, image,
                                                                   request):
        """The destination checks the guest's architecture against what it
        runs (libvirt: its capabilities), naming it."""
        if self.unsupported(driver, "supports_live_migration"):
            return
        peer = request.getfixturevalue("peer_driver")
        inst = self.spawn(driver, image)
        data = driver.check_can_migrate_source(inst, True)
        assert data.guest.get("arch"), data.guest
        alien = dataclasses.replace(data, guest=dict(data.guest, arch="no-such-arch"))
        with pytest.raises(exception.MigrationPreCheckError, match="no-such-arch"):
            peer.check_can_migrate_destination(inst, alien)
        assert peer.check_can_migrate_destination(inst, data).dest_host

    def start_migration(self, source, dest, inst, image):
        data = self.migrate_checks(source, dest, inst, live=True)
        data = dest.pre_live_migration(inst, image, [], data)
        outcome: dict = {}

        def run():
            try:
                source.live_migration(inst, data)
                outcome["result"] = "completed"
            except Exception as exc:  # looked at by the test
                outcome["error"] = exc
        thread = threading.Thread(target=run)
        thread.start()
        progress = wait_until(lambda: source.live_migration_progress(inst),
                              TIMEOUT, "the migration job's progress")
        assert progress.memory_total_bytes > 0
        assert source.find_guest(inst).migration == migration.OUTGOING
        assert dest.find_guest(inst).migration == migration.INCOMING
        return data, thread, outcome

    def run_held_migration(self, driver, image, request, signal: str):
        """Spawn on ``driver``, start a live migration to the peer that does
        not converge, call ``driver.<signal>`` while it runs, and wait for
        the job to end."""
        peer = request.getfixturevalue("peer_driver")
        hold = request.getfixturevalue("hold_migrations")
        inst = self.spawn(driver, image)
        with hold(driver):
            data, thread, outcome = self.start_migration(driver, peer, inst, image)
            progress = driver.live_migration_progress(inst)
            print("held migration before %s: %s" % (signal, progress))
            getattr(driver, signal)(inst)
            thread.join(TIMEOUT)
        assert not thread.is_alive()
        return peer, inst, data, outcome

    def test_live_migration_abort(self, driver, image, request):
        if self.unsupported(driver, "supports_live_migration"):
            return
        peer, inst, data, outcome = self.run_held_migration(
            driver, image, request, "live_migration_abort")
        assert isinstance(outcome.get("error"), exception.MigrationAborted), outcome
        assert driver.find_guest(inst) == migration.GuestPresence(
            True, power_state.RUNNING, "")
        assert driver.live_migration_progress(inst) is None
        with pytest.raises(exception.NoMigrationInProgress):
            driver.live_migration_abort(inst)
        peer.rollback_live_migration_at_destination(inst, data)
        peer.rollback_live_migration_at_destination(inst, data)   # idempotent
        assert peer.find_guest(inst) == migration.GuestPresence(False)
        # The prepared destination is gone: a new migration starts afresh.
        data = self.migrate_checks(driver, peer, inst, live=True)
        assert peer.pre_live_migration(inst, image, [], data).dest_config

    def test_live_migration_force_complete(self, driver, image, request):
        if self.unsupported(driver, "supports_live_migration"):
            return
        peer, inst, data, outcome = self.run_held_migration(
            driver, image, request, "live_migration_force_complete")
        assert outcome == {"result": "completed"}
        peer.post_live_migration_at_destination(inst, data)
        driver.post_live_migration(inst, data)
        assert peer.find_guest(inst) == migration.GuestPresence(
            True, power_state.RUNNING, "")
        assert driver.find_guest(inst) == migration.GuestPresence(False)

    # --- cold migration and resize ------------------------------------------------------

    def cold_migrate(self, driver, image, request, root_gb: int = 1):
        """Spawn on ``driver`` and send its disk to the peer, powered off."""
        peer = request.getfixturevalue("peer_driver")
        inst = self.spawn(driver, image, root_gb=root_gb)
        data = self.migrate_checks(driver, peer, inst, live=False)
        data = driver.migrate_disk_and_power_off(inst, data, timeout=0)
        assert self.state(driver, inst) == power_state.SHUTDOWN
        return peer, inst, data

    def resize(self, driver, image, request, power_on: bool):
        """A resize of a new guest to 96 MiB and a 2 GB root, on the peer."""
        peer, inst, data = self.cold_migrate(driver, image, request)
        bigger = new_instance(inst.uuid, memory_mb=96, root_gb=2)
        peer.finish_migration(bigger, image, [], data, power_on=power_on)
        return peer, inst, bigger, data

    def test_resize_and_confirm(self, driver, image, request):
        if self.unsupported(driver, "supports_cold_migration"):
            return
        peer, inst, bigger, data = self.resize(driver, image, request, power_on=True)
        info = peer.get_info(bigger)
        assert info.power_state == power_state.RUNNING and info.memory_mb == 96
        driver.confirm_migration(inst, data)
        driver.confirm_migration(inst, data)                 # idempotent
        assert driver.find_guest(inst) == migration.GuestPresence(False)
        assert peer.find_guest(bigger).running

    def test_resize_and_revert(self, driver, image, request):
        if self.unsupported(driver, "supports_cold_migration"):
            return
        peer, inst, bigger, data = self.resize(driver, image, request, power_on=False)
        assert peer.get_info(bigger).power_state == power_state.SHUTDOWN
        peer.destroy(bigger)
        driver.finish_revert_migration(inst, [], data, power_on=True)
        driver.finish_revert_migration(inst, [], data, power_on=True)   # idempotent
        info = driver.get_info(inst)
        assert info.power_state == power_state.RUNNING and info.memory_mb == 64
        assert peer.find_guest(inst) == migration.GuestPresence(False)
        with pytest.raises(exception.Conflict):   # reverted: nothing to confirm
            driver.confirm_migration(inst, data)

    def test_cold_migration_keeps_the_volumes(self, driver, image, request):
        """The destination defines the guest with the same exports on the
        same devices; a revert gives the source its guest with them."""
        if self.unsupported(driver, "supports_cold_migration") \
                or self.unsupported(driver, "supports_attach"):
            return
        make_volume = request.getfixturevalue("volume_connection")
        peer, inst = request.getfixturevalue("peer_driver"), self.spawn(driver, image)
        volume = make_volume()
        device = driver.attach_volume(inst, volume)
        bdm = BlockDeviceMapping(source_type="volume", destination_type="volume",
                                 volume_id=volume.volume_id, device_name=device,
                                 connection_info=volume.to_dict())
        data = self.migrate_checks(driver, peer, inst, live=False)
        assert data.volume_ids == (volume.volume_id,)
        data = driver.migrate_disk_and_power_off(inst, data, timeout=0)
        peer.finish_migration(inst, image, [bdm], data, power_on=True)
        assert peer.get_volume_devices(inst) == {volume.volume_id: device}
        assert self.state(peer, inst) == power_state.RUNNING
        peer.cleanup_migration_at_destination(inst, data)
        driver.finish_revert_migration(inst, [bdm], data, power_on=True)
        assert driver.get_volume_devices(inst) == {volume.volume_id: device}
        assert self.state(driver, inst) == power_state.RUNNING
        assert peer.find_guest(inst) == migration.GuestPresence(False)

    def same_host_resize(self, driver, image, power_on: bool = True):
        """A resize to 96 MiB and a 2 GB root on the guest's own host."""
        inst = self.spawn(driver, image)
        data = driver.check_can_migrate_source(inst, False)
        with pytest.raises(exception.MigrationPreCheckError):
            driver.check_can_migrate_destination(inst, data)   # not allowed by default
        data = driver.check_can_migrate_destination(
            inst, dataclasses.replace(data, same_host=True))
        assert data.dest_host == data.source_host
        data = driver.migrate_disk_and_power_off(inst, data, timeout=0)
        bigger = new_instance(inst.uuid, memory_mb=96, root_gb=2)
        driver.finish_migration(bigger, image, [], data, power_on=power_on)
        info = driver.get_info(bigger)
        assert info.memory_mb == 96
        assert info.power_state == (power_state.RUNNING if power_on
                                    else power_state.SHUTDOWN)
        return inst, bigger, data

    def test_same_host_resize_and_confirm(self, driver, image):
        if self.unsupported(driver, "supports_cold_migration"):
            return
        inst, bigger, data = self.same_host_resize(driver, image)
        driver.confirm_migration(inst, data)
        driver.confirm_migration(inst, data)                 # idempotent
        info = driver.get_info(bigger)
        assert info.power_state == power_state.RUNNING and info.memory_mb == 96
        # Nothing is kept any more: a new move may start.
        assert driver.check_can_migrate_source(bigger, False).source_host

    def test_same_host_resize_and_revert(self, driver, image):
        if self.unsupported(driver, "supports_cold_migration"):
            return
        inst, bigger, data = self.same_host_resize(driver, image)
        driver.cleanup_migration_at_destination(bigger, data)
        driver.cleanup_migration_at_destination(bigger, data)    # idempotent
        driver.finish_revert_migration(inst, [], data, power_on=True)
        driver.finish_revert_migration(inst, [], data, power_on=True)   # idempotent
        info = driver.get_info(inst)
        assert info.power_state == power_state.RUNNING and info.memory_mb == 64
        assert driver.check_can_migrate_source(inst, False).source_host

    def test_a_server_deleted_during_a_same_host_resize_leaves_nothing(self, driver,
                                                                        image):
        """Deleted in VERIFY_RESIZE: the resized guest and the original kept
        for a revert both go."""
        if self.unsupported(driver, "supports_cold_migration"):
            return
        inst, bigger, _data = self.same_host_resize(driver, image)
        driver.destroy(bigger)
        assert inst.uuid not in driver.list_instances()
        if getattr(driver, "real_disks", False):
            directory = driver.instance_dir(inst)
            assert not os.path.exists(directory)
            assert not os.path.exists(directory + "_resize")

    def test_a_same_host_revert_before_the_copy_keeps_the_original(self, driver, image):
        """A failure before the original stepped aside: the destination's
        cleanup (the same host) must not remove it."""
        if self.unsupported(driver, "supports_cold_migration"):
            return
        inst = self.spawn(driver, image)
        data = driver.check_can_migrate_destination(inst, dataclasses.replace(
            driver.check_can_migrate_source(inst, False), same_host=True))
        driver.cleanup_migration_at_destination(inst, data)
        driver.finish_revert_migration(inst, [], data, power_on=True)
        assert self.state(driver, inst) == power_state.RUNNING

    def test_resize_never_shrinks_the_root_disk(self, driver, image, request):
        if self.unsupported(driver, "supports_cold_migration"):
            return
        peer, inst, data = self.cold_migrate(driver, image, request, root_gb=2)
        with pytest.raises(exception.Invalid):
            peer.finish_migration(new_instance(inst.uuid, root_gb=1), image, [], data)
        assert peer.find_guest(inst) == migration.GuestPresence(False)
        peer.finish_migration(inst, image, [], data)        # the same size is fine
        assert peer.find_guest(inst).running


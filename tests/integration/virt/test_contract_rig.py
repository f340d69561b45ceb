"""The driver contract on a rig host's libvirtd with QEMU (TCG).

The guests are no-OS guests on the empty image (they sit in the BIOS), so
ACPI is ignored: a soft reboot falls back to a hard one after a short
timeout. Volumes need a guest OS that lets go of a detached disk: their
test runs the tiny real guest, booted, with real NBD exports of a
qemu-storage-daemon (``volume_connection``). Live migrations go to the
rig's second host (``peer_driver``); ``hold_migrations`` throttles them to
1 MiB/s so they last long enough to abort or force. Cold migration is not
done in libvirt yet: the contract checks that it raises
NotSupported.
"""

from __future__ import annotations

import contextlib
import os
import uuid as uuidlib

import pytest

from compute.virt.block_device import VolumeConnection
from compute.virt.libvirt.driver import LibvirtDriver
from tests.fixtures.ports import free_port
from tests.unit.virt.contract import DriverContract


class _Conf:
    def __init__(self, root: str, port: int) -> None:
        import types
        self.volume = types.SimpleNamespace(run_path=root, nbd_host="127.0.0.1",
                                            nbd_port=port,
                                            storage_daemon="qemu-storage-daemon")


class TestRigLibvirtContract(DriverContract):
    @pytest.fixture
    def driver(self, driver, conf):
        # tests/integration/virt/conftest.py's driver, with short ACPI waits.
        conf.set_override("reboot_timeout", 2, "compute")
        conf.set_override("shutdown_retry_interval", 1, "compute")
        return driver

    @pytest.fixture
    def image(self, empty_image):
        return empty_image

    @pytest.fixture
    def console_marker(self, rig_host):
        """A line written into the guest's serial log file, as the guest's
        serial port writes there (a no-OS guest prints nothing itself)."""
        def write(driver, inst):
            marker = "contract-marker-%s" % uuidlib.uuid4().hex
            path = os.path.join(rig_host["instances_path"], inst.uuid, "console.log")
            with open(path, "a") as f:
                f.write(marker + "\n")
            return marker
        return write

    @pytest.fixture
    def volume_connection(self, tmp_path):
        """Fresh 64 MiB raw volumes exported by a qemu-storage-daemon of the
        test's own (volume/nbd.py), stopped afterwards."""
        from volume.nbd import StorageDaemon
        port = free_port()
        daemon = StorageDaemon(_Conf(str(tmp_path / "qsd"), port))
        made: list[str] = []

        def make() -> VolumeConnection:
            volume_id = str(uuidlib.uuid4())
            path = tmp_path / ("%s.raw" % volume_id)
            with open(path, "wb") as f:
                f.truncate(64 << 20)
            made.append(volume_id)
            return VolumeConnection.from_dict(daemon.export(volume_id, str(path)))
        yield make
        for volume_id in made:
            daemon.unexport(volume_id)
        assert daemon.stop_if_idle()

    @pytest.fixture
    def volume_host(self, tmp_path):
        """Volumes of a qemu-storage-daemon of the test's own, as the volume
        service serves them (volume/nbd.py): grown with grow_export; out of
        service by removing the export (the node stays)."""
        from volume.nbd import StorageDaemon, export_id
        from volume.qmp import QMP
        port = free_port()
        daemon = StorageDaemon(_Conf(str(tmp_path / "qsd-x"), port))
        made: dict[str, str] = {}

        class Host:
            def __init__(self, driver) -> None:
                self.driver = driver

            def connection(self) -> VolumeConnection:
                volume_id = str(uuidlib.uuid4())
                path = str(tmp_path / ("%s.raw" % volume_id))
                with open(path, "wb") as f:
                    f.truncate(64 << 20)
                made[volume_id] = path
                return VolumeConnection.from_dict(daemon.export(volume_id, path))

            def grow(self, volume_id: str, size_bytes: int) -> None:
                daemon.grow_export(volume_id, made[volume_id], size_bytes)

            def stop_serving(self, volume_id: str) -> None:
                qmp = QMP(daemon.socket_path)
                try:
                    qmp.execute("block-export-del", id=export_id(volume_id), mode="hard")
                finally:
                    qmp.close()

            def serve_again(self, volume_id: str) -> None:
                daemon.export(volume_id, made[volume_id])
        yield Host
        for volume_id in made:
            daemon.unexport(volume_id)
        assert daemon.stop_if_idle()

    def _boot_real_guest(self, guest_image):
        from tests.fixtures.waiting import wait_until
        spawn = DriverContract.spawn

        def booted_spawn(this, drv, img, **flavor):
            inst = spawn(this, drv, img, memory_mb=guest_image["min_ram_mb"] + 16)
            wait_until(lambda: guest_image["partitions_marker"] in
                       drv.get_console_output(inst), 90, "the guest's boot")
            self.booted = inst
            return inst
        self.spawn = booted_spawn.__get__(self)
        return {"id": "flotilla-guest-%s" % guest_image["sha256"][:12],
                "source": guest_image["image"], "sha256": guest_image["sha256"]}

    # The held migrations run on the booted real guest: its memory (kernel,
    # unpacked initramfs) takes many seconds at the hold's 1 MiB/s and it
    # keeps dirtying pages. A no-OS guest has a few hundred KiB that are
    # not zero, gone in under a second: the migration could end before
    # the abort or force-complete reached it.
    def test_live_migration_abort(self, driver, guest_image, request):
        super().test_live_migration_abort(driver, self._boot_real_guest(guest_image), request)

    def test_live_migration_force_complete(self, driver, guest_image, request):
        super().test_live_migration_force_complete(
            driver, self._boot_real_guest(guest_image), request)

    def test_extend_volume(self, driver, guest_image, request):
        """On the real guest: it prints the new size (its kernel saw the
        capacity change) and no I/O error."""
        from tests.fixtures.waiting import wait_until
        image = self._boot_real_guest(guest_image)

        def saw(drv, inst, volume, size_bytes):
            wait_until(lambda: "%s vdb %d" % (guest_image["disk_size_marker"], size_bytes)
                       in drv.get_console_output(inst), 30, "the guest's new size")
        self.after_extend = saw
        super().test_extend_volume(driver, image, request)
        assert "I/O error" not in driver.get_console_output(self.booted)

    def test_resume_after_io_error(self, driver, guest_image, event_log, request):
        """The real guest's marker write on the new disk, made while the
        export was away, paused it; resumed, the write completes: the
        marker is written and the guest saw no I/O error."""
        from tests.fixtures.waiting import wait_until
        image = self._boot_real_guest(guest_image)
        super().test_resume_after_io_error(driver, image, event_log, request)
        inst = self.booted
        wait_until(lambda: "%s vdb written %s" % (guest_image["disk_marker"], inst.uuid)
                   in driver.get_console_output(inst), 30, "the guest's marker")
        assert "I/O error" not in driver.get_console_output(inst)

    def test_attach_and_detach_volumes(self, driver, guest_image, event_log, request,
                                       conf):
        from tests.fixtures.waiting import wait_until
        image = {"id": "flotilla-guest-%s" % guest_image["sha256"][:12],
                 "source": guest_image["image"], "sha256": guest_image["sha256"]}
        spawn = DriverContract.spawn

        def booted_spawn(this, drv, img, **flavor):
            # The real guest, booted (its OS answers the unplug requests).
            inst = spawn(this, drv, img, memory_mb=guest_image["min_ram_mb"] + 16)
            wait_until(lambda: guest_image["partitions_marker"] in
                       drv.get_console_output(inst), 90, "the guest's boot")
            return inst
        self.spawn = booted_spawn.__get__(self)
        super().test_attach_and_detach_volumes(driver, image, event_log, request)

    @pytest.fixture
    def peer_driver(self, conf, rig_host2):
        drv = LibvirtDriver(conf, connection_uri=rig_host2["uri"],
                            instances_path=rig_host2["instances_path"])
        drv.init_host(rig_host2["name"])
        yield drv
        for uuid in drv.list_instances():
            drv.destroy({"uuid": uuid, "flavor": {"memory_mb": 64}})
        drv.manage_image_cache()
        drv.cleanup_host()

    @pytest.fixture
    def hold_migrations(self, conf):
        @contextlib.contextmanager
        def hold(driver):
            # 1 MiB/s: the 64 MiB guest needs a minute; the test aborts or
            # forces it well before.
            conf.set_override("live_migration_bandwidth", 1, "libvirt")
            try:
                yield
            finally:
                conf.clear_override("live_migration_bandwidth", "libvirt")
        return hold

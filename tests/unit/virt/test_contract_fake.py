"""The driver contract on the fake driver (compute/virt/fake.py)."""

from __future__ import annotations

import contextlib

import pytest

from compute.virt.fake import FakeDriver
from compute.virt.fake_migration import FakeFabric
from flotilla.objects import ImageMeta
from tests.unit.virt.contract import DriverContract, a_volume


@pytest.fixture
def fabric():
    return FakeFabric()


def _driver(fabric, host):
    drv = FakeDriver(fabric=fabric)
    drv.init_host(host)
    return drv


class TestFakeDriverContract(DriverContract):
    @pytest.fixture
    def driver(self, fabric):
        drv = _driver(fabric, "fake-host1")
        yield drv
        for uuid in drv.list_instances():
            drv.destroy({"uuid": uuid, "flavor": {"memory_mb": 64}})
        drv.cleanup_host()

    @pytest.fixture
    def peer_driver(self, fabric):
        drv = _driver(fabric, "fake-host2")
        yield drv
        drv.cleanup_host()

    @pytest.fixture
    def image(self):
        return ImageMeta(id="contract-image", source="/nonexistent/image.qcow2")

    @pytest.fixture
    def console_marker(self):
        return lambda driver, inst: "flotilla fake guest %s booted" % inst.uuid

    @pytest.fixture
    def volume_connection(self):
        return a_volume

    @pytest.fixture
    def volume_host(self):
        class Host:
            def __init__(self, driver) -> None:
                self.driver = driver

            def connection(self):
                return a_volume()

            def grow(self, volume_id, size_bytes):
                pass            # the fake's guests read no export

            def stop_serving(self, volume_id):
                self.driver.volume_outage(volume_id)

            def serve_again(self, volume_id):
                self.driver.volume_back(volume_id)
        return Host

    @pytest.fixture
    def hold_migrations(self):
        @contextlib.contextmanager
        def hold(driver):
            driver.hold_migrations(True)
            try:
                yield
            finally:
                driver.hold_migrations(False)
        return hold

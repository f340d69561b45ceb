"""Functional tier: every service in one process (memory://, SQLite)."""

from __future__ import annotations

import pytest

from compute.virt.fake import FakeDriver
from tests.fixtures.cloud import InProcessCloud


@pytest.fixture
def fake_cloud(conf):
    """Conductor + two compute agents (host1, host2) on the fake driver."""
    conf.set_override("compute_driver", "fake", group="compute")
    cloud = InProcessCloud(conf, ["host1", "host2"], lambda host: FakeDriver())
    yield cloud
    cloud.stop()


@pytest.fixture
def libvirt_test_cloud(conf, tmp_path):
    """Conductor + one compute agent on libvirt's test:///default driver."""
    from compute.virt.libvirt.driver import LibvirtDriver
    conf.set_override("connection_uri", "test:///default", group="libvirt")
    conf.set_override("instances_path", str(tmp_path / "instances"), group="libvirt")
    cloud = InProcessCloud(conf, ["lvhost"], lambda host: LibvirtDriver(conf))
    yield cloud
    cloud.stop()

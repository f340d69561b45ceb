"""The build flow onto libvirt's test:///default driver (no daemon)."""

from __future__ import annotations

import pytest

from flotilla import states as st
from flotilla.db import api as db
from tests.fixtures.scheduling import SchedulingCloud, events

HOSTS = ["lv1", "lv2", "lv3"]


@pytest.fixture
def libvirt_cloud(conf, tmp_path):
    from compute.virt.libvirt.driver import LibvirtDriver
    conf.set_override("connection_uri", "test:///default", group="libvirt")

    def make(host):
        conf.set_override("instances_path", str(tmp_path / host), group="libvirt")
        return LibvirtDriver(conf)

    cloud = SchedulingCloud(conf, HOSTS, make)
    yield cloud
    cloud.stop()


def test_build_and_delete_on_test_default_hosts(libvirt_cloud):
    cloud = libvirt_cloud
    _, uuids = cloud.boot_servers(3)
    insts = cloud.wait_settled(uuids)
    assert {i["vm_state"] for i in insts} == {st.ACTIVE}, [
        f.message for u in uuids for f in db.instance_fault_get_all(u)]
    for inst in insts:
        assert inst["host"] in HOSTS
        assert ("create", "compute_create_instance", "Success", inst["host"]) in events(
            inst["uuid"])
        cloud.conductor.delete_instance(cloud.ctxt, inst["uuid"])
    for inst in insts:
        cloud.wait_for(inst["uuid"], lambda i: i["deleted"]
                       and not db.allocation_get_by_consumer(i["uuid"]), read_deleted=True)

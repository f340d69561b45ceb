"""A read-only volume (os-update_readonly_flag) through the attach flow in
one process (conductor, compute agents on the fake driver, the volume
service on in-memory stand-ins): the volume service exports it read-only
(the export itself, not only the connection's ``read_only``), the conductor sends the attach at compute RPC 1.13, the
agent gets the read-only connection, whose libvirt disk (what the libvirt
driver's attach sends; libvirt's test:///default driver cannot attach
volumes) has ``<readonly/>``; the attachment keeps the connection and
shows attach_mode ``ro``. A writable volume's disk has no ``<readonly/>``;
an agent capped below 1.13 is never sent a read-only attach."""

from __future__ import annotations

import pytest

from api.volume import attachments as attachment_views
from compute.virt.libvirt import xml
from flotilla import states as st
from flotilla.conf import libvirt as libvirt_conf
from flotilla.db import volumes as vdb
from tests.functional.volume.test_volume_flows import (
    _attach,
    _volume,
    _wait_status,
    start_volume_service,
)


@pytest.fixture
def cloud(fake_cloud, conf):
    conf.set_override("detach_timeout", 1, group="volume")
    svc = start_volume_service(conf, fake_cloud)
    yield fake_cloud
    svc.stop(grace=5)


def test_a_read_only_volume_is_attached_read_only(cloud):
    inst = cloud.boot("host1")
    ro, rw = _volume(cloud), _volume(cloud)
    vdb.volume_update(ro, {"readonly": True}, expected_status=st.VOLUME_AVAILABLE)
    for vid in (ro, rw):
        _attach(cloud, inst["uuid"], vid)
        _wait_status(vid, st.VOLUME_IN_USE)
    guest = cloud.drivers["host1"].guests[inst["uuid"]]
    renderer = xml.DomainRenderer(libvirt_conf._PACKAGED_TEMPLATES)
    disks = {vid: renderer.render_disk(xml.DiskSpec.for_volume(connection, device))
             for vid, (device, connection) in guest.volumes.items()}
    assert guest.volumes[ro][1].read_only is True
    assert disks[ro].find("readonly") is not None
    assert guest.volumes[rw][1].read_only is False
    assert disks[rw].find("readonly") is None
    attached = {a.volume_id: a for a in vdb.attachments_of_instance(inst["uuid"])}
    assert attached[ro].connection_info["read_only"] is True
    assert attachment_views.view(attached[ro], True, False)["attach_mode"] == "ro"
    assert attachment_views.view(attached[rw], True, False)["attach_mode"] == "rw"
    assert cloud.daemon.read_only == {ro}


def test_an_agent_capped_below_1_13_is_not_sent_a_read_only_attach(cloud, conf):
    """The API refuses the attach first (409); a flag set since then meets
    the conductor's cap: the attach fails and the volume is available
    again, never plugged writable."""
    conf.set_override("compute", "1.12", group="upgrade_levels")
    inst = cloud.boot("host1")
    vid = _volume(cloud)
    vdb.volume_update(vid, {"readonly": True}, expected_status=st.VOLUME_AVAILABLE)
    _attach(cloud, inst["uuid"], vid)
    row = _wait_status(vid, st.VOLUME_AVAILABLE)
    assert vdb.attachments_of_volume(row.id) == []
    assert vid not in cloud.drivers["host1"].guests[inst["uuid"]].volumes

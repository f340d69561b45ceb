"""conductor/flows/volume.attached_volumes(): what another host (a live or
cold migration's destination, an evacuation's, a rebuild) defines the guest
with. An attachment without its connection (an attach or detach under way
that began after the API let the move start) is an error naming the
volume, never silently left out of the new definition."""

from __future__ import annotations

import pytest

from conductor.flows import volume as volume_flows
from conductor.flows.live_migrate import LiveMigrateState, PrepareDestination
from flotilla import exception
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import volumes as vdb

CONNECTION = {"export": "e", "host": "vol1", "port": 10809}


def _volume(instance: str, attached: bool) -> tuple[str, str]:
    volume = vdb.volume_create({"size_gb": 1, "status": st.VOLUME_IN_USE,
                                "project_id": "p1", "host": "vol1"},
                               {"volumes": -1, "gigabytes": -1})
    attachment = vdb.attachment_create(volume.id, instance, "h1")
    if attached:
        vdb.attachment_update(attachment.uuid, {
            "status": "attached", "device": "vdb",
            "connection_info": dict(CONNECTION, volume_id=volume.id)})
    return volume.id, attachment.uuid


def test_settled_attachments_are_mapped(instance):
    vid, aid = _volume(instance, attached=True)
    [bdm] = volume_flows.attached_volumes(instance)
    assert (bdm.volume_id, bdm.attachment_id, bdm.device_name) == (vid, aid, "vdb")
    assert bdm.connection_info["volume_id"] == vid


def test_an_attachment_without_connection_is_an_error_naming_it(instance):
    _volume(instance, attached=True)
    vid, aid = _volume(instance, attached=False)
    with pytest.raises(exception.VolumeNotSettled) as caught:
        volume_flows.attached_volumes(instance)
    assert vid in str(caught.value) and aid in str(caught.value)
    assert "attaching" in str(caught.value)
    assert caught.value.code == 409


class _Compute:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pre_live_migration(self, *args, **kwargs):
        self.calls.append("pre_live_migration")
        return {}


def test_a_live_migration_does_not_prepare_a_destination_without_the_volume(instance):
    """The destination is never asked to define the guest without it: the
    step fails (and the flow reverts) before the cast."""
    _volume(instance, attached=False)
    compute = _Compute()
    state = LiveMigrateState(RequestContext(), instance, migration_uuid="m-1",
                             source="h1", dest="h2")
    with pytest.raises(exception.VolumeNotSettled):
        PrepareDestination(compute).execute(state)
    assert compute.calls == []

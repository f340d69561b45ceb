"""Which conductor RPC version build_instances needs for its volume
mappings: 1.8, 1.12 with a blank one, 1.13 with one from a volume snapshot
(an older conductor would take it for an existing volume)."""

from __future__ import annotations

import pytest

from conductor.manager import ConductorManager
from conductor.rpcapi import ConductorAPI
from flotilla.context import RequestContext
from flotilla.objects import BlockDeviceMapping, Flavor, ImageMeta, RequestSpec
from tests.unit.test_rpcapi import _client


def _mapping(source: str) -> BlockDeviceMapping:
    return BlockDeviceMapping(source_type=source, destination_type="volume",
                              boot_index=None, volume_size=1,
                              snapshot_id="s" if source == "snapshot" else None,
                              volume_id="v" if source == "volume" else None)


@pytest.mark.parametrize("sources, version", [
    (["volume"], "1.8"), (["volume", "blank"], "1.12"), (["blank", "snapshot"], "1.13")])
def test_build_instances_sends_the_version_its_mappings_need(sources, version):
    api, driver = _client(ConductorAPI, ConductorManager, "conductor", None)
    api.build_instances(RequestContext(request_id="req-1"), ["u"],
                        RequestSpec(flavor=Flavor(memory_mb=64), image=ImageMeta(id="i")),
                        None, block_device_mapping=[_mapping(s) for s in sources])
    assert driver.sent == [("build_instances", version)]


def test_can_build_volumes_follows_the_cap():
    capped, _driver = _client(ConductorAPI, ConductorManager, "conductor", "1.12")
    assert capped.can_build_volumes(blank=True)
    assert not capped.can_build_volumes(blank=True, snapshot=True)
    current, _driver = _client(ConductorAPI, ConductorManager, "conductor", None)
    assert current.can_build_volumes(snapshot=True)

from __future__ import annotations

import pytest

from compute.virt import events, power_state
from flotilla import exception
from tests.fixtures.fake_virt import FakeDriver
from tests.unit.virt.conftest import make_instance


def test_fake_driver_lifecycle():
    drv = FakeDriver()
    seen = []
    drv.register_event_listener(seen.append)
    drv.init_host("h")
    inst = make_instance()
    drv.spawn(inst, None)
    assert drv.list_instances() == [inst.uuid]
    drv.pause(inst)
    assert drv.get_info(inst).power_state == power_state.PAUSED
    with pytest.raises(exception.Conflict):
        drv.pause(inst)
    drv.unpause(inst)
    drv.suspend(inst)
    drv.resume(inst)
    assert drv.power_off(inst) is True
    drv.power_on(inst)
    drv.reboot(inst, "HARD")
    assert "booted" in drv.get_console_output(inst)
    assert drv.get_available_resource()["vcpus_used"] == 1
    drv.destroy(inst)
    drv.destroy(inst)
    assert drv.list_instances() == []
    assert [e.transition for e in seen] == [
        events.STARTED, events.PAUSED, events.RESUMED, events.SUSPENDED,
        events.STARTED, events.STOPPED, events.STARTED, events.STARTED,
        events.STOPPED]
    with pytest.raises(exception.InstanceNotFound):
        drv.get_info(inst)


def test_fake_driver_injected_failures():
    drv = FakeDriver()
    a, b = make_instance(), make_instance()
    drv.inject_spawn_failure(a.uuid)
    drv.spawn(b, None)
    with pytest.raises(exception.InstanceDeployFailure):
        drv.spawn(a, None)
    drv.spawn(a, None)  # one shot
    drv.inject_spawn_failure(exc=exception.ImageChecksumMismatch(
        image_id="i", actual="x", expected="y"))
    with pytest.raises(exception.ImageChecksumMismatch):
        drv.spawn(make_instance(), None)
    drv.inject_failure("power_off", exception.HypervisorUnavailable(
        uri="fake://", reason="down"))
    with pytest.raises(exception.HypervisorUnavailable):
        drv.power_off(a)
    assert ("spawn", a.uuid) in drv.calls

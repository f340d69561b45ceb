from __future__ import annotations

import libvirt
import pytest

from compute.virt import events, power_state
from compute.virt.libvirt.events import translate


@pytest.mark.parametrize("event,detail,expected", [
    (libvirt.VIR_DOMAIN_EVENT_STARTED, 0, events.STARTED),
    (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, 0, events.PAUSED),
    (libvirt.VIR_DOMAIN_EVENT_RESUMED, 0, events.RESUMED),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN, events.STOPPED),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED, events.STOPPED),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED, events.SUSPENDED),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED, events.CRASHED),
    (libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED, 0, events.SUSPENDED),
    (libvirt.VIR_DOMAIN_EVENT_CRASHED, 0, events.CRASHED),
    (libvirt.VIR_DOMAIN_EVENT_DEFINED, 0, None),
    (libvirt.VIR_DOMAIN_EVENT_UNDEFINED, 0, None),
    (libvirt.VIR_DOMAIN_EVENT_SHUTDOWN, 0, None),
])
def test_translate(event, detail, expected):
    assert translate(event, detail) == expected


def test_event_power_state():
    assert events.LifecycleEvent("u", events.STOPPED).power_state == power_state.SHUTDOWN
    assert events.LifecycleEvent("u", events.STARTED).power_state == power_state.RUNNING

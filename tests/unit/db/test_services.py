"""Service heartbeats, up/down, disable/enable."""

from __future__ import annotations

import datetime

import pytest

from flotilla import exception
from flotilla.db.types import utcnow


def test_heartbeat_upserts_and_keeps_disabled(db):
    first = db.service_heartbeat("host1", "flotilla-compute", "compute.host1")
    db.service_set_disabled("host1", "flotilla-compute", True, "maintenance")
    second = db.service_heartbeat("host1", "flotilla-compute", "compute.host1")
    assert second.id == first.id
    assert second.last_seen_at >= first.last_seen_at
    assert second.disabled and second.disabled_reason == "maintenance"
    assert len(db.service_get_all()) == 1
    assert db.service_get_all(include_disabled=False) == []


def test_enable_clears_reason(db):
    db.service_heartbeat("host1", "flotilla-compute")
    db.service_set_disabled("host1", "flotilla-compute", True, "x")
    service = db.service_set_disabled("host1", "flotilla-compute", False)
    assert not service.disabled and service.disabled_reason is None


def test_unknown_service(db):
    with pytest.raises(exception.ServiceNotFound):
        db.service_get("host1", "flotilla-compute")
    with pytest.raises(exception.ServiceNotFound):
        db.service_set_disabled("host1", "flotilla-compute", True)


def test_service_is_up_by_heartbeat_age(db):
    service = db.service_heartbeat("host1", "flotilla-scheduler", "scheduler")
    assert db.service_is_up(service, 60)
    later = utcnow() + datetime.timedelta(seconds=61)
    assert not db.service_is_up(service, 60, now=later)
    # The RPC form (to_dict) works too.
    assert db.service_is_up(service.to_dict(), 60)
    assert not db.service_is_up({"last_seen_at": None}, 60)

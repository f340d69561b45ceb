"""Flavors: CRUD and soft delete freeing the name."""

from __future__ import annotations

import pytest

from flotilla import exception


def test_flavor_crud_and_soft_delete(db):
    db.flavor_create({"name": "m1.tiny", "vcpus": 1, "memory_mb": 512,
                      "root_gb": 1, "extra_specs": {"hw:cpu_policy": "shared"}})
    db.flavor_create({"name": "m1.big", "flavorid": "2", "vcpus": 4,
                      "memory_mb": 8192})
    with pytest.raises(exception.Conflict):
        db.flavor_create({"name": "m1.tiny", "vcpus": 1, "memory_mb": 1})
    assert db.flavor_get("m1.tiny").extra_specs == {"hw:cpu_policy": "shared"}
    db.flavor_update("2", {"disabled": True})
    assert [f.name for f in db.flavor_get_all()] == ["m1.tiny"]
    assert len(db.flavor_get_all(include_disabled=True)) == 2
    with pytest.raises(exception.Invalid):
        db.flavor_update("2", {"vcpus": 8})

    db.flavor_destroy("m1.tiny")
    with pytest.raises(exception.FlavorNotFound):
        db.flavor_get("m1.tiny")
    with pytest.raises(exception.FlavorNotFound):
        db.flavor_destroy("m1.tiny")
    again = db.flavor_create({"name": "m1.tiny", "vcpus": 2, "memory_mb": 1024})
    assert db.flavor_get_by_name("m1.tiny").id == again.id

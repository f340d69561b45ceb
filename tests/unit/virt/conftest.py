"""Fixtures of the virt unit tests."""

from __future__ import annotations

import uuid

import pytest
from lxml import etree

from flotilla.objects import Instance

DOMAIN_RNG = "/usr/share/libvirt/schemas/domain.rng"


@pytest.fixture(scope="session")
def domain_schema():
    """libvirt's domain RelaxNG schema (it includes the other rng files),
    loaded once per session."""
    return etree.RelaxNG(etree.parse(DOMAIN_RNG))


@pytest.fixture
def assert_valid(domain_schema):
    def check(document: str) -> etree._Element:
        root = etree.fromstring(document.encode())
        assert domain_schema.validate(root), domain_schema.error_log
        return root
    return check


def make_instance(**overrides) -> Instance:
    data = {"uuid": str(uuid.uuid4()), "name": "web-1", "project_id": "p1",
            "user_id": "u1", "image_ref": "img-1",
            "flavor": {"name": "m1.tiny", "memory_mb": 64, "vcpus": 1,
                       "root_gb": 1},
            "metadata": {"role": "web"}}
    data.update(overrides)
    return Instance.from_record(data)

"""Session-wide fixtures of the integration tier: one rig for every test."""

from __future__ import annotations

import pytest

from tests.fixtures import rig as rig_fixtures


@pytest.fixture(scope="session")
def rig(tmp_path_factory):
    """A two-host libvirt rig (the second for live migrations), started
    once per session."""
    with rig_fixtures.running_rig(str(tmp_path_factory.mktemp("rig")), hosts=2) as state:
        yield state


@pytest.fixture
def rig_host(rig):
    return rig["hosts"][0]


@pytest.fixture
def rig_host2(rig):
    return rig["hosts"][1]


@pytest.fixture(scope="session")
def empty_image(tmp_path_factory):
    return rig_fixtures.empty_image(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def guest_image():
    return rig_fixtures.guest_image()

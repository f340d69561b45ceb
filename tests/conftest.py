"""Fixtures shared by every test tier."""

from __future__ import annotations

import pytest

from flotilla.conf import CONF


@pytest.fixture
def conf(tmp_path):
    """The global CONF parsed with no files, state_path in a temp dir.

    Use ``conf.set_override(name, value, group)``; everything is reset after
    the test.
    """
    CONF([], project="flotilla", default_config_files=[])
    CONF.set_override("state_path", str(tmp_path))
    yield CONF
    CONF.reset()

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


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """Put the root logger back as it was after each test.

    Code run in-process (the openstack CLI's cliff app, a daemon's
    ``log.setup``) adds handlers bound to the ``sys.stderr`` of that moment,
    which is pytest's capture of that test: once it is closed, every later
    record printed "--- Logging error ---" with a traceback."""
    import logging
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)

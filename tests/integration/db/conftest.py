"""PostgreSQL for the shared database tests: one throwaway database per
test, created on the server the integration rig provides and dropped
afterwards. An unreachable server fails the tests (never skips them)."""

from __future__ import annotations

import pytest

from tests.fixtures.services import postgresql_database  # noqa: E402
from tests.unit.db.fixtures import db, db_conf, empty_db, manage  # noqa: F401


@pytest.fixture
def db_url():
    """A throwaway PostgreSQL database per test."""
    with postgresql_database() as url:
        yield url

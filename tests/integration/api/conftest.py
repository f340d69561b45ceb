"""The API on PostgreSQL: one throwaway database per test."""

from __future__ import annotations

import pytest

from tests.functional.api.fixtures import APICloud
from tests.integration.db.conftest import postgresql_database


@pytest.fixture
def pg_api_cloud(conf):
    with postgresql_database() as url:
        conf.set_override("connection", url, group="database")
        cloud = APICloud(conf)
        try:
            yield cloud
        finally:
            cloud.stop()

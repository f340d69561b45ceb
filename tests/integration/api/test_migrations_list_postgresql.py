"""GET /os-migrations on PostgreSQL: the user_id / project_id filters read
the JSON of the migration's saved flow context (``#>>``), and paging and
the time filters compare timestamps with time zones; the same cases as on
SQLite (tests/functional/api/test_migrations_list_api.py)."""

from __future__ import annotations

import pytest

from tests.functional.api import test_migrations_list_api as cases


@pytest.fixture
def api_cloud(pg_api_cloud):
    return pg_api_cloud


rows = cases.rows
test_filters = cases.test_filters
test_changes_since_and_before = cases.test_changes_since_and_before
test_paging_by_limit_and_marker_with_a_next_link = \
    cases.test_paging_by_limit_and_marker_with_a_next_link
test_user_and_project_of_whoever_started_it = cases.test_user_and_project_of_whoever_started_it
test_a_bad_value_is_400_naming_the_parameter = cases.test_a_bad_value_is_400_naming_the_parameter

"""The shared database tests, run on PostgreSQL.

The test functions are the SQLite tier's (imported, not copied); this
directory's conftest gives them a throwaway PostgreSQL database as
``db_url``.
"""

from __future__ import annotations

from tests.unit.db.test_compute_nodes import *  # noqa: F403
from tests.unit.db.test_flavors import *  # noqa: F403
from tests.unit.db.test_instances import *  # noqa: F403
from tests.unit.db.test_migrations import *  # noqa: F403
from tests.unit.db.test_services import *  # noqa: F403

"""Concurrent creates at the quota edge on PostgreSQL never overshoot it."""

from __future__ import annotations

from flotilla.db import api as db
from flotilla.db import quotas as quotas_db
from tests.functional.api import quota_race


def test_quota_race_postgresql(pg_api_cloud):
    quota_race.race(pg_api_cloud, clients=24, limit=7)


def test_quota_race_postgresql_repeated(pg_api_cloud):
    for limit in (3, 6, 9):
        quota_race.race(pg_api_cloud, clients=12, limit=limit)


def test_keypair_quota_race_postgresql(pg_api_cloud):
    quota_race.keypair_race(pg_api_cloud, clients=16, limit=6)


def test_server_group_quota_race_postgresql(pg_api_cloud):
    for limit in (2, 5):
        quotas_db.delete_overrides("p1", "server_groups")
        for group in db.server_group_get_all("p1"):
            db.server_group_destroy(group.uuid)
        quota_race.group_race(pg_api_cloud, clients=16, limit=limit)

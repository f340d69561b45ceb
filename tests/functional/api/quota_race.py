"""N concurrent creates at a project's quota edge: never more than the limit.

Shared by the SQLite (functional) and PostgreSQL (integration) tests.
"""

from __future__ import annotations

import concurrent.futures

from flotilla.db import quotas as quotas_db
from tests.functional.api.fixtures import IMAGE_ID, C


def race(cloud, clients: int = 16, limit: int = 5) -> None:
    quotas_db.set_limit("p1", "instances", limit)
    room = limit - quotas_db.get_usage("p1")["instances"]
    body = {"server": {"name": "race", "flavorRef": "1", "imageRef": IMAGE_ID}}

    def create(_):
        return cloud.request("POST", C + "/servers", json=body).status_code

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        codes = list(pool.map(create, range(clients)))
    assert codes.count(202) == room, codes
    assert codes.count(403) == clients - room, codes
    assert quotas_db.get_usage("p1")["instances"] == limit
    r = cloud.request("POST", C + "/servers", json=body)
    assert r.status_code == 403 and "instances" in r.json["overLimit"]["message"]


def group_race(cloud, clients: int = 12, limit: int = 2) -> None:
    """Issue 13 defect 11: parallel creates made 7 groups under a quota of 2."""
    quotas_db.set_limit("p1", "server_groups", limit)
    body = {"server_group": {"name": "g", "policies": ["anti-affinity"]}}

    def create(_):
        return cloud.request("POST", C + "/os-server-groups", json=body).status_code

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        codes = list(pool.map(create, range(clients)))
    assert codes.count(200) == limit, codes
    assert codes.count(403) == clients - limit, codes
    assert quotas_db.get_usage("p1")["server_groups"] == limit

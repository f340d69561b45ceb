"""N concurrent creates at a quota edge (a project's instances and server
groups, a user's key pairs): never more than the limit.

Shared by the SQLite (functional) and PostgreSQL (integration) tests.
"""

from __future__ import annotations

import concurrent.futures

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from flotilla.db import quotas as quotas_db
from tests.functional.api.fixtures import IMAGE_ID, C


def _concurrently(create, clients: int) -> list[int]:
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return list(pool.map(create, range(clients)))


def race(cloud, clients: int = 16, limit: int = 5) -> None:
    quotas_db.set_limit("p1", "instances", limit)
    room = limit - quotas_db.get_usage("p1")["instances"]
    body = {"server": {"name": "race", "flavorRef": "1", "imageRef": IMAGE_ID}}

    def create(_):
        return cloud.request("POST", C + "/servers", json=body).status_code

    codes = _concurrently(create, clients)
    assert codes.count(202) == room, codes
    assert codes.count(403) == clients - room, codes
    assert quotas_db.get_usage("p1")["instances"] == limit
    r = cloud.request("POST", C + "/servers", json=body)
    assert r.status_code == 403 and "instances" in r.json["overLimit"]["message"]


def keypair_race(cloud, clients: int = 16, limit: int = 5) -> None:
    """The user "member" of p1 creates ``clients`` key pairs at once."""
    quotas_db.set_limit("p1", "key_pairs", limit)

    def create(index: int):
        key = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        return cloud.request("POST", C + "/os-keypairs", json={
            "keypair": {"name": "k%d" % index, "public_key": key}}).status_code

    codes = _concurrently(create, clients)
    assert codes.count(200) == limit, codes
    assert codes.count(403) == clients - limit, codes
    assert len(cloud.request("GET", C + "/os-keypairs").json["keypairs"]) == limit


def group_race(cloud, clients: int = 12, limit: int = 2) -> None:
    """Issue 13 defect 11: parallel creates made 7 groups under a quota of 2."""
    quotas_db.set_limit("p1", "server_groups", limit)
    body = {"server_group": {"name": "g", "policies": ["anti-affinity"]}}

    def create(_):
        return cloud.request("POST", C + "/os-server-groups", json=body).status_code

    codes = _concurrently(create, clients)
    assert codes.count(200) == limit, codes
    assert codes.count(403) == clients - limit, codes
    assert quotas_db.get_usage("p1")["server_groups"] == limit

"""The service catalog handed out with every project-scoped token.

The clients need compute, image AND identity entries (``openstack server
list`` fails without identity), each with a public endpoint naming region
and region_id. URLs come from [api] public_endpoint or the request's host.
"""

from __future__ import annotations

import uuid

_SERVICES = (("compute", "nova", "/compute/v2.1"),
             ("image", "glance", "/image"),
             ("identity", "keystone", "/identity"),
             # Block Storage v3 (the clients also accept volumev3 and volume).
             ("block-storage", "cinderv3", "/volume/v3"))


def _stable_id(*parts: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)).hex


def catalog(base_url: str, region: str) -> list[dict]:
    result = []
    for kind, name, path in _SERVICES:
        url = base_url + path
        result.append({
            "id": _stable_id("service", kind), "type": kind, "name": name,
            "endpoints": [{"id": _stable_id("endpoint", kind, url),
                           "interface": "public", "region": region,
                           "region_id": region, "url": url}]})
    return result

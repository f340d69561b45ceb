"""Concurrent metadata merges of one volume on PostgreSQL keep every key
(the change locks the row: no lost update)."""

from __future__ import annotations

import concurrent.futures

from flotilla import states as st
from flotilla.db import volumes as vdb

V = "/volume/v3"


def test_concurrent_merges_keep_every_key(pg_api_cloud):
    cloud = pg_api_cloud
    row = vdb.volume_create({"size_gb": 1, "status": st.VOLUME_AVAILABLE, "host": "vol1",
                             "project_id": "p1"}, {"volumes": -1, "gigabytes": -1})
    url = V + "/volumes/%s/metadata" % row.id

    def merge(index: int) -> int:
        return cloud.request("POST", url, json={
            "metadata": {"k%d" % index: str(index)}}).status_code

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(merge, range(48)))
    assert codes == [200] * 48
    metadata = cloud.request("GET", url).json["metadata"]
    assert metadata == {"k%d" % i: str(i) for i in range(48)}

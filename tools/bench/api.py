"""Benchmark of the API (prints figures only, asserts nothing).

* GET /servers/detail with 10,000 servers in the database, paged with
  limit 1000: p50 and p99 latency per page;
* POST /servers accepted per second with 16 concurrent clients, with the
  conductor, the scheduler and two compute agents on libvirt's
  test:///default running behind the API (builds go on while clients post;
  those past the two test hosts' capacity end in NoValidHost, logged on
  stderr: what is measured is how fast the API accepts).

Runs the API's real server (waitress) on a loopback port over memory:// and SQLite
(``--database-url`` for PostgreSQL), in one process.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

import sqlalchemy as sa

# This file is named api.py: its directory must not shadow the api package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=10000)
    parser.add_argument("--creates", type=int, default=800)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    from api.app import create_app
    from api.wsgi_server import WSGIService
    from compute.virt.libvirt.driver import LibvirtDriver
    from flotilla.conf import CONF
    from flotilla.db import engine
    from flotilla.db import quotas as quotas_db
    from flotilla.db.models import Instance
    from tests.fixtures.scheduling import SchedulingCloud
    from tests.functional.api.fixtures import IMAGE_ID, seed_identities_flavor_image

    state = tempfile.mkdtemp(prefix="flotilla-bench-")
    CONF([], project="flotilla", default_config_files=[])
    CONF.set_override("state_path", state)
    if args.database_url:
        CONF.set_override("connection", args.database_url, group="database")
    CONF.set_override("scrypt_n", 1024, group="identity")
    CONF.set_override("public_endpoint", "http://127.0.0.1:1", group="api")
    CONF.set_override("download_signing_key", "bench", group="image")
    cloud = SchedulingCloud(CONF, ["host1", "host2"], lambda host: LibvirtDriver(
        CONF, connection_uri="test:///default",
        instances_path=os.path.join(state, "instances", host)))
    tokens = seed_identities_flavor_image()
    for resource in ("instances", "cores", "ram"):
        quotas_db.set_limit("p1", resource, -1)
    now = datetime.datetime.now(datetime.UTC)
    flavor = {"flavorid": "1", "name": "tiny", "memory_mb": 64, "vcpus": 1,
              "root_gb": 1, "ephemeral_gb": 0, "extra_specs": {}}
    rows = [{"uuid": str(uuid.uuid4()), "name": "bench-%05d" % i, "project_id": "p1",
             "user_id": "member", "flavor": flavor, "flavor_id": "1", "vcpus": 1,
             "memory_mb": 64, "root_gb": 1, "image_ref": IMAGE_ID, "host": "host1",
             "vm_state": "active", "power_state": 1, "metadata": {},
             "created_at": now - datetime.timedelta(seconds=i), "deleted": False}
            for i in range(args.servers)]
    with engine.session_scope() as session:
        session.execute(sa.insert(Instance), rows)
    server = WSGIService(create_app(CONF, cloud.transport), "127.0.0.1", 0, threads=16)
    server.start()
    token = tokens["member"]
    headers = {"X-Auth-Token": token, "Content-Type": "application/json",
               "OpenStack-API-Version": "compute 2.100"}
    try:
        latencies = []
        conn = http.client.HTTPConnection("127.0.0.1", server.port)
        for _ in range(3):
            marker = None
            while True:
                path = "/compute/v2.1/servers/detail?limit=1000"
                if marker:
                    path += "&marker=" + marker
                start = time.perf_counter()
                conn.request("GET", path, headers=headers)
                body = json.loads(conn.getresponse().read())
                latencies.append(time.perf_counter() - start)
                if "servers_links" not in body:
                    break
                marker = body["servers"][-1]["id"]
        latencies.sort()
        print("GET /servers/detail (%d servers, limit 1000): %d pages, p50 %.1f ms, "
              "p99 %.1f ms" % (args.servers, len(latencies),
                               statistics.median(latencies) * 1000,
                               latencies[int(len(latencies) * 0.99) - 1] * 1000))

        body = json.dumps({"server": {"name": "b", "flavorRef": "1",
                                      "imageRef": IMAGE_ID, "networks": "none"}})

        def client(count: int) -> int:
            c = http.client.HTTPConnection("127.0.0.1", server.port)
            ok = 0
            for _ in range(count):
                c.request("POST", "/compute/v2.1/servers", body=body, headers=headers)
                resp = c.getresponse()
                resp.read()
                ok += resp.status == 202
            return ok

        per_client = args.creates // args.clients
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            accepted = sum(pool.map(client, [per_client] * args.clients))
        elapsed = time.perf_counter() - start
        print("POST /servers with %d clients: %d accepted in %.2f s, %.1f/s"
              % (args.clients, accepted, elapsed, accepted / elapsed))
    finally:
        server.stop()
        cloud.stop()


if __name__ == "__main__":
    main()

"""Scheduler benchmark: select_destinations latency and claim throughput.

Prints figures, asserts nothing about time. Synthetic compute nodes (with an
up compute service each) are inserted straight into a database:

* SQLite (default): a file in a temporary directory;
* PostgreSQL: ``--postgres postgresql://postgres@127.0.0.1:5432/test`` makes a
  throwaway database there and drops it afterwards.

For each size (100, 1,000, 10,000 hosts) it times ``FilterScheduler.
select_destinations`` with the default filters and weighers (one instance,
claim included, freed after each sample so capacity stays constant), then
runs two scheduler processes claiming as fast as they can and reports
claims per second and generation conflicts (retried inside the scheduler).

    .venv/bin/python tools/bench/scheduler.py [--sizes 100,1000,10000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

FLAVOR = {"memory_mb": 512, "vcpus": 1, "root_gb": 1}


def _configure(url: str, tmp: str):
    from flotilla.conf import CONF
    from flotilla.db import api as db
    CONF([], project="flotilla", default_config_files=[])
    CONF.set_override("state_path", tmp)
    CONF.set_override("connection", url, group="database")
    db.configure(CONF)
    return CONF


def _populate(conf, size: int) -> None:
    from flotilla.db import scheduling as sched_db
    from flotilla.db import schema
    schema.db_sync(conf)
    nodes = [{"host": "bench-%05d" % i, "vcpus": 64, "memory_mb": 262144, "disk_gb": 4000,
              "cpu_allocation_ratio": 4.0, "ram_allocation_ratio": 1.0,
              "disk_allocation_ratio": 1.0, "hypervisor_type": "QEMU",
              "cpu_arch": "x86_64", "memory_mb_used": (i * 7919) % 131072}
             for i in range(size)]
    for start in range(0, size, 2000):
        sched_db.compute_nodes_bulk_create(nodes[start:start + 2000])


def _latency(conf, samples: int) -> tuple[float, float, float]:
    from flotilla.db import api as db
    from scheduler.filter_scheduler import FilterScheduler
    sched = FilterScheduler(conf)
    times = []
    load = []
    for _ in range(samples):
        consumer = str(uuid.uuid4())
        t0 = time.perf_counter()
        sched.select_destinations({"flavor": FLAVOR}, [consumer])
        times.append((time.perf_counter() - t0) * 1000)
        t1 = time.perf_counter()
        sched.host_manager.get_host_states()
        load.append((time.perf_counter() - t1) * 1000)
        db.allocation_free(consumer)
    times.sort()
    return (statistics.median(times), times[int(len(times) * 0.99) - 1 or 0],
            statistics.median(load))


def _claimer(url: str, tmp: str, seconds: float, out) -> None:
    from flotilla import exception
    conf = _configure(url, tmp)
    from scheduler.filter_scheduler import FilterScheduler
    sched = FilterScheduler(conf)
    done = failed = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            sched.select_destinations({"flavor": FLAVOR}, [str(uuid.uuid4())])
            done += 1
        except exception.NoValidHost:
            failed += 1
    out.put((done, failed))


def _throughput(url: str, tmp: str, seconds: float = 5.0) -> tuple[int, float]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(url, tmp, seconds, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    claims = sum(r[0] for r in results)
    return claims, claims / seconds


def _overcommitted() -> int:
    from flotilla.db import api as db
    return sum(1 for n in db.compute_node_get_all()
               if n.memory_mb_used > n.memory_mb * n.ram_allocation_ratio
               or n.vcpus_used > n.vcpus * n.cpu_allocation_ratio)


def _postgres_db(admin_url: str):
    import psycopg
    from psycopg import sql
    name = "flotilla_bench_%s" % uuid.uuid4().hex[:10]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = admin_url.rsplit("/", 1)[0]
    return name, "%s/%s" % (base.replace("postgresql://", "postgresql+psycopg://", 1), name)


def _drop_postgres(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                     .format(sql.Identifier(name)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--postgres", metavar="ADMIN_URL")
    args = parser.parse_args()
    backend = "PostgreSQL" if args.postgres else "SQLite (WAL file)"
    print("select_destinations, default filters and weighers, one instance, claim included")
    print("database: %s; claim throughput: 2 scheduler processes for %.0f s"
          % (backend, args.seconds))
    print("%8s %10s %10s %12s %14s %10s %12s" % ("hosts", "p50 ms", "p99 ms", "refresh p50 ms",
                                                  "claims (2 sch)", "claims/s", "overcommit"))
    for size in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            pg_name = None
            if args.postgres:
                pg_name, url = _postgres_db(args.postgres)
            else:
                url = "sqlite:///%s" % os.path.join(tmp, "bench.sqlite")
            try:
                conf = _configure(url, tmp)
                _populate(conf, size)
                # Steady state: the scheduler re-reads rows written within its
                # commit slack (2 s) at every request; hosts that were all
                # inserted a moment ago would be re-read whole.
                time.sleep(2.5)
                p50, p99, load = _latency(conf, args.samples)
                from flotilla.db import api as db
                db.dispose()
                claims, rate = _throughput(url, tmp, args.seconds)
                _configure(url, tmp)
                over = _overcommitted()
                db.dispose()
            finally:
                if pg_name:
                    _drop_postgres(args.postgres, pg_name)
        print("%8d %10.2f %10.2f %12.2f %14d %10.1f %12d"
              % (size, p50, p99, load, claims, rate, over))
    print("cost grows with the host count through the in-memory filter/weigh pass "
          "(linear); the host-state cache reads only the nodes that changed, plus a full "
          "read every [scheduler] host_state_full_refresh seconds (10 s: about one request "
          "in several hundred here); the claim "
          "itself is one UPDATE.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: Flotilla's RPC against oslo.messaging on the local RabbitMQ.

Prints, for each library: call round trip p50/p99 and calls/s with 1 and 8
concurrent callers, and cast throughput (msgs/s, each cast returned by the
client) with 1 and 8 concurrent casters, and for Flotilla one caster keeping
1000 casts in flight (``cast_async``, each counted once its own confirm came
back); then a table of both and the ratios. Flotilla's casts are persistent
and confirmed (the defaults: a cast is confirmed once the broker wrote it),
pipelined over one confirm channel; oslo.messaging's are transient and
unconfirmed. "cast pipelined vs best" compares the pipelined rate with
oslo.messaging's best rate (1 or 8 casters). Asserts nothing about time.

Each library's echo server runs in its own process (this script with
``--serve``), like a real service, so clients and server do not share a
GIL. Everything runs in a throw-away vhost, deleted at the end.

    .venv/bin/python tools/bench/rpc.py [--seconds 3] [--broker guest:guest@127.0.0.1:5672]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

TOPIC = "bench"


# -- servers (run in a child process) ----------------------------------------

class Echo:
    RPC_API_VERSION = "1.0"

    def echo(self, ctxt, value):
        return value


BENCH_KEY = "bench-signing-key"


def serve_flotilla(url: str) -> None:
    from flotilla import rpc
    from flotilla.conf import CONF
    CONF([], project="flotilla", default_config_files=[])
    CONF.set_override("control_exchange", "flotilla-bench", "rpc")
    CONF.set_override("signing_key", BENCH_KEY, "rpc")
    transport = rpc.get_transport(CONF, url=url)
    server = rpc.RPCServer(transport, TOPIC, "host1", [Echo()])
    server.start()
    print("ready", flush=True)
    sys.stdin.read()
    server.stop()
    server.wait(5)
    transport.cleanup()


def oslo_conf():
    """A private ConfigOpts for oslo.messaging (which reads its tracing
    tracing and metrics options from groups it registers only on the
    global CONF)."""
    from oslo_config import cfg
    from oslo_messaging._metrics import client as metrics
    from oslo_messaging._tracing import client as tracing
    conf = cfg.ConfigOpts()
    conf.register_opts(tracing.oslo_messaging_tracing,
                       group="oslo_messaging_tracing")
    conf.register_opts(metrics.oslo_messaging_metrics,
                       group="oslo_messaging_metrics")
    conf([], project="bench", default_config_files=[])
    return conf


def serve_oslo(url: str) -> None:
    import oslo_messaging
    conf = oslo_conf()
    transport = oslo_messaging.get_rpc_transport(conf, url=url)
    target = oslo_messaging.Target(topic=TOPIC, server="host1")
    server = oslo_messaging.get_rpc_server(transport, target, [Echo()],
                                           executor="threading")
    server.start()
    print("ready", flush=True)
    sys.stdin.read()
    server.stop()
    server.wait()
    transport.cleanup()


# -- clients ------------------------------------------------------------------

def flotilla_client(url: str):
    from flotilla import rpc
    from flotilla.conf import CONF
    from flotilla.context import RequestContext
    CONF([], project="flotilla", default_config_files=[])
    CONF.set_override("control_exchange", "flotilla-bench", "rpc")
    CONF.set_override("signing_key", BENCH_KEY, "rpc")
    transport = rpc.get_transport(CONF, url=url)
    client = rpc.RPCClient(transport, TOPIC).prepare(timeout=30)
    ctxt = RequestContext()

    def cleanup():
        transport.cleanup()
    return (lambda v: client.call(ctxt, "echo", value=v),
            lambda v: client.cast(ctxt, "echo", value=v),
            lambda v: client.cast_async(ctxt, "echo", value=v),
            cleanup)


def oslo_client(url: str):
    import oslo_messaging
    conf = oslo_conf()
    transport = oslo_messaging.get_rpc_transport(conf, url=url)
    client = oslo_messaging.get_rpc_client(
        transport, oslo_messaging.Target(topic=TOPIC), timeout=30)
    return (lambda v: client.call({}, "echo", value=v),
            lambda v: client.cast({}, "echo", value=v),
            None, transport.cleanup)


def run_pipelined_casts(cast_async, seconds: float, window: int = 1000) -> float:
    """One caster keeping ``window`` casts in flight; a cast counts once its
    confirm came back."""
    import collections
    inflight: collections.deque = collections.deque()
    confirmed = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        inflight.append(cast_async(confirmed))
        if len(inflight) >= window:
            inflight.popleft().wait()
            confirmed += 1
    while inflight:
        inflight.popleft().wait()
        confirmed += 1
    return confirmed / (time.perf_counter() - started)


def run_calls(call, callers: int, seconds: float) -> dict:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def loop():
        mine = []
        i = 0
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            assert call(i) == i
            mine.append(time.perf_counter() - start)
            i += 1
        with lock:
            latencies.extend(mine)
    started = time.perf_counter()
    threads = [threading.Thread(target=loop) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"p50": statistics.median(latencies) * 1000,
            "p99": latencies[int(len(latencies) * 0.99)] * 1000,
            "rate": len(latencies) / elapsed}


def run_casts(cast, seconds: float, callers: int = 1) -> float:
    counts = [0] * callers
    started = time.perf_counter()
    deadline = started + seconds

    def loop(n):
        while time.perf_counter() < deadline:
            cast(counts[n])
            counts[n] += 1
    threads = [threading.Thread(target=loop, args=(n,)) for n in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


def bench(name: str, url: str, seconds: float) -> dict:
    server = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", name,
         "--url", url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    try:
        line = server.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit("%s server did not start" % name)
        call, cast, cast_async, cleanup = (flotilla_client if name == "flotilla"
                                           else oslo_client)(url)
        for i in range(200):  # warm up connections and code paths
            call(i)
        results = {"1 caller": run_calls(call, 1, seconds),
                   "8 callers": run_calls(call, 8, seconds),
                   "cast": run_casts(cast, seconds),
                   "cast 8": run_casts(cast, seconds, 8)}
        if cast_async:
            results["cast pipelined"] = run_pipelined_casts(cast_async, seconds)
        cleanup()
        return results
    finally:
        server.stdin.close()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True,
                   capture_output=True, timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="duration of each measurement")
    parser.add_argument("--broker", default="guest:guest@127.0.0.1:5672")
    parser.add_argument("--serve", choices=("flotilla", "oslo"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        (serve_flotilla if args.serve == "flotilla" else serve_oslo)(args.url)
        return

    results = {}
    for name in ("flotilla", "oslo"):
        # One vhost per library: their queues have different arguments.
        vhost = "%s-bench-%s" % (name, uuid.uuid4().hex[:8])
        rabbitmqctl("add_vhost", vhost)
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*",
                    ".*")
        try:
            results[name] = bench(name, "rabbit://%s/%s" % (args.broker,
                                                            vhost),
                                  args.seconds)
        finally:
            rabbitmqctl("delete_vhost", vhost)
        print("%s: %s" % (name, results[name]), flush=True)

    fl, os_ = results["flotilla"], results["oslo"]
    rows = []
    for scenario in ("1 caller", "8 callers"):
        for key, unit, better in (("p50", "ms", "lower"),
                                  ("p99", "ms", "lower"),
                                  ("rate", "calls/s", "higher")):
            a, b = fl[scenario][key], os_[scenario][key]
            ratio = b / a if better == "lower" else a / b
            rows.append(("call %s %s" % (scenario, key), unit, a, b, ratio))
    oslo_best = max(os_["cast"], os_["cast 8"])
    rows.append(("cast 1 caster", "msgs/s", fl["cast"], os_["cast"],
                 fl["cast"] / os_["cast"]))
    rows.append(("cast 8 casters", "msgs/s", fl["cast 8"], os_["cast 8"],
                 fl["cast 8"] / os_["cast 8"]))
    rows.append(("cast pipelined vs best", "msgs/s", fl["cast pipelined"],
                 oslo_best, fl["cast pipelined"] / oslo_best))
    print()
    print("%-24s %-8s %12s %12s %10s" % ("measure", "unit", "flotilla",
                                         "oslo.msg", "advantage"))
    print("-" * 70)
    for name, unit, a, b, ratio in rows:
        print("%-24s %-8s %12.3f %12.3f %9.2fx" % (name, unit, a, b, ratio))
    print("\nadvantage = how many times better Flotilla is (oslo/flotilla "
          "for latency, flotilla/oslo for rates); %gs per measurement.\n"
          "Flotilla casts wait for the publisher confirm of their own message "
          "(persistent: [rpc] persistent_casts=True, the default, includes "
          "the broker's disk write; 'transient': False), pipelined on one "
          "confirm channel; oslo.messaging casts are transient and "
          "unconfirmed." % args.seconds)


if __name__ == "__main__":
    main()

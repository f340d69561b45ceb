"""A stream of casts between two processes, for the fault tests.

    python caststream.py receive CONFIG OUT   # serve topic chaos-stream
    python caststream.py send CONFIG OUT RUN  # cast RUN-0, RUN-1, ... until stdin closes

The receiver appends every cast it applies (``record``) to OUT, one line per
item, flushed at once; a duplicate dropped by the replay store never reaches
it. The sender keeps up to 64 casts in flight (``cast_async``) and appends
each item whose confirm came back to OUT: those are the casts that must
arrive. A cast that fails (not confirmed within the reconnect timeout) is
written to OUT.failed.
"""

from __future__ import annotations

import collections
import sys
import threading


def _conf(path: str):
    from flotilla.conf import CONF, loader
    return loader.load(["--config-file", path], "caststream", CONF)


class Recorder:
    RPC_API_VERSION = "1.0"

    def __init__(self, out) -> None:
        self.out = out
        self.lock = threading.Lock()

    def record(self, ctxt, item):
        with self.lock:
            self.out.write(item + "\n")
            self.out.flush()


def receive(config: str, out_path: str) -> None:
    from flotilla import log, rpc
    conf = _conf(config)
    log.setup(False)
    transport = rpc.get_transport(conf)
    with open(out_path, "a") as out:
        server = rpc.RPCServer(transport, "chaos-stream", "receiver", [Recorder(out)])
        server.start()
        print("ready", flush=True)
        sys.stdin.read()
        server.stop()
        server.wait(10)
    transport.cleanup()


def send(config: str, out_path: str, run: str) -> None:
    from flotilla import exception, log, rpc
    conf = _conf(config)
    log.setup(False)
    transport = rpc.get_transport(conf)
    client = rpc.RPCClient(transport, "chaos-stream").prepare(server="receiver")
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    inflight: collections.deque = collections.deque()
    with open(out_path, "a") as out, open(out_path + ".failed", "a") as failed:
        def settle_one():
            item, confirmation = inflight.popleft()
            try:
                confirmation.wait()
            except exception.MessagingException:
                failed.write(item + "\n")
                failed.flush()
                return
            out.write(item + "\n")
            out.flush()

        print("ready", flush=True)
        n = 0
        while not stop.is_set():
            item = "%s-%d" % (run, n)
            n += 1
            inflight.append((item, client.cast_async(None, "record", item=item)))
            if len(inflight) >= 64:
                settle_one()
            stop.wait(0.005)  # about 200 casts a second
        while inflight:
            settle_one()
    transport.cleanup()


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "receive":
        receive(sys.argv[2], sys.argv[3])
    else:
        send(sys.argv[2], sys.argv[3], sys.argv[4])

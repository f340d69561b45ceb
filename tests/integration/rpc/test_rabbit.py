"""The RPC behaviour against a real RabbitMQ, plus what only a real broker
shows: raw garbage on the wire, quorum queues, reconnection."""

import logging
import threading
import time

import kombu
import pytest

from flotilla import concurrency, exception
from flotilla.context import RequestContext
from flotilla.rpc import RPCClient, RPCServer
from tests.fixtures.services import rabbitmqctl
from tests.integration.rpc import conftest
from tests.unit.rpc.behaviour import BehaviourTests, Manager, wait_for


def test_backend_is_the_requested_one():
    import os
    want = os.environ.get("FLOTILLA_TEST_CONCURRENCY", "threading")
    assert concurrency.get_backend() == want


class TestRabbit(BehaviourTests):

    def test_raw_garbage_published_with_kombu(self, transport, topic, serve,
                                              kombu_conn, caplog):
        manager = serve("host1")
        caplog.set_level(logging.WARNING)
        with kombu_conn.Producer() as producer:
            for body in (b"\x00garbage", b"{}", b'{"method": 1}'):
                for queue in (topic, topic + ".host1"):
                    producer.publish(body, routing_key=queue, exchange="",
                                     content_type="application/octet-stream")
        assert wait_for(lambda: sum("Rejected message" in r.getMessage()
                                    for r in caplog.records) >= 6)
        assert manager.calls == 0
        client = RPCClient(transport, topic)
        assert client.call(None, "echo", value="alive") == "alive"
        assert client.prepare(server="host1").call(None, "whoami") == "host1"

    def test_quorum_shared_queue(self, make_transport, topic, serve):
        transport = make_transport(quorum_queues=True)
        serve(transport_=transport)
        listing = rabbitmqctl("list_queues", "-p", conftest.VHOST, "name", "type")
        types = dict(line.split("\t")[:2] for line in listing.splitlines()
                     if "\t" in line)
        assert types.get(topic) == "quorum"
        assert RPCClient(transport, topic).call(None, "echo", value=1) == 1

    def test_password_never_logged(self, conf, caplog):
        from flotilla.rpc import get_transport
        conf.set_override("reconnect_timeout", 1, "rpc")
        conf.set_override("reconnect_max_delay", 1, "rpc")
        conf.set_override("signing_key", "k", "rpc")
        caplog.set_level(logging.DEBUG)
        transport = get_transport(
            conf, url="rabbit://guest:hunter2-secret@127.0.0.1:1/")
        try:
            with pytest.raises(exception.MessagingUnavailable) as info:
                RPCClient(transport, "nowhere").cast(None, "x")
        finally:
            transport.cleanup()
        assert "hunter2" not in str(info.value)
        assert "guest:***@127.0.0.1:1" in str(info.value)
        assert caplog.records
        assert not [r for r in caplog.records if "hunter2" in r.getMessage()]

    def test_survives_close_all_connections(self, transport, topic, serve,
                                            make_transport):
        shared = serve()
        directed = serve("host1")
        client = RPCClient(transport, topic).prepare(timeout=10)
        client_t2 = make_transport()
        stop = threading.Event()
        results: list = []

        def caller(n):
            c = RPCClient(client_t2 if n % 2 else transport, topic).prepare(
                timeout=10, server="host1" if n % 3 == 0 else None)
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    c.call(RequestContext(), "echo", value=i)
                    results.append((time.monotonic(), None))
                except (exception.MessagingUnavailable,
                        exception.MessagingTimeout) as exc:
                    results.append((time.monotonic(), exc))
        callers = [threading.Thread(target=caller, args=(n,))
                   for n in range(4)]
        for t in callers:
            t.start()
        # Every caller has made calls before the connections close ...
        assert wait_for(lambda: len(results) >= 4 * len(callers), timeout=10)
        closing_at = time.monotonic()
        rabbitmqctl("close_all_connections", "-p", conftest.VHOST, "test")
        closed_at = time.monotonic()
        # ... and goes on making them well after (the reconnect window).
        assert wait_for(lambda: sum(t > closed_at + 1.5 for t, _ in results)
                        >= 4 * len(callers), timeout=15)
        stop.set()
        for t in callers:
            t.join(15)
        before = [r for r in results if r[0] < closing_at]
        after = [r for r in results if r[0] > closed_at + 1.5]
        assert before and after, (len(before), len(after))
        assert all(exc is None for _, exc in before)
        failures = [exc for _, exc in after if exc is not None]
        assert not failures, failures[:3]
        during = [exc for t, exc in results
                  if closing_at <= t <= closed_at + 1.5 and exc is not None]
        # only calls in flight while the broker closes connections one by
        # one may fail (a caller can meet a second dying pooled connection)
        assert len(during) <= 2 * len(callers), during
        # servers still serve both queues; casts confirmed are delivered
        assert client.call(None, "echo", value="x") == "x"
        assert client.prepare(server="host1").call(None, "whoami") == "host1"
        client.prepare(server="host1").cast(None, "record", item="after")
        assert directed.cast_event.wait(5)
        assert shared.calls + directed.calls > 0

    def test_confirmed_casts_not_lost_when_connections_close(
            self, transport, topic, make_transport):
        # Casts confirmed while no server runs wait in the durable queue,
        # through a connection drop, for a server that starts later.
        manager = Manager("late")
        first = RPCServer(transport, topic, "host1", [Manager()])
        first.start()
        first.stop()
        assert first.wait(5)
        client = RPCClient(make_transport(), topic).prepare(server="host1")
        for i in range(5):
            client.cast(None, "record", item=i)
        rabbitmqctl("close_all_connections", "-p", conftest.VHOST, "test")
        for i in range(5, 10):
            client.cast(None, "record", item=i)
        late = RPCServer(transport, topic, "host1", [manager])
        late.start()
        try:
            assert wait_for(lambda: len(manager.casts) == 10, 10), \
                manager.casts
            assert sorted(manager.casts) == list(range(10))
        finally:
            late.stop()
            late.wait(5)

    def test_no_leftover_exclusive_queues(self, transport, topic, serve):
        serve("host1")
        serve("host2")
        names = rabbitmqctl("list_queues", "-p", conftest.VHOST, "name")
        assert sum(topic in n and "fanout" in n
                   for n in names.splitlines()) == 2
        _ = kombu  # the module is used by fixtures too

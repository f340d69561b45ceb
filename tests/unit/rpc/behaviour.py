"""The RPC behaviour every transport must show, as a reusable test class.

Subclasses provide the fixtures ``make_transport(**rpc_options)`` (a
transport on the wire under test, cleaned up by the fixture) and ``topic``
(a topic name unique to the test); see test_memory.py and
tests/integration/rpc/test_rabbit.py.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid

import pytest

from flotilla import context, exception
from flotilla.context import RequestContext
from flotilla.rpc import RPCClient, RPCServer, Target, envelope, serializer


class Manager:
    RPC_API_VERSION = "1.3"

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.casts: list = []
        self.cast_event = threading.Event()
        self.sleeping = threading.Event()
        self.calls = 0

    def echo(self, ctxt, value):
        self.calls += 1
        return value

    def whoami(self, ctxt):
        return self.name

    def context_info(self, ctxt):
        current = context.current()
        return {"request_id": ctxt.request_id,
                "current": current.request_id if current else None,
                "roles": ctxt.roles}

    def record(self, ctxt, item):
        self.casts.append(item)
        self.cast_event.set()

    def boom(self, ctxt, uuid):
        raise exception.InstanceNotFound(instance_uuid=uuid)

    def crash(self, ctxt):
        raise ValueError("plain python error")

    def sleep(self, ctxt, seconds):
        self.sleeping.set()
        time.sleep(seconds)   # the work in flight
        return seconds

    def _private(self, ctxt):
        return "never"


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class BehaviourTests:
    """Each test gets fresh servers on a fresh topic."""

    @pytest.fixture
    def transport(self, make_transport):
        return make_transport()

    @pytest.fixture
    def serve(self, transport, topic):
        servers = []

        def serve(server=None, manager=None, transport_=None, topic_=None):
            manager = manager or Manager(server or "shared")
            srv = RPCServer(transport_ or transport, topic_ or topic, server,
                            [manager])
            srv.start()
            servers.append(srv)
            return manager
        yield serve
        for srv in servers:
            srv.stop()
        for srv in servers:
            assert srv.wait(10)

    @pytest.fixture
    def ctxt(self):
        return RequestContext(user_id="u", project_id="p", roles=["member"])

    def client(self, transport, topic, **kw):
        return RPCClient(transport, topic, **kw)

    # -- calls and casts --

    def test_call_shared_and_directed(self, transport, topic, serve, ctxt):
        serve("host1")
        client = self.client(transport, topic)
        assert client.call(ctxt, "echo", value={"a": [1, 2]}) == {"a": [1, 2]}
        assert client.prepare(server="host1", timeout=5).call(
            ctxt, "whoami") == "host1"

    def test_context_travels_and_is_entered(self, transport, topic, serve,
                                            ctxt):
        serve()
        info = self.client(transport, topic).call(ctxt, "context_info")
        assert info == {"request_id": ctxt.request_id,
                        "current": ctxt.request_id, "roles": ["member"]}

    def test_cast(self, transport, topic, serve, ctxt):
        manager = serve("host1")
        self.client(transport, topic).prepare(server="host1").cast(
            ctxt, "record", item=42)
        assert manager.cast_event.wait(5)
        assert manager.casts == [42]

    def test_fanout_reaches_every_server(self, transport, topic, serve, ctxt):
        managers = [serve("host%d" % i) for i in range(3)]
        self.client(transport, topic).prepare(fanout=True).cast(
            ctxt, "record", item="all")
        for manager in managers:
            assert manager.cast_event.wait(5)
            assert manager.casts == ["all"]

    def test_shared_queue_competing_consumers(self, transport, topic, serve,
                                              ctxt):
        serve(manager=Manager("a"))
        serve(manager=Manager("b"))
        client = self.client(transport, topic)
        seen = {client.call(ctxt, "whoami") for _ in range(20)}
        assert seen == {"a", "b"}

    def test_call_timeout(self, transport, topic, serve, ctxt):
        serve()
        client = self.client(transport, topic).prepare(timeout=0.5)
        started = time.monotonic()
        with pytest.raises(exception.MessagingTimeout):
            client.call(ctxt, "sleep", seconds=2)
        assert time.monotonic() - started < 1.9
        # the connection is still good for the next call
        assert client.prepare(timeout=5).call(ctxt, "echo", value=1) == 1

    def test_remote_exception_mapping(self, transport, topic, serve, ctxt):
        serve()
        client = self.client(transport, topic)
        with pytest.raises(exception.InstanceNotFound) as info:
            client.call(ctxt, "boom", uuid="abc")
        assert info.value.kwargs == {"instance_uuid": "abc"}
        assert "abc" in str(info.value)
        with pytest.raises(exception.RemoteError) as info:
            client.call(ctxt, "crash")
        assert info.value.exc_type == "ValueError"
        assert info.value.value == "plain python error"

    def test_unroutable_cast_and_call(self, transport, topic, serve, ctxt):
        serve("host1")
        client = self.client(transport, topic)
        with pytest.raises(exception.MessageUndeliverable):
            client.prepare(server="no-such-host").cast(ctxt, "record", item=1)
        started = time.monotonic()
        with pytest.raises(exception.MessageUndeliverable):
            client.prepare(server="no-such-host", timeout=10).call(
                ctxt, "echo", value=1)
        assert time.monotonic() - started < 5  # fails fast, no timeout
        with pytest.raises(exception.MessageUndeliverable):
            self.client(transport, topic + "-nobody").prepare(
                fanout=True).cast(ctxt, "record", item=1)

    # -- versions --

    def test_version_refused(self, transport, topic, serve, ctxt, caplog):
        manager = serve()
        client = self.client(transport, topic)
        assert client.prepare(version="1.3").call(ctxt, "echo", value=1) == 1
        for version in ("1.4", "2.0", "0.9"):
            with pytest.raises(exception.UnsupportedVersion):
                client.prepare(version=version).call(ctxt, "echo", value=1)
        assert manager.calls == 1

    def test_version_cap(self, transport, topic, serve, ctxt):
        serve()
        client = self.client(transport, topic, version="1.0",
                             version_cap="1.2")
        assert client.can_send_version("1.2")
        assert not client.can_send_version("1.3")
        assert client.prepare(version="1.2").call(ctxt, "echo", value=1) == 1
        with pytest.raises(exception.UnsupportedVersion):
            client.prepare(version="1.3")
        assert self.client(transport, topic).can_send_version("9.9")

    # -- bad messages --

    def test_bad_requests_rejected_server_survives(self, transport, topic,
                                                   serve, ctxt, caplog):
        manager = serve()
        client = self.client(transport, topic).prepare(timeout=5)
        with pytest.raises(exception.UnknownMethod):
            client.call(ctxt, "no_such_method")
        with pytest.raises((exception.UnknownMethod,
                            exception.InvalidMessage)):
            client.call(ctxt, "_private")
        with pytest.raises(exception.InvalidMessage, match="arguments"):
            client.call(ctxt, "echo", wrong_name=1)
        assert manager.calls == 0
        assert client.call(ctxt, "echo", value="still here") == "still here"

    def raw_call(self, transport, topic, data: bytes, timeout=5.0):
        """Send ``data`` as a call body; the decoded reply dict."""
        reply = transport.driver.call(Target(topic), data, uuid.uuid4().hex,
                                      "raw", timeout)
        return serializer.loads(reply)

    def test_garbage_bodies(self, make_transport, topic, serve, ctxt,
                            caplog):
        transport = make_transport(max_message_size=2048)
        manager = serve(transport_=transport)
        good = envelope.build_request(ctxt, "echo", {"value": 1}, "1.0",
                                      reply_to="x", ttl=30)
        bodies = [b"\x00\xffnot json at all", b"[]", b'{"method": "echo"}',
                  serializer.dumps(dict(good, version="one")),
                  serializer.dumps(dict(good, args="nope")),
                  b'{"pad": "' + b"x" * 4096 + b'"}']
        caplog.set_level(logging.WARNING)
        for data in bodies:
            reply = self.raw_call(transport, topic, data)
            assert reply["failure"]["exc_type"] == "InvalidMessage", data[:40]
            transport.driver.cast(Target(topic), data, "raw")
        assert wait_for(lambda: sum(
            "Rejected message" in r.getMessage()
            for r in caplog.records) >= 2 * len(bodies))
        assert manager.calls == 0
        client = self.client(transport, topic)
        assert client.call(ctxt, "echo", value=7) == 7

    def test_expired_message_dropped(self, transport, topic, serve, ctxt,
                                     caplog):
        manager = serve()
        body = envelope.build_request(ctxt, "echo", {"value": 1}, "1.0",
                                      reply_to="x", ttl=5)
        body["sent_at"] -= 60
        caplog.set_level(logging.WARNING)
        with pytest.raises(exception.MessagingTimeout):
            transport.driver.call(Target(topic), envelope.encode(body, None),
                                  "c1", "echo", 0.5)
        assert manager.calls == 0
        assert any("expired" in r.getMessage() for r in caplog.records)

    def test_replayed_message_runs_once(self, make_transport, topic, serve,
                                        ctxt, caplog):
        """Issue 13 defect 7: a captured signed cast published three times
        ran three times."""
        transport = make_transport(signing_key="k")
        manager = serve("host1", transport_=transport)
        body = envelope.build_request(ctxt, "record", {"item": "once"}, "1.0",
                                      reply_to=None, ttl=60)
        data = envelope.encode(body, "k")
        caplog.set_level(logging.WARNING)
        for _ in range(3):
            transport.driver.cast(Target(topic, "host1"), data, "record")
        assert wait_for(lambda: sum("Dropped duplicate" in r.getMessage()
                                    for r in caplog.records) >= 2)
        assert manager.casts == ["once"]
        # A fanout copy is one per server, not a duplicate.
        other = serve("host2", transport_=transport)
        fan = envelope.encode(envelope.build_request(
            ctxt, "record", {"item": "all"}, "1.0", reply_to=None, ttl=60), "k")
        transport.driver.cast(Target(topic, fanout=True), fan, "record")
        assert wait_for(lambda: "all" in manager.casts and "all" in other.casts)

    def test_future_message_refused(self, transport, topic, serve, ctxt,
                                    caplog):
        manager = serve()
        body = envelope.build_request(ctxt, "record", {"item": 1}, "1.0",
                                      reply_to=None, ttl=60)
        body["sent_at"] += 3600
        caplog.set_level(logging.WARNING)
        transport.driver.cast(Target(topic), envelope.encode(body, None), "record")
        assert wait_for(lambda: any("future" in r.getMessage()
                                    for r in caplog.records))
        assert manager.casts == []

    def test_deeply_nested_body_logged_and_answered(self, transport, topic,
                                                    serve, ctxt, caplog):
        """Issue 13 defect 12: a deeply nested body was dropped silently and
        the caller waited out its timeout."""
        manager = serve()
        caplog.set_level(logging.WARNING)
        nested = b'{"method": "echo", "args": {"value": ' + b"[" * 5000 \
            + b"]" * 5000 + b"}}"
        reply = self.raw_call(transport, topic, nested, timeout=10)
        assert reply["failure"]["exc_type"] == "InvalidMessage"
        assert "nested" in reply["failure"]["message"]
        assert any("Rejected message" in r.getMessage() and "nested" in r.getMessage()
                   for r in caplog.records)
        assert manager.calls == 0
        assert self.client(transport, topic).call(ctxt, "echo", value=1) == 1

    def test_signing(self, make_transport, topic, serve, ctxt, caplog):
        server_t = make_transport(signing_key="right-key")
        manager = serve(transport_=server_t)
        good = self.client(make_transport(signing_key="right-key"), topic)
        assert good.call(ctxt, "echo", value=1) == 1
        caplog.set_level(logging.WARNING)
        forged = self.client(make_transport(signing_key="wrong-key"), topic)
        with pytest.raises(exception.InvalidMessage, match="signature"):
            forged.prepare(timeout=5).call(ctxt, "echo", value=2)
        unsigned = self.client(make_transport(), topic)
        with pytest.raises(exception.InvalidMessage, match="unsigned"):
            unsigned.prepare(timeout=5).call(ctxt, "echo", value=3)
        forged.cast(ctxt, "record", item="forged")
        unsigned.cast(ctxt, "record", item="unsigned")
        assert wait_for(lambda: sum("Rejected message" in r.getMessage()
                                    for r in caplog.records) >= 4)
        assert manager.calls == 1 and manager.casts == []
        assert good.call(ctxt, "echo", value=4) == 4

    def test_stop_wait_finishes_in_flight(self, transport, topic, serve,
                                          ctxt):
        manager = Manager()
        srv = RPCServer(transport, topic, None, [manager])
        srv.start()
        result = {}

        def slow_call():
            result["v"] = self.client(transport, topic).call(
                ctxt, "sleep", seconds=0.5)
        caller = threading.Thread(target=slow_call)
        caller.start()
        assert manager.sleeping.wait(5)   # the call is being handled
        srv.stop()
        assert srv.wait(5)
        caller.join(5)
        assert result == {"v": 0.5}

    def test_json_only_arguments(self, transport, topic, serve, ctxt):
        serve()
        with pytest.raises(TypeError):
            self.client(transport, topic).call(ctxt, "echo", value=object())


def replace_options(transport, **over):
    return dataclasses.replace(transport.options, **over)

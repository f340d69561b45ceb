"""The full RPC behaviour on memory:// (the in-process broker)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from flotilla.rpc import Transport, get_transport
from flotilla.rpc.memory_driver import MemoryDriver
from tests.unit.rpc.behaviour import BehaviourTests


@pytest.fixture
def topic():
    return "topic-" + uuid.uuid4().hex[:8]


@pytest.fixture
def make_transport(conf):
    made = []

    def make(**rpc_options):
        base = get_transport(conf)
        options = dataclasses.replace(base.options, **rpc_options)
        transport = Transport("memory://", options, MemoryDriver(options))
        made.append(transport)
        return transport
    yield make
    for transport in made:
        transport.cleanup()


class TestMemory(BehaviourTests):
    pass


def test_memory_transports_share_one_broker(conf):
    from flotilla.rpc import RPCClient, RPCServer
    from tests.unit.rpc.behaviour import Manager
    server_t, client_t = get_transport(conf), get_transport(conf)
    srv = RPCServer(server_t, "shared-broker", "h", [Manager("h")])
    srv.start()
    try:
        assert RPCClient(client_t, "shared-broker").call(
            None, "whoami") == "h"
    finally:
        srv.stop()
        srv.wait(5)

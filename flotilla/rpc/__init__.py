"""Flotilla's RPC layer: calls and casts between services over kombu.

Public API (other packages import only these names)::

    transport = rpc.get_transport(conf)
    client = rpc.RPCClient(transport, topic="compute", version="1.0")
    client.prepare(server="host1", version="1.2", timeout=5).call(ctxt, "m", a=1)
    client.prepare(fanout=True).cast(ctxt, "m")
    server = rpc.RPCServer(transport, "compute", "host1", [manager])
    server.start(); server.stop(); server.wait(timeout)

Module map: :mod:`.envelope` (the JSON body), :mod:`.signing` (HMAC),
:mod:`.serializer` (JSON and exceptions), :mod:`.versioning`,
:mod:`.dispatcher` (endpoint methods), :mod:`.client`, :mod:`.server`,
:mod:`.transport` (URL, options, driver interface), :mod:`.retry` (the one
reconnect policy), :mod:`.amqp_driver` (RabbitMQ), :mod:`.memory_driver`
(in-process broker).
"""

from flotilla.rpc.client import RPCClient
from flotilla.rpc.dispatcher import private
from flotilla.rpc.server import RPCServer
from flotilla.rpc.transport import Target, Transport, get_transport, mask_url

__all__ = ["RPCClient", "RPCServer", "Target", "Transport", "get_transport",
           "mask_url", "private"]

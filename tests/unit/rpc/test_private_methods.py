"""Service hooks and periodic tasks are never callable over RPC."""

from __future__ import annotations

import pytest

from flotilla import exception
from flotilla.periodic import periodic_task
from flotilla.rpc import envelope, private
from flotilla.rpc.dispatcher import Dispatcher


class Manager:
    RPC_API_VERSION = "1.0"

    def ping(self, ctxt):
        return "pong"

    @private
    def init_host(self):
        raise AssertionError("must not run")

    @periodic_task(spacing=10)
    def report(self):
        raise AssertionError("must not run")


def test_only_rpc_methods_are_exposed():
    assert Dispatcher([Manager()], "t").methods() == ["ping"]


@pytest.mark.parametrize("method", ["init_host", "report"])
def test_calling_a_private_method_is_an_unknown_method(method):
    dispatcher = Dispatcher([Manager()], "t")
    body = envelope.build_request(None, method, {}, "1.0", reply_to=None, ttl=60)
    request = envelope.decode_request(envelope.encode(body, None), key=None,
                                      max_size=1 << 20)
    with pytest.raises(exception.UnknownMethod):
        dispatcher.dispatch(request)

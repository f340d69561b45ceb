"""Dispatcher rules: which methods are callable, versions, arguments."""

from __future__ import annotations

import pytest

from flotilla import context, exception
from flotilla.context import RequestContext
from flotilla.rpc import envelope
from flotilla.rpc.dispatcher import Dispatcher


class Base:
    def inherited(self, ctxt):
        return "base"


class V13(Base):
    RPC_API_VERSION = "1.3"

    def plain(self, ctxt, a, b=2):
        return [a, b]

    def kwonly(self, ctxt, *, a):
        return a

    def anything(self, ctxt, **kwargs):
        return sorted(kwargs)

    def current(self, ctxt):
        return context.current() is ctxt

    def _hidden(self, ctxt):
        return "no"


class V20:
    RPC_API_VERSION = "2.0"

    def plain(self, ctxt, a):
        return "v2"


def req(method, version="1.0", **args):
    body = envelope.build_request(RequestContext(), method, args, version,
                                  reply_to=None, ttl=60)
    return envelope.decode_request(envelope.encode(body, None), key=None,
                                   max_size=10**6)


@pytest.fixture
def d():
    return Dispatcher([V13(), V20()], "topic")


def test_public_methods_only(d):
    assert d.methods() == ["anything", "current", "inherited", "kwonly",
                           "plain"]
    with pytest.raises(exception.UnknownMethod):
        d.dispatch(req("missing"))


def test_arguments(d):
    assert d.dispatch(req("plain", a=1)) == [1, 2]
    assert d.dispatch(req("plain", a=1, b=3)) == [1, 3]
    assert d.dispatch(req("kwonly", a=5)) == 5
    assert d.dispatch(req("anything", x=1, y=2)) == ["x", "y"]
    for bad in ({}, {"b": 1}, {"a": 1, "c": 3}):
        with pytest.raises(exception.InvalidMessage, match="arguments"):
            d.dispatch(req("plain", **bad))


def test_version_selects_endpoint(d):
    assert d.dispatch(req("plain", version="1.3", a=1)) == [1, 2]
    assert d.dispatch(req("plain", version="2.0", a=1)) == "v2"
    with pytest.raises(exception.UnsupportedVersion):
        d.dispatch(req("plain", version="2.1", a=1))
    with pytest.raises(exception.UnsupportedVersion):
        d.dispatch(req("inherited", version="3.0"))


def test_context_entered(d):
    assert d.dispatch(req("current")) is True
    assert context.current() is None


def test_bad_endpoint_version_fails_at_start():
    class Bad:
        RPC_API_VERSION = "one"
    with pytest.raises(exception.InvalidMessage):
        Dispatcher([Bad()], "t")

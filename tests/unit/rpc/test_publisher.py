"""The pipelined confirm bookkeeping of flotilla.rpc.amqp_publisher (no
broker: the broker's frames are played to the callbacks)."""

from __future__ import annotations

import types

import pytest

from flotilla import exception
from flotilla.rpc.amqp_publisher import Confirmation, ConfirmingPublisher, _Pending
from flotilla.rpc.transport import Options, Target

OPTIONS = Options(control_exchange="x", call_timeout=5, signing_key=None, heartbeat=0,
                  quorum_queues=False, executor_pool_size=1, max_message_size=4096,
                  reconnect_max_delay=1, reconnect_timeout=5, cast_ttl=60)


@pytest.fixture
def publisher():
    pub = ConfirmingPublisher("rabbit://u:p@127.0.0.1:1/", OPTIONS)
    pub._exchanges = {}
    yield pub
    pub.close()


def _sent(pub, count):
    """``count`` messages as if published with delivery tags 1..count."""
    pendings = []
    for tag in range(1, count + 1):
        pending = _Pending(Target("t"), b"{}", "m", "c%d" % tag)
        pub._unconfirmed[tag] = pending
        pub._by_token[pending.token] = pending
        pendings.append(pending)
    return pendings


def test_each_caller_learns_about_its_own_tag(publisher):
    p1, p2, p3, p4, p5 = _sent(publisher, 5)
    publisher._on_ack(2, False)             # only tag 2
    assert [p.done for p in (p1, p2, p3)] == [False, True, False]
    publisher._on_ack(4, True)              # 1, 3 and 4 (multiple)
    assert all(p.done for p in (p1, p3, p4)) and not p5.done
    publisher._on_nack(5, False)
    assert isinstance(p5.error, exception.MessagingUnavailable)
    assert not publisher._unconfirmed
    for p in (p1, p2, p3, p4):
        Confirmation(publisher, p).wait(0)  # confirmed: no error


def test_a_late_ack_never_confirms_a_newer_message(publisher):
    """py-amqp's own confirm wait accepts any ack; here tags decide."""
    p1, p2 = _sent(publisher, 2)
    publisher._on_ack(1, False)
    assert p1.done and not p2.done
    publisher._on_ack(1, False)             # duplicate / stale ack
    assert not p2.done


def test_returned_message_is_undeliverable_for_its_caller_only(publisher):
    p1, p2 = _sent(publisher, 2)
    message = types.SimpleNamespace(properties={"message_id": p2.token})
    publisher._on_return(None, "x", "t", message)
    publisher._on_ack(2, True)
    Confirmation(publisher, p1).wait(0)
    with pytest.raises(exception.MessageUndeliverable):
        Confirmation(publisher, p2).wait(0)


def test_unconfirmed_messages_are_sent_again_in_order_after_a_reconnect(publisher):
    p1, p2, p3 = _sent(publisher, 3)
    publisher._on_ack(1, False)
    p3.abandoned = True                     # its caller gave up
    publisher._drop(types.SimpleNamespace(release=lambda: None))
    assert list(publisher._outbox) == [p2]

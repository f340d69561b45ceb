"""ConductorAPI.instance_update when the broker connection drops, or a cut
it does not notice loses the message, while the reply is awaited (the
chaos tier's 30 s broker cut: an agent's build, cut off at its first state
change, was left to the reaper).

The messages go through the real client, envelope and dispatcher to a small
conductor holding one instance record with the real compare-and-swap rule;
only the wire is replaced, by one that can lose a reply after the call ran
(or before it reached the conductor).
"""

from __future__ import annotations

import pytest

from conductor.rpcapi import ConductorAPI
from flotilla import exception
from flotilla.context import RequestContext
from flotilla.rpc import envelope, serializer, transport
from flotilla.rpc.dispatcher import Dispatcher

UUID = "6c5d9e0e-7c0a-4f47-9f1e-0d3f1d7a4a11"
CTXT = RequestContext(request_id="req-1")


class OneInstanceConductor:
    """instance_get and instance_update of one record, CAS as the real one."""

    RPC_API_VERSION = "1.11"

    def __init__(self) -> None:
        self.record = {"uuid": UUID, "vm_state": "building", "task_state": "scheduling",
                       "host": None}
        self.updates = 0

    def instance_get(self, ctxt, instance_uuid: str) -> dict:
        return dict(self.record)

    def instance_update(self, ctxt, instance_uuid: str, values: dict, expected: dict) -> dict:
        for key, allowed in expected.items():
            allowed = allowed if isinstance(allowed, list) else [allowed]
            if self.record[key] not in allowed:
                raise exception.InstanceStateConflict(
                    instance_uuid=instance_uuid, actual_vm_state=self.record["vm_state"],
                    actual_task_state=self.record["task_state"],
                    expected=expected)
        self.record.update(values)
        self.updates += 1
        return dict(self.record)


class LossyWire:
    """Dispatches each call at once; ``plan`` says, call by call, whether the
    reply is lost after the call ran ("ran"), the request before it did
    ("unsent") or silently, the connection not noticing ("timeout");
    anything else is answered."""

    reply_to = "reply-queue"

    def __init__(self, endpoint, options: transport.Options, plan: list[str]) -> None:
        self.dispatcher = Dispatcher([endpoint], "conductor")
        self.options = options
        self.plan = list(plan)
        self.methods: list[str] = []

    def call(self, target, body, correlation_id, method, timeout) -> bytes:
        self.methods.append(method)
        fate = self.plan.pop(0) if self.plan else "answer"
        if fate == "unsent":
            raise exception.MessagingUnavailable(reason="the broker went away")
        if fate == "timeout":
            raise exception.MessagingTimeout(timeout=timeout, method=method,
                                             topic="conductor")
        request = envelope.decode_request(body, key=None,
                                          max_size=self.options.max_message_size)
        try:
            reply = envelope.build_reply(request.msg_id,
                                         result=self.dispatcher.dispatch(request))
        except Exception as exc:
            reply = envelope.build_reply(request.msg_id,
                                         failure=serializer.failure_from_exception(exc))
        if fate == "ran":
            raise exception.MessagingUnavailable(
                reason="connection lost while waiting for the reply to %s "
                       "(it may or may not have run)" % method)
        return envelope.encode(reply, None)


def _api(plan: list[str], reconnect_timeout: float = 30):
    options = transport.Options(control_exchange="x", call_timeout=5,
                                signing_key=None, heartbeat=0, quorum_queues=False,
                                executor_pool_size=1, max_message_size=1 << 20,
                                reconnect_max_delay=1, reconnect_timeout=reconnect_timeout,
                                cast_ttl=60)
    conductor = OneInstanceConductor()
    wire = LossyWire(conductor, options, plan)
    return ConductorAPI(transport.Transport("memory://", options, wire)), conductor, wire


def _take_spawning(api):
    # What an agent's build sends first (compute.lifecycle: its target state
    # is among the expected ones, so it may be repeated).
    return api.instance_update(CTXT, UUID, {"task_state": "spawning", "host": "host1"},
                               expected={"vm_state": ["building"],
                                         "task_state": ["scheduling", None, "spawning"]})


def _finish_build(api):
    # What it sends last: a repeat of this one conflicts.
    return api.instance_update(CTXT, UUID, {"task_state": None, "vm_state": "active"},
                               expected={"task_state": "spawning"})


@pytest.mark.parametrize("lost", ["unsent", "timeout"])
def test_a_request_lost_before_it_ran_is_sent_again(lost):
    # "timeout": lost in a cut the connection did not notice.
    api, conductor, wire = _api([lost])
    record = _take_spawning(api)
    assert record["task_state"] == "spawning"
    assert conductor.updates == 1
    assert wire.methods == ["instance_update"] * 2


def test_a_repeatable_update_whose_reply_was_lost_is_sent_again():
    api, conductor, wire = _api(["ran"])
    record = _take_spawning(api)
    assert record["task_state"] == "spawning" and record["host"] == "host1"
    assert conductor.updates == 2      # the repeat matched its own result
    assert wire.methods == ["instance_update"] * 2


def test_an_update_that_ran_and_then_conflicts_answers_with_the_record():
    api, conductor, wire = _api(["answer", "ran"])
    _take_spawning(api)
    record = _finish_build(api)
    assert (record["vm_state"], record["task_state"]) == ("active", None)
    assert conductor.updates == 2      # each once: the repeat found it done
    assert wire.methods == ["instance_update"] * 3 + ["instance_get"]


def test_a_conflict_with_another_state_after_a_lost_reply_is_raised():
    api, conductor, _ = _api(["unsent"])
    conductor.record.update(task_state="deleting")   # someone else's change
    with pytest.raises(exception.InstanceStateConflict):
        _finish_build(api)
    assert conductor.updates == 0


def test_a_conflict_without_a_lost_reply_is_raised_at_once():
    api, conductor, wire = _api([])
    with pytest.raises(exception.InstanceStateConflict):
        _finish_build(api)                 # still scheduling: not ours to finish
    assert wire.methods == ["instance_update"]


def test_a_conflicting_update_of_no_state_is_never_taken_as_done():
    api, conductor, _ = _api(["ran"])
    conductor.record.update(task_state="deleting")
    with pytest.raises(exception.InstanceStateConflict):
        api.instance_update(CTXT, UUID, {"host": "host2"}, expected={"task_state": None})


def test_a_broker_that_stays_away_ends_in_messaging_unavailable():
    api, conductor, wire = _api(["unsent"] * 1000, reconnect_timeout=1)
    with pytest.raises(exception.MessagingUnavailable):
        _take_spawning(api)
    assert conductor.updates == 0
    assert len(wire.methods) > 1

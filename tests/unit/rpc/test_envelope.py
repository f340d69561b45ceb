"""Envelope, signing, versioning and serialisation rules (no broker)."""

from __future__ import annotations

import json
import time

import pytest

from flotilla import exception
from flotilla.context import RequestContext
from flotilla.rpc import envelope, serializer, signing, versioning

KEY = "s3cret-key"


def _request(**over):
    ctxt = RequestContext(user_id="u1", project_id="p1", roles=["member"])
    body = envelope.build_request(ctxt, "echo", {"value": 1}, "1.2",
                                  reply_to="r", ttl=30)
    body.update(over)
    return body


def test_build_request_has_every_field():
    body = _request()
    assert set(body) == set(envelope.REQUEST_FIELDS)
    assert body["context"]["user_id"] == "u1"
    assert body["context"]["request_id"].startswith("req-")
    assert abs(body["sent_at"] - time.time()) < 5


def test_round_trip():
    body = _request()
    req = envelope.decode_request(envelope.encode(body, None), key=None,
                                  max_size=10000)
    assert req.method == "echo" and req.args == {"value": 1}
    assert req.version == "1.2" and req.reply_to == "r"
    assert isinstance(req.context, RequestContext)
    assert req.context.roles == ["member"]
    assert req.context.request_id == body["context"]["request_id"]


@pytest.mark.parametrize("data, reason", [
    (b"\xff\xfe not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"method": "x"}).encode(), "missing fields"),
])
def test_bad_bodies(data, reason):
    with pytest.raises(exception.InvalidMessage, match=reason):
        envelope.decode_request(data, key=None, max_size=10000)


@pytest.mark.parametrize("field, value, reason", [
    ("method", "_private", "bad method name"),
    ("method", 12, "bad method name"),
    ("args", [1], "args is not an object"),
    ("context", "x", "context is not an object"),
    ("version", "1", "bad version"),
    ("version", "1.2.3", "bad version"),
    ("ttl", -1, "bad ttl"),
    ("sent_at", "yesterday", "bad sent_at"),
    ("msg_id", "", "bad msg_id"),
])
def test_bad_fields(field, value, reason):
    data = envelope.encode(_request(**{field: value}), None)
    with pytest.raises(exception.InvalidMessage, match=reason):
        envelope.decode_request(data, key=None, max_size=10000)


def test_oversized_rejected_before_parsing():
    with pytest.raises(exception.InvalidMessage, match="exceeds"):
        envelope.decode_request(b"{" * 2000, key=None, max_size=1024)


def test_expired():
    data = envelope.encode(_request(sent_at=time.time() - 100, ttl=10), None)
    with pytest.raises(envelope.Expired):
        envelope.decode_request(data, key=None, max_size=10000)



def test_every_message_has_a_deadline():
    """Issue 13 defect 7: a message without a deadline could be replayed
    forever; one with an absurd one would keep replay stores busy."""
    for ttl in (None, 0, envelope.MAX_TTL + 1):
        data = envelope.encode(_request(ttl=ttl), None)
        with pytest.raises(exception.InvalidMessage, match="ttl"):
            envelope.decode_request(data, key=None, max_size=10000)
    with pytest.raises(ValueError):
        envelope.build_request(None, "echo", {}, "1.0", reply_to=None, ttl=None)
    req = envelope.decode_request(envelope.encode(_request(ttl=30), None),
                                  key=None, max_size=10000)
    assert req.deadline == pytest.approx(req.sent_at + 30)


def test_sent_at_in_the_future_beyond_the_skew_is_refused():
    """Issue 13 defect 7: a future sent_at used to pass the age check."""
    now = time.time()
    far = envelope.encode(_request(sent_at=now + 3600, ttl=30), KEY)
    with pytest.raises(exception.InvalidMessage, match="future"):
        envelope.decode_request(far, key=KEY, max_size=10000, now=now,
                                max_skew=30)
    near = envelope.encode(_request(sent_at=now + 5, ttl=30), KEY)
    envelope.decode_request(near, key=KEY, max_size=10000, now=now, max_skew=30)


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def test_deeply_nested_body_is_an_invalid_message():
    """Issue 13 defect 12: a 5000-deep body raised RecursionError."""
    for data in (b"[" * 5000 + b"]" * 5000,
                 b'{"a":' * 5000 + b"1" + b"}" * 5000,
                 envelope.encode(_request(args={"x": nested(40)}), None)):
        with pytest.raises(exception.InvalidMessage, match="nested"):
            envelope.decode_request(data, key=None, max_size=10 ** 6)


def test_depth_limit_is_exact_whatever_the_brackets_in_strings():
    # {"args": {"x": nested(n)}} nests 3 + n deep (the body, args, the lists).
    ok = envelope.encode(_request(args={"x": nested(envelope.MAX_DEPTH - 3)}), None)
    envelope.decode_request(ok, key=None, max_size=10 ** 6)
    deep = envelope.encode(_request(args={"x": nested(envelope.MAX_DEPTH - 2)}), None)
    with pytest.raises(exception.InvalidMessage, match="nested"):
        envelope.decode_request(deep, key=None, max_size=10 ** 6)
    # Brackets inside strings are no nesting at all.
    flat = envelope.encode(_request(args={"x": "[{" * 100}), None)
    envelope.decode_request(flat, key=None, max_size=10 ** 6)
    envelope.decode_request(flat.decode(), key=None, max_size=10 ** 6)


# -- signing --

def test_signature_good():
    body = _request()
    data = envelope.encode(body, KEY)
    assert "sig" in json.loads(data)
    req = envelope.decode_request(data, key=KEY, max_size=10000)
    assert (req.method, req.args, req.msg_id) == ("echo", {"value": 1}, body["msg_id"])


def test_signature_independent_of_key_order():
    body = signing.sign(_request(), KEY)
    reordered = dict(reversed(list(body.items())))
    assert signing.verify(reordered, KEY) is None


def test_signature_missing():
    data = envelope.encode(_request(), None)
    with pytest.raises(exception.InvalidMessage, match="unsigned"):
        envelope.decode_request(data, key=KEY, max_size=10000)


def test_signature_forged():
    body = signing.sign(_request(), KEY)
    body["args"] = {"value": 2}  # tampered after signing
    with pytest.raises(exception.InvalidMessage, match="bad signature"):
        envelope.decode_request(serializer.dumps(body), key=KEY,
                                max_size=10000)
    other = envelope.encode(_request(), "another-key")
    with pytest.raises(exception.InvalidMessage, match="bad signature"):
        envelope.decode_request(other, key=KEY, max_size=10000)


def test_wire_form_is_checked_on_its_bytes_and_anything_else_on_its_body():
    data = envelope.encode(_request(), KEY)
    assert signing.verify_wire(data, KEY)
    assert not signing.verify_wire(data, "another-key")
    # One byte changed anywhere before the signature: refused.
    tampered = data.replace(b'"value":1', b'"value":2')
    assert not signing.verify_wire(tampered, KEY)
    with pytest.raises(exception.InvalidMessage, match="bad signature"):
        envelope.decode_request(tampered, key=KEY, max_size=10000)
    # A valid signature pasted after other bytes, or one not last, or
    # trailing whitespace: not the wire form; the body check decides.
    sig = json.loads(data)["sig"]
    pasted = serializer.canonical(_request(args={"value": 3}))[:-1] \
        + b',"sig":"%s"}' % sig.encode()
    assert not signing.verify_wire(pasted, KEY)
    with pytest.raises(exception.InvalidMessage, match="bad signature"):
        envelope.decode_request(pasted, key=KEY, max_size=10000)
    for other_form in (serializer.dumps(signing.sign(_request(), KEY)), data + b"\n"):
        envelope.decode_request(other_form, key=KEY, max_size=10000)
    # A second "sig" inside the signed bytes changes nothing: the last one
    # is the one that is checked, and the body carries it.
    body = dict(_request(), sig="0" * 64)
    canonical = serializer.canonical(body)
    twice = canonical[:-1] + b',"sig":"%s"}' % signing.digest_of(KEY, canonical).encode()
    req = envelope.decode_request(twice, key=KEY, max_size=10000)
    assert req.args == {"value": 1}


def test_no_key_ignores_signature():
    body = _request()
    req = envelope.decode_request(envelope.encode(body, KEY), key=None, max_size=10000)
    assert (req.method, req.args, req.msg_id) == ("echo", {"value": 1}, body["msg_id"])


# -- versioning --

@pytest.mark.parametrize("server, requested, ok", [
    ("1.3", "1.0", True), ("1.3", "1.3", True), ("1.3", "1.4", False),
    ("1.3", "2.0", False), ("2.1", "1.0", False), ("1.10", "1.9", True),
])
def test_compatibility(server, requested, ok):
    assert versioning.is_compatible(server, requested) is ok


def test_version_cap():
    assert versioning.within_cap("1.2", None)
    assert versioning.within_cap("1.2", "1.2")
    assert not versioning.within_cap("1.3", "1.2")
    assert versioning.within_cap("1.10", "1.10")
    assert not versioning.within_cap("1.10", "1.9")


@pytest.mark.parametrize("bad", ["", "1", "1.", "a.b", "01.1", "1.2.3", None])
def test_bad_versions(bad):
    with pytest.raises(exception.InvalidMessage):
        versioning.parse(bad)


# -- serialisation and exception mapping --

def test_canonical_is_sorted_and_compact():
    assert serializer.canonical({"b": 1, "a": [1, 2]}) == b'{"a":[1,2],"b":1}'


def test_dumps_refuses_non_json():
    with pytest.raises(TypeError):
        serializer.dumps({"x": object()})
    with pytest.raises(ValueError):
        serializer.dumps({"x": float("nan")})


def test_exception_same_class_with_kwargs():
    exc = exception.InstanceNotFound(instance_uuid="abc")
    failure = serializer.failure_from_exception(exc)
    assert failure == {"exc_type": "InstanceNotFound",
                       "message": "Instance abc could not be found.",
                       "kwargs": {"instance_uuid": "abc"}}
    back = serializer.exception_from_failure(
        json.loads(serializer.dumps(failure)))
    assert type(back) is exception.InstanceNotFound
    assert str(back) == str(exc) and back.kwargs == {"instance_uuid": "abc"}


def test_exception_unknown_class_is_remote_error():
    back = serializer.exception_from_failure(
        serializer.failure_from_exception(ValueError("bad value")))
    assert type(back) is exception.RemoteError
    assert back.exc_type == "ValueError" and back.value == "bad value"


def test_exception_name_outside_flotilla_exception_not_resolved():
    # A remote peer cannot make us build arbitrary classes.
    for name in ("RequestContext", "object", "SystemExit", "__class__"):
        back = serializer.exception_from_failure(
            {"exc_type": name, "message": "m", "kwargs": {}})
        assert type(back) is exception.RemoteError


def test_exception_non_json_kwargs_dropped():
    exc = exception.Invalid(reason=object())
    failure = serializer.failure_from_exception(exc)
    assert failure["kwargs"] == {}
    serializer.dumps(failure)
    assert type(serializer.exception_from_failure(failure)) is \
        exception.Invalid


def test_remote_error_round_trip():
    exc = exception.RemoteError("KeyError", "'x'")
    back = serializer.exception_from_failure(
        serializer.failure_from_exception(exc))
    assert type(back) is exception.RemoteError
    assert back.exc_type == "KeyError" and back.value == "'x'"


def test_mask_url():
    from flotilla.rpc import mask_url
    masked = mask_url("rabbit://user:hunter2@h1:5672,h2:5672/vhost")
    assert "hunter2" not in masked
    assert masked == "rabbit://user:***@h1:5672,h2:5672/vhost"
    assert mask_url("memory://") == "memory://"

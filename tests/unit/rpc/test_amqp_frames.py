"""flotilla.rpc.amqp_frames writes exactly the bytes py-amqp writes for the
same cast (py-amqp's frame writer, fed the same Message, is the reference)."""

from __future__ import annotations

import types

import amqp
import pytest
from amqp import spec
from amqp.method_framing import frame_writer
from amqp.serialization import dumps

from flotilla.rpc.amqp_frames import CastFrames, ack_frame


def _py_amqp_bytes(frame_max, channel_id, exchange, routing_key, body, message_id,
                   persistent):
    written = []
    conn = types.SimpleNamespace(frame_max=frame_max, bytes_sent=0)
    transport = types.SimpleNamespace(write=lambda data: written.append(bytes(data)))
    write_frame = frame_writer(conn, transport)
    message = amqp.Message(body, content_type="application/json",
                           delivery_mode=2 if persistent else 1, message_id=message_id)
    write_frame(1, channel_id, spec.Basic.Publish,
                dumps("Bssbb", (0, exchange, routing_key, True, False)), message)
    return b"".join(written)


@pytest.mark.parametrize("frame_max,body", [
    (131072, b'{"method":"echo","args":{"value":1},"sig":"ab"}'),
    (131072, b""),
    (4096, b"x" * 4088),           # exactly one full body frame
    (4096, b"y" * 10000),          # split over three body frames
    (4096, "é".encode() * 3000),   # multi-byte UTF-8, split mid-character
])
@pytest.mark.parametrize("persistent", [True, False])
def test_frames_match_py_amqp(frame_max, body, persistent):
    ours = CastFrames(3, frame_max, "flotilla", "compute.hôte-1", persistent)
    got = b"".join(bytes(part) for part in ours.frames(body, "c12345"))
    assert got == _py_amqp_bytes(frame_max, 3, "flotilla", "compute.hôte-1", body,
                                 "c12345", persistent)


def test_names_longer_than_a_short_string_are_refused():
    with pytest.raises(ValueError):
        CastFrames(1, 131072, "x" * 256, "k", True)
    with pytest.raises(ValueError):
        CastFrames(1, 131072, "x", "k", True).frames(b"{}", "m" * 256)


@pytest.mark.parametrize("tag", [1, 255, 2 ** 40 + 7])
def test_ack_frame_matches_py_amqp(tag):
    written = []
    conn = types.SimpleNamespace(frame_max=131072, bytes_sent=0)
    transport = types.SimpleNamespace(write=lambda data: written.append(bytes(data)))
    frame_writer(conn, transport)(1, 2, spec.Basic.Ack, dumps("Lb", (tag, False)), None)
    assert ack_frame(2, tag) == b"".join(written)

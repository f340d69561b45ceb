"""The AMQP 0-9-1 frames of one cast, built without py-amqp's generic encoder.

py-amqp encodes every ``Basic.Publish`` through its generic argument and
property serialisers (a format string walked per field, per message): on
the cast publisher's I/O thread that was about 80% of the CPU a confirmed
cast costs. A cast's frames differ from one another only by the message id
and the body, so :class:`CastFrames` builds the rest once per (channel,
exchange, routing key) and joins the parts per message.

Rules (what a cast looks like on the wire; the unit test compares it byte
for byte with what py-amqp writes for the same ``amqp.Message`` and
``basic_publish``):

* a method frame ``Basic.Publish`` (class 60, method 40): ticket 0, the
  exchange, the routing key, ``mandatory`` set, ``immediate`` clear;
* a content header frame (class 60, weight 0, the body size) with exactly
  three properties: ``content_type`` "application/json", ``delivery_mode``
  (2 persistent, 1 transient) and ``message_id``;
* the body in as many body frames as ``frame_max`` requires (each frame's
  payload at most ``frame_max - 8`` bytes), none for an empty body.

Only the frames are built here; the caller writes them and keeps py-amqp's
bookkeeping right (``connection.bytes_sent``, which heartbeats rely on).
"""

from __future__ import annotations

import struct

FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_END = b"\xce"
BASIC_CLASS = 60
BASIC_PUBLISH = 40
CONTENT_TYPE = "application/json"

# Property flag bits of the Basic class, in py-amqp's (the spec's) order.
_FLAG_CONTENT_TYPE = 1 << 15
_FLAG_DELIVERY_MODE = 1 << 12
_FLAG_MESSAGE_ID = 1 << 7

_FRAME_HEAD = struct.Struct(">BHI")
_HEADER_START = struct.Struct(">HHQH")


def _shortstr(value: str) -> bytes:
    data = value.encode("utf-8")
    if len(data) > 255:
        raise ValueError("an AMQP short string is at most 255 bytes: %r" % value)
    return bytes((len(data),)) + data


class CastFrames:
    """The frames of casts published on ``channel_id`` to ``exchange`` with
    ``routing_key`` (see the module rules)."""

    __slots__ = ("_channel_id", "_chunk", "_method", "_props_head")

    def __init__(self, channel_id: int, frame_max: int, exchange: str,
                 routing_key: str, persistent: bool) -> None:
        self._channel_id = channel_id
        self._chunk = frame_max - 8  # frame type, channel, size and end
        payload = (struct.pack(">HHH", BASIC_CLASS, BASIC_PUBLISH, 0)
                   + _shortstr(exchange) + _shortstr(routing_key)
                   + b"\x01")  # bits: mandatory, not immediate
        self._method = (_FRAME_HEAD.pack(FRAME_METHOD, channel_id, len(payload))
                        + payload + FRAME_END)
        # After the flags: content_type, then delivery_mode (message_id last).
        self._props_head = _shortstr(CONTENT_TYPE) + bytes((2 if persistent else 1,))

    def frames(self, body: bytes, message_id: str) -> list[bytes]:
        """The byte strings to write, in order, for one message."""
        mid = message_id.encode("utf-8")
        if len(mid) > 255:
            raise ValueError("message id longer than 255 bytes")
        header = b"".join((
            _HEADER_START.pack(BASIC_CLASS, 0, len(body),
                               _FLAG_CONTENT_TYPE | _FLAG_DELIVERY_MODE | _FLAG_MESSAGE_ID),
            self._props_head, bytes((len(mid),)), mid))
        out = [self._method,
               _FRAME_HEAD.pack(FRAME_HEADER, self._channel_id, len(header)),
               header, FRAME_END]
        chunk = self._chunk
        if len(body) <= chunk:
            if body:
                out += (_FRAME_HEAD.pack(FRAME_BODY, self._channel_id, len(body)),
                        body, FRAME_END)
            return out
        view = memoryview(body)
        for start in range(0, len(body), chunk):
            piece = view[start:start + chunk]
            out += (_FRAME_HEAD.pack(FRAME_BODY, self._channel_id, len(piece)),
                    piece, FRAME_END)
        return out


BASIC_ACK = 80
_ACK = struct.Struct(">BHIHHQB")


def ack_frame(channel_id: int, delivery_tag: int) -> bytes:
    """The ``Basic.Ack`` frame of one delivery (``multiple`` clear), as
    py-amqp's ``basic_ack`` writes it: a server acks every message it takes,
    and py-amqp's generic encoder cost more than the rest of the ack."""
    return _ACK.pack(FRAME_METHOD, channel_id, 13, BASIC_CLASS, BASIC_ACK,
                     delivery_tag, 0) + FRAME_END

"""HMAC-SHA256 signatures over envelopes.

Rules:

* The signature covers :func:`flotilla.rpc.serializer.canonical` of the
  envelope without its ``sig`` field, so key order and whitespace never
  matter and every field (method, args, context, msg_id, ttl...) is covered.
* ``sig`` is the lowercase hex digest.
* With no key configured nothing is signed and nothing is checked; with a
  key, :func:`verify` fails for a missing or a wrong signature. Comparison
  uses :func:`hmac.compare_digest` (constant time) so a forger learns
  nothing from how long a rejection takes.
"""

from __future__ import annotations

import hashlib
import hmac

from flotilla.rpc import serializer

SIG_FIELD = "sig"


def digest_of(key: str | bytes, canonical: bytes) -> str:
    """The signature of an unsigned body's canonical bytes."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    # hmac.digest is OpenSSL's one-shot HMAC: the same digest as
    # hmac.new(...).hexdigest() without building an HMAC object per message.
    return hmac.digest(key, canonical, "sha256").hex()


def _digest(key: str | bytes, body: dict) -> str:
    unsigned = {k: v for k, v in body.items() if k != SIG_FIELD}
    return digest_of(key, serializer.canonical(unsigned))


def sign(body: dict, key: str | bytes | None) -> dict:
    """``body`` with its ``sig`` set (a new dict); unchanged without key."""
    if not key:
        return body
    signed = dict(body)
    signed[SIG_FIELD] = _digest(key, body)
    return signed


def verify(body: dict, key: str | bytes | None) -> str | None:
    """None when ``body`` is acceptable, else the reason it is not."""
    if not key:
        return None
    sig = body.get(SIG_FIELD)
    if not sig:
        return "unsigned message (a signing key is set)"
    if not isinstance(sig, str):
        return "signature is not a string"
    if not hmac.compare_digest(sig.encode("ascii", "replace"),
                               _digest(key, body).encode("ascii")):
        return "bad signature"
    return None


_SUFFIX_START = b',"%s":"' % SIG_FIELD.encode()
_SUFFIX_LEN = len(_SUFFIX_START) + 64 + 2  # the hex digest, '"}'


def verify_wire(data: bytes, key: str | bytes | None) -> bool:
    """True when ``data`` is a body in the form :func:`flotilla.rpc.envelope.encode`
    sends (canonical bytes with ``sig`` appended last) and ``sig`` is the
    HMAC of those canonical bytes under ``key``.

    A fast path only: False means "not proven this way", and the caller
    then checks the parsed body with :func:`verify`. It proves as much:
    the key holder produced exactly these bytes (less the appended
    signature), and the body is what they parse to (a JSON object's last
    ``sig`` wins, and it is the one checked here). It saves re-encoding
    the parsed body in canonical form, the costliest part of a check.
    """
    if not key or not isinstance(data, bytes) or len(data) <= _SUFFIX_LEN \
            or not data.endswith(b'"}'):
        return False
    start = len(data) - _SUFFIX_LEN
    if data[start:start + len(_SUFFIX_START)] != _SUFFIX_START:
        return False
    sig = data[start + len(_SUFFIX_START):-2]
    expected = digest_of(key, data[:start] + b"}").encode("ascii")
    return hmac.compare_digest(sig, expected)


# --- who signs with which key --------------------------------------------------

#: Topics whose per-host servers are agents on hypervisor hosts: they hold
#: only their own host key, never the deployment key.
AGENT_TOPICS = ("compute",)
_HOST_KEY_LABEL = b"flotilla-agent-host-key:"


def host_key(deployment_key: str, host: str) -> str:
    """The key of the agent on ``host``, derived from the deployment key
    (``flotilla-manage rpc host-key HOST`` prints it for the host's
    configuration). Knowing one host's key tells nothing of the deployment
    key or of another host's."""
    return hmac.new(deployment_key.encode("utf-8"), _HOST_KEY_LABEL + host.encode("utf-8"),
                    hashlib.sha256).hexdigest()


class Keyring:
    """The keys of one service, and which one signs or checks each message.

    A control-plane service (API, conductor, scheduler) holds the deployment
    key. It signs what it sends to an agent's own queue (``compute.<host>``)
    with that host's key, checks a message that names a ``signer`` with the
    signer's host key (so the signer is authenticated: only that host's
    agent holds the key), and everything else with the deployment key.

    An agent holds only its host key (``[rpc] host_key``): it signs every
    message with it, names itself as ``signer``, and accepts only messages
    signed with it. A compromised hypervisor host can therefore speak only
    as itself; what it may do as itself the conductor decides
    (conductor/agent_access.py).

    With no key at all (memory://, test rigs) nothing is signed or checked
    and no signer is named.
    """

    def __init__(self, deployment_key: str | None = None, agent_key: str | None = None,
                 host: str | None = None) -> None:
        if agent_key and not host:
            raise ValueError("an agent's host key needs its host name")
        self.deployment_key = deployment_key or None
        self.agent_key = agent_key or None
        self.host = host if agent_key else None

    @property
    def is_agent(self) -> bool:
        return self.agent_key is not None

    @property
    def signs(self) -> bool:
        return bool(self.agent_key or self.deployment_key)

    def _agent_queue_key(self, topic: str, server: str | None) -> str | None:
        if server and topic in AGENT_TOPICS:
            return host_key(self.deployment_key, server)
        return self.deployment_key

    def sending(self, topic: str, server: str | None) -> tuple[str | None, str | None]:
        """(key, signer) for a request to ``topic`` (``server``)."""
        if self.agent_key:
            return self.agent_key, self.host
        if not self.deployment_key:
            return None, None
        return self._agent_queue_key(topic, server), None

    def _queue_host_key(self, queue: str | None) -> str | None:
        """The host key for a message the control plane put on an agent's
        own queue (``compute.<host>``), None for any other queue."""
        if not (queue and self.deployment_key):
            return None
        for topic in AGENT_TOPICS:
            if queue.startswith(topic + ".") and len(queue) > len(topic) + 1:
                return host_key(self.deployment_key, queue[len(topic) + 1:])
        return None

    def checking(self, signer: str | None, queue: str | None = None) -> str | None:
        """The key a received message (naming ``signer``, arrived on
        ``queue``) must verify with.

        A service holding the deployment key that also serves an agent's
        queue (flotilla-all, or an agent configured with the deployment key)
        checks what arrives there with that host's key, as the sender
        signed it."""
        if self.agent_key:
            # Agents hear only the control plane, which signs with our key.
            return self.agent_key
        if signer is not None and self.deployment_key:
            return host_key(self.deployment_key, signer)
        return self._queue_host_key(queue) or self.deployment_key

    def replying(self, signer: str | None,
                 queue: str | None = None) -> tuple[str | None, str | None]:
        """(key, signer) for the reply to a request from ``signer`` that
        arrived on ``queue``."""
        if self.agent_key:
            return self.agent_key, self.host
        return self.checking(signer, queue), None

    def checking_reply(self, topic: str, server: str | None) -> str | None:
        """The key a reply from ``topic`` (``server``) must verify with."""
        if self.agent_key:
            return self.agent_key
        if not self.deployment_key:
            return None
        return self._agent_queue_key(topic, server)

"""RabbitMQ fixtures for the RPC integration tests.

With ``FLOTILLA_TEST_CONCURRENCY=eventlet`` the process switches to the
eventlet backend first thing (test_backends.py runs the suite that way in a
subprocess). Each run works in its own vhost (``flotilla-test-<id>``), with
its own control exchange and topics, and deletes the vhost at the end, so
parallel runs never collide and nothing is left on the broker. RabbitMQ not
reachable is a failure, not a skip.
"""

import os

from flotilla import concurrency

if os.environ.get("FLOTILLA_TEST_CONCURRENCY") == "eventlet":
    concurrency.setup("eventlet")

import dataclasses  # noqa: E402
import uuid  # noqa: E402

import pytest  # noqa: E402

from tests.fixtures.services import RABBIT as BROKER  # noqa: E402
from tests.fixtures.services import rabbit_vhost, rabbitmqctl  # noqa: E402,F401

RUN_ID = uuid.uuid4().hex[:8]
VHOST = None  # set by the session fixture below


@pytest.fixture(scope="session")
def vhost():
    """A fresh vhost for this run (deleted afterwards)."""
    global VHOST
    with rabbit_vhost("flotilla-test-" + RUN_ID) as url:
        VHOST = url.rsplit("/", 1)[1]
        yield VHOST


@pytest.fixture
def rabbit_url(vhost):
    return "rabbit://%s/%s" % (BROKER, vhost)


@pytest.fixture
def topic():
    return "topic-%s-%s" % (RUN_ID, uuid.uuid4().hex[:6])


@pytest.fixture
def make_transport(conf, rabbit_url):
    from flotilla.rpc import Transport, get_transport
    from flotilla.rpc.amqp_driver import AMQPDriver

    conf.set_override("control_exchange", "flotilla-" + RUN_ID, "rpc")
    # Transports here are unsigned unless a test gives a key (the signing
    # tests need an unsigned one to refuse).
    conf.set_override("allow_unsigned_messages", True, "rpc")
    conf.set_override("heartbeat", 4, "rpc")
    conf.set_override("reconnect_max_delay", 1, "rpc")
    conf.set_override("reconnect_timeout", 20, "rpc")
    made = []

    def make(**rpc_options):
        base = get_transport(conf, url=rabbit_url)
        base.cleanup()
        options = dataclasses.replace(base.options, **rpc_options)
        transport = Transport(rabbit_url, options,
                              AMQPDriver(rabbit_url, options))
        made.append(transport)
        return transport
    yield make
    for transport in made:
        transport.cleanup()


@pytest.fixture
def kombu_conn(rabbit_url):
    import kombu
    conn = kombu.Connection("pyamqp://%s/%s" % (BROKER, VHOST))
    yield conn
    conn.release()

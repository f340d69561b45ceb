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
import subprocess  # noqa: E402
import uuid  # noqa: E402

import pytest  # noqa: E402

BROKER = os.environ.get("FLOTILLA_TEST_RABBIT", "guest:guest@127.0.0.1:5672")
RUN_ID = uuid.uuid4().hex[:8]
VHOST = "flotilla-test-" + RUN_ID


def rabbitmqctl(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True,
                          text=True, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError("rabbitmqctl %s failed: %s%s" % (
            " ".join(args), proc.stdout, proc.stderr))
    return proc.stdout


@pytest.fixture(scope="session")
def vhost():
    """A fresh vhost for this run (deleted afterwards)."""
    try:
        rabbitmqctl("add_vhost", VHOST)
        rabbitmqctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        pytest.fail("RabbitMQ is not reachable or rabbitmqctl failed (run "
                    "tools/ensure-services.sh): %s" % exc, pytrace=False)
    import kombu
    probe = kombu.Connection("pyamqp://%s/%s" % (BROKER, VHOST),
                             connect_timeout=5)
    try:
        probe.ensure_connection(max_retries=1)
    except Exception as exc:
        rabbitmqctl("delete_vhost", VHOST, check=False)
        pytest.fail("RabbitMQ at %s is not reachable: %s"
                    % (BROKER.rpartition("@")[2], exc), pytrace=False)
    finally:
        probe.release()
    yield VHOST
    rabbitmqctl("delete_vhost", VHOST, check=False)


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

"""pytest plugin (``-p tests.integration.rpc.eventlet_plugin``): switch the
process to the eventlet backend before any test module imports kombu."""

import os

from flotilla import concurrency

if os.environ.get("FLOTILLA_TEST_CONCURRENCY") == "eventlet":
    concurrency.setup("eventlet")

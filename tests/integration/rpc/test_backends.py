"""Run this directory's suite again under the eventlet backend."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(os.environ.get("FLOTILLA_TEST_CONCURRENCY") == "eventlet",
                    reason="this is the eventlet run itself")
def test_suite_passes_under_eventlet():
    env = dict(os.environ, FLOTILLA_TEST_CONCURRENCY="eventlet")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-p", "tests.integration.rpc.eventlet_plugin",
         str(Path(__file__).parent)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        "integration suite failed under eventlet:\n" + proc.stdout[-6000:]
        + proc.stderr[-3000:])
    assert " passed" in proc.stdout

"""Run this directory's suite again under the eventlet backend."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_suite_passes_under_eventlet():
    env = dict(os.environ, FLOTILLA_TEST_CONCURRENCY="eventlet")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-p", "tests.integration.rpc.eventlet_plugin",
         # Every test here but this one (which would recurse).
         "--deselect", "%s::test_suite_passes_under_eventlet"
         % Path(__file__).relative_to(ROOT),
         str(Path(__file__).parent)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        "integration suite failed under eventlet:\n" + proc.stdout[-6000:]
        + proc.stderr[-3000:])
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]

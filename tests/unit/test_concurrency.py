"""The concurrency facade under both backends."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from flotilla import concurrency


def test_worker_pool_bounds_concurrency():
    pool = concurrency.WorkerPool(2, name="t")
    running = []
    peak = []
    lock = concurrency.Lock()

    def work(i):
        with lock:
            running.append(i)
            peak.append(len(running))
        time.sleep(0.05)
        with lock:
            running.remove(i)
        return i * 2

    futures = [pool.submit(work, i) for i in range(6)]
    assert [f.result(5) for f in futures] == [0, 2, 4, 6, 8, 10]
    assert max(peak) == 2
    assert pool.shutdown(timeout=5)


def test_shutdown_reports_unfinished_work():
    pool = concurrency.WorkerPool(1, name="t")
    release = concurrency.Event()
    pool.submit(release.wait, 5)
    assert pool.shutdown(timeout=0.1) is False
    release.set()


def test_spawn_returns_result_and_exceptions():
    assert concurrency.spawn(lambda: 42).wait(5) == 42

    def boom():
        raise ValueError("x")

    handle = concurrency.spawn(boom)
    try:
        handle.wait(5)
    except ValueError:
        pass
    else:
        raise AssertionError("exception not propagated")


def test_eventlet_backend_in_a_fresh_process():
    """Under eventlet, run_blocking keeps other green threads running."""
    code = textwrap.dedent("""
        from flotilla import concurrency
        concurrency.setup("eventlet")
        ticks = []
        def ticker():
            for _ in range(5):
                ticks.append(1)
                concurrency.sleep(0.02)
        # The unpatched sleep blocks the whole OS thread, as a libvirt call
        # does: only run_blocking (tpool) lets the ticker go on meanwhile.
        from eventlet import patcher
        blocking_sleep = patcher.original("time").sleep
        handle = concurrency.spawn(ticker)
        concurrency.sleep(0)                        # let the ticker start
        concurrency.run_blocking(blocking_sleep, 0.3)
        assert len(ticks) == 5, ticks               # it ran during the call
        handle.wait(5)
        ticks.clear()
        handle = concurrency.spawn(ticker)
        concurrency.sleep(0)
        blocking_sleep(0.3)                         # without run_blocking
        assert len(ticks) == 1, ticks               # the ticker was stalled
        handle.wait(5)
        pool = concurrency.WorkerPool(3)
        assert [f.result(5) for f in [pool.submit(abs, -i) for i in range(4)]] == [0, 1, 2, 3]
        assert pool.shutdown(5)
        import eventlet.patcher
        assert eventlet.patcher.is_monkey_patched("socket")
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"

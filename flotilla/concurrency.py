"""The one module that knows how Flotilla runs concurrent work.

Two backends, chosen once per process by ``[DEFAULT] concurrency_backend``:

* ``threading`` (default): native threads.
* ``eventlet``: green threads. :func:`setup` monkey-patches the standard
  library, so it must run before anything imports ``socket`` or
  ``threading`` users (a daemon calls it first thing in ``main``). Blocking C
  calls (libvirt) must go through :func:`run_blocking`, which sends them to
  eventlet's pool of native threads so other green threads keep running.

Everything else in Flotilla uses only the names below: :func:`spawn`,
:class:`WorkerPool`, :func:`Event`, :func:`Lock`, :func:`sleep`,
:func:`run_blocking` and :func:`spawn_native`.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

BACKENDS = ("threading", "eventlet")

_backend = "threading"


def setup(backend: str) -> None:
    """Select the backend for this process; call it before any other work."""
    global _backend
    if backend not in BACKENDS:
        raise ValueError("unknown concurrency backend %r" % backend)
    if backend == "eventlet" and _backend != "eventlet":
        import eventlet
        eventlet.monkey_patch()
    _backend = backend


def get_backend() -> str:
    return _backend


def _eventlet_active() -> bool:
    return _backend == "eventlet"


class Handle:
    """A spawned piece of work: ``wait()`` returns its result or raises."""

    def __init__(self, future: concurrent.futures.Future) -> None:
        self._future = future

    def wait(self, timeout: float | None = None) -> Any:
        return self._future.result(timeout)

    def done(self) -> bool:
        return self._future.done()


def spawn(fn: Callable, *args, **kwargs) -> Handle:
    """Run ``fn`` concurrently (a daemon thread or a green thread)."""
    future: concurrent.futures.Future = concurrent.futures.Future()

    def runner():
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to whoever waits
            future.set_exception(exc)

    if _eventlet_active():
        import eventlet
        eventlet.spawn_n(runner)
    else:
        threading.Thread(target=runner, daemon=True,
                         name=getattr(fn, "__name__", "flotilla")).start()
    return Handle(future)


def spawn_native(fn: Callable, *args, name: str = "native", **kwargs) -> threading.Thread:
    """Run ``fn`` on a real OS thread even under eventlet.

    For loops that block in C and never yield (libvirt's event loop). Code on
    that thread must not touch green primitives; hand results over with
    :func:`run_blocking` callers or thread-safe queues.
    """
    if _eventlet_active():
        from eventlet import patcher
        real_threading = patcher.original("threading")
        thread = real_threading.Thread(target=fn, args=args, kwargs=kwargs,
                                       name=name, daemon=True)
    else:
        thread = threading.Thread(target=fn, args=args, kwargs=kwargs,
                                  name=name, daemon=True)
    thread.start()
    return thread


class WorkerPool:
    """At most ``size`` concurrent workers; extra submissions wait in line."""

    def __init__(self, size: int, name: str = "worker") -> None:
        self.size = size
        self._name = name
        self._closed = False
        if _eventlet_active():
            import eventlet
            self._green = eventlet.GreenPool(size)
            self._executor = None
        else:
            self._green = None
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=size, thread_name_prefix=name)
        self._pending: set[concurrent.futures.Future] = set()
        self._lock = threading.Lock()

    def submit(self, fn: Callable, *args, **kwargs) -> concurrent.futures.Future:
        if self._closed:
            raise RuntimeError("worker pool %s is shut down" % self._name)
        if self._executor is not None:
            future = self._executor.submit(fn, *args, **kwargs)
        else:
            future = concurrent.futures.Future()

            def runner():
                if not future.set_running_or_notify_cancel():
                    return
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    future.set_exception(exc)

            self._green.spawn_n(runner)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: concurrent.futures.Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Refuse new work, wait up to ``timeout`` for the running work.

        Returns True when everything finished in time.
        """
        self._closed = True
        with self._lock:
            pending = list(self._pending)
        done, not_done = concurrent.futures.wait(pending, timeout=timeout)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        return not not_done


def Event() -> threading.Event:
    """A settable flag; green under eventlet (the module is patched)."""
    return threading.Event()


def Lock() -> threading.Lock:
    return threading.Lock()


def sleep(seconds: float) -> None:
    if _eventlet_active():
        import eventlet
        eventlet.sleep(seconds)
    else:
        import time
        time.sleep(seconds)


def run_blocking(fn: Callable, *args, **kwargs) -> Any:
    """Call ``fn`` without stalling other work of this process.

    Under threads the caller's own thread blocks, which is fine. Under
    eventlet the call runs in eventlet's native thread pool (tpool).
    """
    if _eventlet_active():
        from eventlet import tpool
        return tpool.execute(fn, *args, **kwargs)
    return fn(*args, **kwargs)
